"""Sealed production runs from a tenant's kernel: code goes in, only reviewed results come out.

Write and test code here against the synthetic twin (or the masked view), reading every
input through :func:`input`; then submit it unchanged. The platform freezes the code,
runs it on the production input (the granted fields at full fidelity) in a sealed
sandbox with no network, and files what it wrote as an export request for review::

    import shuyu
    df = shuyu.jobs.input("health_records")   # here: the synthetic twin; in a job: production
    job = shuyu.jobs.submit("analysis.ipynb", parameters={"year": 2025},
                            outputs=["out/*.csv"], purpose="诊断月份汇总，用于医保费用分析")
    shuyu.jobs.status(job["id"])   # queued → running → succeeded | failed | timed_out
    shuyu.jobs.list()              # the tenant's jobs: status, exit code, duration
    shuyu.jobs.cancel(job["id"])
    shuyu.jobs.logs(job["id"])     # the log, once its request is released

A job may also read the tenant's approved imports it names (``imports=["customers"]``):
``shuyu.imports.read("customers")`` finds them at ``/data/imports`` in both places.

Until its request is released you see a job's status, exit code, duration and resource
use, never its log or outputs.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .client import get, post
from .data import synthetic, views

__all__ = [
    "cancel",
    "in_job",
    "input",
    "input_path",
    "list",
    "logs",
    "parameters",
    "status",
    "submission",
    "submit",
]

#: Largest file sent with a job (the platform refuses larger code anyway).
MAX_FILE_BYTES = 4 * 1024 * 1024


def in_job() -> bool:
    """Whether this code runs as a sealed production job (not in the interactive sandbox)."""
    return os.environ.get("SHUYU_JOB") == "1"


def input_path(name: str, *, source: str = "synthetic") -> Path:
    """The Parquet file of dataset ``name``: in a job its production input, here the
    synthetic twin (``source="synthetic"``) or the tenant's masked view (``"view"``)."""
    if in_job():
        folder = Path(os.environ.get("SHUYU_JOB_INPUTS", "/job/inputs"))
        path = folder / f"{name}.parquet"
        if "/" in name or name.startswith(".") or not path.is_file():
            have = ", ".join(sorted(p.stem for p in folder.glob("*.parquet"))) or "none"
            raise FileNotFoundError(f"no production input {name!r} in this job; available: {have}")
        return path
    if source not in ("synthetic", "view"):
        raise ValueError("source is 'synthetic' or 'view'")
    return (views if source == "view" else synthetic).path(name)


def input(
    name: str, columns: Sequence[str] | None = None, *, source: str = "synthetic"
) -> pd.DataFrame:
    """Dataset ``name`` as a DataFrame, from :func:`input_path` (the same code runs in both)."""
    wanted = [*columns] if columns else None  # not list(): this module's list() shadows it
    return pd.read_parquet(input_path(name, source=source), columns=wanted)


def parameters() -> dict[str, Any]:
    """The parameters a job was submitted with (``{}`` outside a job)."""
    return dict(json.loads(os.environ.get("SHUYU_JOB_PARAMETERS", "{}")))


def submission(
    entry: str | Path,
    *,
    purpose: str,
    parameters: Mapping[str, Any] | None = None,
    outputs: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    read: Callable[[str], bytes] | None = None,
    imports: Sequence[str] = (),
) -> dict[str, Any]:
    """The body of ``POST api/jobs``: the entry and the files it needs, as they are now.

    The one place a submission is built, for :func:`submit` here and for the Submit job
    page of the single-user server (which reads through ``read``: the file's bytes by its
    path relative to the work folder, refusing what leaves it). Paths are relative to the
    current folder; at most :data:`MAX_FILE_BYTES` a file. ``imports`` names the
    tenant's approved imports the job reads.
    """
    names = dict.fromkeys(Path(p).as_posix() for p in (entry, *files))
    sent: dict[str, str] = {}
    for name in names:
        data = read(name) if read else Path(name).read_bytes()
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"{name} has more than {MAX_FILE_BYTES:,} bytes")
        sent[name] = base64.b64encode(data).decode()
    return {
        "entry": Path(entry).as_posix(),
        "files": sent,
        "parameters": dict(parameters or {}),
        "outputs": [*outputs],
        "imports": [*imports],
        "purpose": purpose,
    }


def submit(
    entry: str | Path,
    *,
    purpose: str,
    parameters: Mapping[str, Any] | None = None,
    outputs: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    imports: Sequence[str] = (),
) -> dict[str, Any]:
    """Submit a notebook (run with papermill) or a script of the work folder as a job.

    ``entry`` and ``files`` (other files it needs, such as modules it imports) are
    sent as they are on disk now, paths relative to the current folder; save the
    notebook first. ``outputs`` are glob patterns, relative to the job's work folder,
    of the files to take out for review; anything else it writes is discarded.
    ``imports`` names the tenant's approved imports it reads (:mod:`shuyu.imports`); a
    deleted one is refused, and a queued job naming one deleted meanwhile fails.
    """
    body = submission(
        entry,
        purpose=purpose,
        parameters=parameters,
        outputs=outputs,
        files=files,
        imports=imports,
    )
    return post("api/jobs", body)


def status(job_id: str) -> dict[str, Any]:
    """One job: status, exit code, reason, duration and resource use, its request."""
    return get(f"api/jobs/{job_id}")


def list() -> pd.DataFrame:  # shadows the builtin here on purpose: shuyu.jobs.list()
    """The tenant's jobs, newest first."""
    rows = get("api/jobs")["jobs"]
    columns = [
        "id",
        "entry",
        "status",
        "exit_code",
        "username",
        "request_id",
        "created_at",
        "ended_at",
    ]
    return pd.DataFrame(rows, columns=columns)


def cancel(job_id: str) -> dict[str, Any]:
    """Cancel a queued or running job (nothing of it is kept)."""
    return post(f"api/jobs/{job_id}/cancel", {})


def logs(job_id: str) -> str:
    """The job's log, once its export request is released (a 409 before)."""
    return str(get(f"api/jobs/{job_id}/logs")["log"])
