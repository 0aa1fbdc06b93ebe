"""Stacks of the CDK app: one `LakelogStack` per environment."""

from __future__ import annotations

from stacks.lakelog import COMPONENTS, FEATURE_FLAGS, LakelogStack, build_app

__all__ = ["COMPONENTS", "FEATURE_FLAGS", "LakelogStack", "build_app"]
