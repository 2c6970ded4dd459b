"""Fixtures of the audit chain's anchoring tests: the key and checkpoint files kept
outside the database, and the ``shuyu audit`` command pointed at them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import BIN

AuditCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """Where the signing key and the checkpoint file live (outside the database)."""
    return tmp_path / "keys" / "audit-signing-key.pem", tmp_path / "audit-checkpoints.jsonl"


@pytest.fixture
def audit_cli(db_url: str, tmp_path: Path, files: tuple[Path, Path]) -> AuditCli:
    """``shuyu audit <args>`` on ``db_url`` with ``files``; its completed process."""
    env = {
        "SHUYU_HOME": str(tmp_path / "home"),
        "SHUYU_DB_URL": db_url,
        "SHUYU_AUDIT_SIGNING_KEY": str(files[0]),
        "SHUYU_AUDIT_CHECKPOINTS": str(files[1]),
        "PATH": str(BIN),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "shuyu"), "audit", *args], env=env, capture_output=True, text=True
        )

    return run
