"""The jobs worker: takes queued jobs to the sealed runner, within the concurrency limits.

Where it runs: inside the platform service process, as a background task beside the
sweeps (:func:`shuyu_platform.service.app._serve`). The service already has what a
run ends with (the egress machinery, the disclosure checks' context, the database), it
lives and dies with the hub (:mod:`shuyu_platform.core.lifetime`), and each run is a
bubblewrap sandbox started with ``--die-with-parent``, so no run outlives the process
that watches it. ``python -m shuyu_platform.jobs.worker`` runs the same worker on its
own, for an installation that wants runs on another machine of the same state root.

The queue is the ``jobs`` table, so it survives a restart as it is: queued jobs stay
queued, and a job found ``running`` whose runner process is gone (the service was
killed mid-run, and its sandbox with it) is requeued, audited, and run again from its
frozen code in a fresh folder, up to :data:`.queue.MAX_ATTEMPTS` attempts; no run ends
twice, because a run is claimed with one conditional update and only the claiming
runner records its end. ``shuyu jobs drain`` puts a marker in the jobs zone that stops
the worker from starting new runs (running ones finish).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core import lifetime
from ..core.db import session_scope
from ..core.settings import Shuyu
from ..data.policy import DatasetPolicy, load_policies
from . import queue, runner

log = logging.getLogger("shuyu.jobs")

#: Seconds between looks at the queue.
POLL_SECONDS = 0.2
#: The marker file (in the jobs zone) that stops new runs from starting.
DRAIN_MARKER = "DRAINING"


def drain_marker(settings: Shuyu) -> Path:
    """The file whose presence holds every queued job back."""
    return settings.zone("jobs") / DRAIN_MARKER


def runner_name() -> str:
    """This process as a runner: host, pid and the pid's start time (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    fields = lifetime.stat_fields(pid)
    return fields[19] if len(fields) > 19 else "?"


def _gone(name: str) -> bool:
    """Whether the runner ``name`` (see :func:`runner_name`) no longer runs."""
    host, _, rest = name.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's runner: not ours to judge
    return not lifetime._alive(int(pid)) or _start_time(int(pid)) != started


def recover(settings: Shuyu) -> list[str]:
    """Requeue (or, past the attempts, fail) runs whose runner process is gone."""
    touched = []
    with session_scope(settings.db_url) as session:
        for row in queue.interrupted(session):
            if not _gone(row.runner):
                continue
            runner.remove_cgroups(row.id)  # its processes died with the runner
            if row.attempts >= queue.MAX_ATTEMPTS:
                row.reason = "interrupted by platform restarts too often"
                queue.transition(
                    session, row, "fail", actor="platform", detail={"runner": row.runner}
                )
            else:
                queue.transition(
                    session,
                    row,
                    "requeue",
                    actor="platform",
                    detail={"runner": row.runner, "attempt": row.attempts},
                )
            touched.append(row.id)
    return touched


class Worker:
    """Starts queued jobs while under the global and per-tenant limits."""

    def __init__(
        self,
        settings: Shuyu,
        policies: dict[str, DatasetPolicy],
        check_context: Callable[[str], Any],
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.check_context = check_context
        self.name = runner_name()
        self.running: dict[str, asyncio.Task[str]] = {}

    def start_due(self) -> list[str]:
        """Claim as many queued jobs as the limits allow (not while draining)."""
        if drain_marker(self.settings).exists():
            return []
        free = self.settings.job_concurrency - len(self.running)
        if free <= 0:
            return []
        claimed = []
        with session_scope(self.settings.db_url) as session:
            candidates = queue.next_queued(session, self.settings.job_tenant_concurrency)
        for job_id in candidates[:free]:
            with session_scope(self.settings.db_url) as session:
                if not queue.claim(session, job_id, self.name):
                    continue
            claimed.append(job_id)
        return claimed

    def _run(self, job_id: str) -> str:
        return runner.run(self.settings, self.policies, job_id, check_context=self.check_context)

    async def serve(self) -> None:
        """Recover interrupted runs, then start due jobs until cancelled."""
        requeued = await asyncio.to_thread(recover, self.settings)
        if requeued:
            log.warning("requeued jobs interrupted by a restart: %s", ", ".join(requeued))
        # What every job's provenance records, worked out once now, not in the first job.
        await asyncio.to_thread(runner.environment)
        while True:
            try:
                for job_id in await asyncio.to_thread(self.start_due):
                    task = asyncio.create_task(asyncio.to_thread(self._run, job_id))
                    self.running[job_id] = task
                    task.add_done_callback(lambda t, j=job_id: self._done(j, t))
            except Exception:  # the queue is looked at again on the next round
                log.exception("jobs worker round failed")
            await asyncio.sleep(POLL_SECONDS)

    def _done(self, job_id: str, task: asyncio.Task[str]) -> None:
        self.running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: runner failed", job_id, exc_info=task.exception())
        elif not task.cancelled():
            log.info("job %s ended: %s", job_id, task.result())


def main() -> None:
    """Run a worker on its own (``python -m shuyu_platform.jobs.worker``) until killed."""
    from ..service.egress_api import check_context

    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s jobs] %(message)s"
    )
    settings = Shuyu.from_environment()
    policies = load_policies(Path(settings.policies_dir))
    worker = Worker(settings, policies, lambda tenant: check_context(settings, policies, tenant))
    try:
        asyncio.run(worker.serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
