"""The lab extension's TypeScript unit tests (jest with ts-jest, in labextension/), run
from the suite so `make test` runs them too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LABEXTENSION = Path(__file__).resolve().parents[2] / "labextension"
JEST = LABEXTENSION / "node_modules" / ".bin" / "jest"


def test_the_typescript_unit_tests_pass() -> None:
    if not JEST.exists():
        pytest.fail(f"{JEST} is missing: `make labext` installs the extension's npm packages")
    node = shutil.which("node")
    assert node, "node is missing"
    run = subprocess.run(
        [str(JEST), "--ci", "--silent"],
        cwd=LABEXTENSION,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "failed" not in run.stderr and " passed" in run.stderr, run.stderr[-2000:]
