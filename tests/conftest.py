"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Platform, running_platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One real platform (hub, proxy, platform service) shared by the session's tests."""
    with running_platform(tmp_path_factory.mktemp("platform")) as running:
        yield running
