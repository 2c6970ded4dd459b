"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Platform, running_platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One real platform (hub, proxy, platform service, sandboxed servers) for the session.

    Servers get 1 GiB each, so the memory-limit test stays cheap.
    """
    with running_platform(tmp_path_factory.mktemp("platform"), SHUYU_MEM_LIMIT="1G") as running:
        yield running
