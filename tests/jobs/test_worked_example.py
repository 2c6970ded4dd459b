"""The README's worked example, ``notebooks/sealed_run.ipynb``, run as a merchant runs it.

Every code cell of the notebook, as shipped, is executed in order in a real kernel of
alice's sandbox on the real platform: the script is written and tried on the synthetic
twin, submitted, followed to its end; rita releases its request; the last cell reads the
log. The released table is checked against what the notebook promises.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from harness import Platform
from kernel import Execution, Kernel
from shuyu import jobs as shuyu_jobs

pytestmark = [pytest.mark.hub, pytest.mark.slow, pytest.mark.timeout(900)]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "sealed_run.ipynb"


def _code_cells() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _explain(ran: Execution) -> str:
    """What went wrong in a cell: its output and its error's traceback, as plain text."""
    trace = "\n".join((ran.error or {}).get("traceback", []))
    return "\n".join([ran.stdout, ran.stderr, re.sub("\x1b\\[[0-9;]*m", "", trace)])


def test_a_job_reads_chosen_columns_of_its_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's ``shuyu.jobs.input(name, columns=[...])`` (once broken by the
    module's own ``list``, which shadows the builtin)."""
    pd.DataFrame({"district": ["a"], "n": [1], "x": [2]}).to_parquet(tmp_path / "t.parquet")
    monkeypatch.setenv("SHUYU_JOB", "1")
    monkeypatch.setenv("SHUYU_JOB_INPUTS", str(tmp_path))
    assert list(shuyu_jobs.input("t", columns=["district", "n"]).columns) == ["district", "n"]


def test_the_readme_points_at_the_notebook() -> None:
    readme = (NOTEBOOK.parents[1] / "README.md").read_text()
    assert "`notebooks/sealed_run.ipynb`" in readme
    assert len(_code_cells()) == 5


def test_the_worked_example_runs_end_to_end_in_a_real_kernel(platform: Platform) -> None:
    write, trial, submit, follow, logs = _code_cells()
    session = platform.login("alice")
    platform.start_server(session, "alice")
    kernel = Kernel(platform.url, session, "alice")
    try:
        # The trial cell's %run line alone first, so that a failure names its own error.
        run_line, _, rest = trial.partition("\n")
        ran = kernel.run(write)
        assert ran.ok, _explain(ran)
        tried = kernel.run(run_line)
        assert tried.ok, _explain(tried)
        assert "rows used:" in tried.stdout  # the same script, on the synthetic twin
        ran = kernel.run(rest)
        assert ran.ok, _explain(ran)
        assert "district" in (ran.result or "")
        ran = kernel.run(submit)
        assert ran.ok, ran.error
        job_id, status = ast.literal_eval(ran.result or "")
        assert status == "queued"
        ran = kernel.run(follow, timeout=300)
        assert ran.ok, ran.error
        state = ast.literal_eval(ran.result or "")
        assert state["status"] == "succeeded" and state["exit_code"] == 0, state
        assert state["usage"]["wall_seconds"] > 0 and state["request_id"]
        request_id = state["request_id"]

        seen = platform.service_get("rita", f"api/egress/requests/{request_id}").json()
        assert seen["kind"] == "job" and seen["status"] == "submitted"
        decided = platform.service_post(
            "rita",
            f"api/egress/requests/{request_id}/decision",
            {
                "action": "approve",
                "comment": "区县汇总，可以发布",
                "snapshot_sha256": seen["snapshot_sha256"],
            },
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "released"

        ran = kernel.run(logs)
        assert ran.ok, ran.error
        assert "rows used:" in ran.stdout  # the production run's own print
    finally:
        kernel.close()

    owner, _ = platform.service_session("alice")
    base = f"{platform.url}/services/shuyu/exports/{request_id}"
    table = owner.get(f"{base}/out__settlement_by_district.csv", timeout=30)
    assert table.status_code == 200, table.text[:300]
    rows = list(csv.DictReader(io.StringIO(table.content.decode("utf-8-sig"))))
    assert rows and "district" in rows[0]
    job = platform.service_get("alice", f"api/jobs/{job_id}").json()
    assert job["parameters"] == {"min_age": 18} and job["outputs"] == ["out/*.csv"]
    provenance = owner.get(
        f"{platform.url}/services/shuyu/api/egress/requests/{request_id}/release", timeout=30
    ).json()["provenance"]
    assert provenance["job"]["code_sha256"] == job["code_sha256"]
    assert "health_records" in provenance["job"]["inputs"]
