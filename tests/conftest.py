"""Shared pytest configuration."""

import pytest

pytest_plugins = ["tests.fakes.anthropic_api", "tests.fakes.github_api"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
