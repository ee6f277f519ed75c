"""Shared pytest configuration."""

import pytest

pytest_plugins = ["tests.fakes.anthropic_api"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
