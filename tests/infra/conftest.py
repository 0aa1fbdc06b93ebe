"""Fixtures for the infrastructure tests: each stack is synthesized once per session.

Starting jsii (the Node.js process behind aws-cdk-lib) and synthesizing take seconds, so
every synthesized app is cached for the whole session and shared by the tests that read
it. Nothing here talks to AWS: synthesis needs no credentials.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.synth import ENVIRONMENTS, SynthCache, Synthesized, bare_stack_factory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "infra: synthesizes the CDK app (needs Node.js, never AWS credentials)"
    )


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthCache]:
    """The session's cache of synthesized stacks."""
    yield SynthCache(tmp_path_factory)


@pytest.fixture(scope="session", params=sorted(ENVIRONMENTS))
def env_stack(request: pytest.FixtureRequest, synth: SynthCache) -> Synthesized:
    """Each environment's real stack, one after the other."""
    return synth.environment(request.param)


@pytest.fixture
def bare_stack() -> object:
    """An empty stack in a fresh app, for construct-level checks that never synthesize."""
    return bare_stack_factory()
