"""A malformed policy stops the hub before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import REPO, launch_hub, platform_env

pytestmark = pytest.mark.hub


def test_bad_policy_stops_the_hub_with_file_line_and_field(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    target = policies / "health_records.yaml"
    lines = target.read_text("utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if "rule: bucket" in line)
    lines[index] = lines[index].replace("bucket", "buckets")
    target.write_text("\n".join(lines) + "\n", "utf-8")

    home = tmp_path / "home"
    env = platform_env(home, SHUYU_POLICIES_DIR=str(policies))
    proc, log_path = launch_hub(home, env)
    try:
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log_path.read_text()
    assert code != 0
    assert f"health_records.yaml:{index + 1}:" in output, output
    assert "settlement_amount" in output and "buckets" in output
    # Nothing was half-configured: no hub database, no platform database, no zones.
    assert not (home / "hub" / "jupyterhub.sqlite").exists()
    assert not (home / "db").exists()
    assert not (home / "raw").exists()
