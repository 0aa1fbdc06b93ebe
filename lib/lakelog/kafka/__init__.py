"""The Kafka protocol gateway: Kafka clients produce, consume and join groups on lakelog."""

from __future__ import annotations

from lakelog.kafka.server import GatewayConfig, KafkaGateway

__all__ = ["GatewayConfig", "KafkaGateway"]
