"""The sealed runner: one job's frozen code on production inputs, with no way out.

:func:`run` takes a claimed job (status ``running``) to its end:

1. the code is read from the jobs zone (its SHA-256 checked) and written, read-only,
   into a fresh run folder; the tenant's production inputs are (re)built
   (:mod:`.inputs`);
2. the code runs in bubblewrap with every namespace of ``--unshare-all`` but the user
   one (in which uid ``nobody`` would be unmapped): its own, empty network namespace
   (no relays, no platform API, no hub: nothing at all), its own PID, IPC, UTS and
   cgroup namespaces; the software and the code read-only, each
   production input of the tenant bound read-only at ``/job/inputs/<dataset>.parquet``,
   each approved import the job named at ``/data/imports/<name>/`` (as in the sandbox),
   and nothing else of the state root; an empty, writable work folder (``/job/work``,
   the current directory) and a small private ``/tmp``; as uid ``nobody`` with no
   capabilities, ``no_new_privs`` and the sandbox's seccomp filter. Notebooks run with
   papermill (parameters injected), scripts with the platform's Python (parameters in
   ``SHUYU_JOB_PARAMETERS``);
3. limits from configuration: memory (the job's cgroup: every process together; a
   kernel's address space is far larger than what it uses, so ``RLIMIT_AS`` is only the
   fallback where no cgroup can be made), processes (cgroup ``pids.max``, else
   ``RLIMIT_NPROC``), CPU time (``RLIMIT_CPU``), wall-clock time (the runner kills the
   whole sandbox), disk (``RLIMIT_FSIZE`` per file, the work folder's total polled, and
   ``/tmp`` a size-limited tmpfs);
4. when it ends, the files of the work folder that match the declared output patterns,
   the executed notebook and the log become an egress request of kind ``job`` (frozen
   in ``outbox/``, checked, reviewed like any other); undeclared files are discarded
   and listed. The merchant sees the status, exit code, duration and resource use,
   never the log or outputs until released.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import shuyu_platform

from ..core import audit
from ..core.db import session_scope
from ..core.models import Job
from ..core.settings import REPO_ROOT, Shuyu
from ..data.policy import DatasetPolicy
from ..egress import jailed
from ..egress import requests as egress
from ..ingress import imports as ingress
from ..isolation import seccomp
from ..isolation.bwrap import mounts, system_dirs
from ..isolation.jail import NOBODY, JailRefusal
from ..isolation.jail import Limits as JailLimits
from ..isolation.sandbox import Cgroup, SandboxError
from . import inputs as production
from . import queue

log = logging.getLogger("shuyu.jobs")

#: Where things are inside the sealed sandbox.
INSIDE_CODE: Final[str] = "/job/code"
INSIDE_INPUTS: Final[str] = "/job/inputs"
INSIDE_WORK: Final[str] = "/job/work"
INSIDE_META: Final[str] = "/job/meta"
#: Where the imports a job named are, as in the interactive sandbox.
INSIDE_IMPORTS: Final[str] = "/data/imports"
#: The executed notebook and the log, as named in the job's egress request.
EXECUTED: Final[str] = "executed.ipynb"
LOG: Final[str] = "job.log"
#: Most bytes of the log kept (its end).
LOG_BYTES: Final[int] = 1024 * 1024
#: How often the runner looks at the clock, the disk and cancellations.
POLL_SECONDS: Final[float] = 0.1


@dataclass(frozen=True)
class Limits:
    """What one job may use (``c.Shuyu.job_*``)."""

    memory_mb: int = 2048
    cpu_seconds: int = 3600
    wall_seconds: int = 3600
    disk_mb: int = 1024
    pids: int = 256
    cpus: float = 1.0

    @classmethod
    def from_settings(cls, settings: Shuyu) -> Limits:
        """The limits an operator set on :class:`~shuyu_platform.core.settings.Shuyu`."""
        return cls(
            memory_mb=settings.job_memory_mb,
            cpu_seconds=settings.job_cpu_seconds,
            wall_seconds=settings.job_wall_seconds,
            disk_mb=settings.job_disk_mb,
            pids=settings.job_pids,
            cpus=settings.job_cpus,
        )


@dataclass
class Outcome:
    """How a run ended: the action it takes, exit code, reason and resource use."""

    action: str  # succeed | fail | time_out | cancel
    exit_code: int | None
    reason: str
    usage: dict[str, Any]


def _name_version(distribution: metadata.Distribution) -> str | None:
    """``Name==Version`` from the head of a distribution's metadata, or None without it.

    Only the header lines are read: parsing every package's whole METADATA (its long
    description too) with the e-mail parser took seconds for the first job of a process.
    """
    text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO") or ""
    head: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key in ("Name", "Version"):
            head.setdefault(key, value.strip())
    return f"{head['Name']}=={head.get('Version')}" if "Name" in head else None


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """The runner's environment: Python and every installed package, and their SHA-256."""
    packages = sorted({n for n in map(_name_version, metadata.distributions()) if n is not None})
    lock = "\n".join([f"python=={sys.version.split()[0]}", *packages])
    return {"python": sys.version.split()[0], "sha256": hashlib.sha256(lock.encode()).hexdigest()}


def run_folder(settings: Shuyu, job_id: str) -> Path:
    """The folder a run uses (its code, work and meta folders, and log)."""
    return settings.zone("jobs") / job_id / "run"


def _prepare(folder: Path, code: dict[str, Any]) -> None:
    """A fresh run folder: the code read-only, empty work and meta folders for nobody."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "code").mkdir(parents=True)
    for name, data in code["files"].items():
        path = folder / "code" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        path.chmod(0o444)
    for path in sorted((folder / "code").rglob("*"), reverse=True):
        if path.is_dir():
            path.chmod(0o555)
    (folder / "code").chmod(0o555)
    for name in ("work", "meta"):
        # 0711: bubblewrap (root without capabilities) must search it to chdir there
        (folder / name).mkdir()
        os.chmod(folder / name, 0o711)
        os.chown(folder / name, NOBODY, NOBODY)
    (folder / "meta" / "parameters.json").write_text(json.dumps(code["parameters"]))
    os.chown(folder / "meta" / "parameters.json", NOBODY, NOBODY)


def command(
    folder: Path,
    code: dict[str, Any],
    inputs: dict[str, production.ProductionInput],
    limits: Limits,
    seccomp_fd: int | None,
    *,
    cgroup: bool,
    imported: dict[str, production.ImportedInput] | None = None,
) -> list[str]:
    """The command line of one sealed run: prlimit, bubblewrap, setpriv, the code."""
    tools = {name: shutil.which(name) for name in ("prlimit", "bwrap", "setpriv")}
    missing = sorted(name for name, path in tools.items() if not path)
    if missing:
        raise RuntimeError(f"the job runner needs {', '.join(missing)} (util-linux, bubblewrap)")
    mib = 1024 * 1024
    args = [
        str(tools["prlimit"]),
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 5}",
        f"--fsize={limits.disk_mb * mib}",
        "--nofile=1024", "--core=0",
    ]  # fmt: skip
    if not cgroup:  # no memory and pids controllers: per-process limits instead
        args += [f"--as={limits.memory_mb * mib * 2}", f"--nproc={limits.pids}"]
    args += [
        "--", str(tools["bwrap"]), "--die-with-parent", "--new-session",
        # --unshare-all but the user namespace: in one, uid nobody would be unmapped and
        # setpriv could not drop to it. No --share-net: the job's network is empty.
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--hostname", "shuyu-job",
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", str(min(limits.disk_mb, 256) * mib), "--tmpfs", "/tmp",
        "--ro-bind", "/usr", "/usr",
        "--clearenv",
    ]  # fmt: skip
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    python_bin = Path(sys.prefix) / "bin"
    env = {
        "HOME": "/tmp",
        "PATH": f"{python_bin}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{INSIDE_CODE}:{REPO_ROOT / 'kernels'}",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        "JUPYTER_CONFIG_DIR": "/tmp/jupyter-config",
        "JUPYTER_DATA_DIR": str(Path(sys.prefix) / "share" / "jupyter"),
        "OMP_NUM_THREADS": "1",
        "SHUYU_JOB": "1",
        "SHUYU_JOB_INPUTS": INSIDE_INPUTS,
        "SHUYU_IMPORTS": INSIDE_IMPORTS,
        "SHUYU_JOB_PARAMETERS": json.dumps(code["parameters"]),
    }
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += system_dirs()
    software = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), REPO_ROOT / "kernels"}
    package = Path(shuyu_platform.__file__).resolve().parent
    if not any(package.is_relative_to(prefix) for prefix in software):
        software.add(package)
    binds = [("--ro-bind", path, path) for path in sorted(software)]
    binds += [("--ro-bind", folder / "code", Path(INSIDE_CODE))]
    binds += [
        ("--ro-bind", item.path, Path(INSIDE_INPUTS) / f"{name}.parquet")
        for name, item in sorted(inputs.items())
    ]
    binds += [
        ("--ro-bind", item.folder, Path(INSIDE_IMPORTS) / name)
        for name, item in sorted((imported or {}).items())
    ]
    binds += [
        ("--bind", folder / "work", Path(INSIDE_WORK)),
        ("--bind", folder / "meta", Path(INSIDE_META)),
    ]
    args += mounts(binds, {Path("/"), Path("/usr"), Path("/tmp")})
    if not inputs:  # the folder exists even when the tenant has no production input
        args += ["--perms", "0555", "--dir", INSIDE_INPUTS]
    if not imported:
        args += ["--perms", "0555", "--dir", INSIDE_IMPORTS]
    entry = f"{INSIDE_CODE}/{code['entry']}"
    python = str(python_bin / "python")
    if code["kind"] == "notebook":
        program = [
            python, "-m", "papermill", entry, f"{INSIDE_META}/{EXECUTED}",
            "-f", f"{INSIDE_META}/parameters.json", "--cwd", INSIDE_WORK,
            "-k", "python3", "--log-output", "--no-progress-bar",
        ]  # fmt: skip
    else:
        program = [python, entry]
    return [
        *args, "--chdir", INSIDE_WORK,
        str(tools["setpriv"]), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        *program,
    ]  # fmt: skip


class Accounting:
    """CPU time and peak memory of every process of one job, from its cgroups.

    Resource use through ``wait4`` misses the job: bubblewrap learns how its sandbox
    ended without reaping it. The job's cgroup counts every process instead: cgroup v2's
    ``cpu.stat`` and ``memory.peak``, or v1's ``memory.max_usage_in_bytes`` and a
    ``cpuacct`` group of the job's own, made here beside the limits' groups.
    """

    def __init__(self, group: Cgroup, name: str) -> None:
        self.group = group
        self.cpuacct: Path | None = None
        root = Cgroup.ROOT / "cpuacct"
        if Cgroup.version() == 1 and (root / "cpuacct.usage").exists():
            with contextlib.suppress(OSError):
                (root / "shuyu").mkdir(exist_ok=True)
                (root / "shuyu" / name).mkdir(exist_ok=True)
                self.cpuacct = root / "shuyu" / name

    def join(self) -> None:
        """Move the calling process into the job's groups (between fork and exec)."""
        self.group.join()
        if self.cpuacct is not None:
            (self.cpuacct / "cgroup.procs").write_text("0")

    def _read(self, name: str) -> int | None:
        for folder in [*self.group.dirs, *([self.cpuacct] if self.cpuacct else [])]:
            with contextlib.suppress(OSError, ValueError):
                text = (folder / name).read_text()
                if name == "cpu.stat":
                    fields = dict(line.split() for line in text.splitlines())
                    return int(fields["usage_usec"]) * 1000
                return int(text.strip())
        return None

    def usage(self) -> dict[str, float | None]:
        """``cpu_seconds`` and ``max_memory_mb`` (None where the machine does not count)."""
        cpu = self._read("cpuacct.usage") or self._read("cpu.stat")
        peak = self._read("memory.max_usage_in_bytes") or self._read("memory.peak")
        return {
            "cpu_seconds": None if cpu is None else round(cpu / 1e9, 3),
            "max_memory_mb": None if peak is None else round(peak / 2**20, 1),
        }

    def remove(self) -> None:
        """Remove the job's accounting group (its processes are gone)."""
        if self.cpuacct is not None:
            with contextlib.suppress(OSError):
                self.cpuacct.rmdir()


def remove_cgroups(job_id: str) -> None:
    """Remove the (empty) cgroups a run left behind when its runner was killed."""
    name = f"job-{job_id}"
    for controller in ("", "memory", "cpu", "pids", "cpuacct"):
        with contextlib.suppress(OSError):
            (Cgroup.ROOT / controller / "shuyu" / name).rmdir()


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def execute(
    argv: list[str],
    folder: Path,
    limits: Limits,
    group: Accounting | None,
    cancelled: Callable[[], bool],
    pass_fds: tuple[int, ...] = (),
) -> Outcome:
    """Run the sandbox to its end, watching clock, disk and cancellation; see :func:`run`."""
    import subprocess

    started = time.monotonic()
    with (folder / "log").open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
            preexec_fn=group.join if group is not None else None,
        )
    stop: tuple[str, str] | None = None
    status, usage = 0, None
    disk_limit = limits.disk_mb * 1024 * 1024
    next_disk = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.monotonic()
        if stop is None:
            if now - started > limits.wall_seconds:
                stop = ("time_out", f"the job ran longer than {limits.wall_seconds} s")
            elif now >= next_disk:  # the database and the disk once a second
                next_disk = now + 1.0
                if cancelled():
                    stop = ("cancel", "cancelled while running")
                elif _folder_bytes(folder / "work") + _folder_bytes(folder / "meta") > disk_limit:
                    stop = ("fail", f"the job wrote more than {limits.disk_mb} MiB")
            if stop is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(POLL_SECONDS)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    code = proc.returncode
    if code > 128:  # bubblewrap passes on the signal that ended the job as 128 + number
        code = -(code - 128)
    oom = group.group.oom_kills() if group is not None else 0
    counted = group.usage() if group is not None else {}
    used = {
        "wall_seconds": round(wall, 3),
        "cpu_seconds": counted.get("cpu_seconds")
        or (round(usage.ru_utime + usage.ru_stime, 3) if usage else None),
        "max_memory_mb": counted.get("max_memory_mb")
        or (round(usage.ru_maxrss / 1024, 1) if usage else None),
        "disk_mb": round(_folder_bytes(folder / "work") / (1024 * 1024), 3),
        "oom_kills": oom,
    }
    if stop is not None:
        return Outcome(stop[0], code, stop[1], used)
    if oom or (code == -signal.SIGKILL and _memory_error(folder)):
        why = f"the job needed more memory than {limits.memory_mb} MiB"
        return Outcome("fail", code, why, used)
    if code == -signal.SIGXCPU or (
        code == -signal.SIGKILL
        and used["cpu_seconds"]
        and (used["cpu_seconds"] >= limits.cpu_seconds)
    ):
        return Outcome(
            "time_out", code, f"the job used more than {limits.cpu_seconds} s of CPU time", used
        )
    if code == -signal.SIGXFSZ:
        return Outcome("fail", code, f"a file grew past {limits.disk_mb} MiB", used)
    if code != 0:
        why = "ran out of memory" if _memory_error(folder) else f"exited with status {code}"
        return Outcome("fail", code, f"the job {why}", used)
    return Outcome("succeed", 0, "", used)


def _memory_error(folder: Path) -> bool:
    """Whether the log's end names a MemoryError (RLIMIT_AS reached in Python)."""
    try:
        with (folder / "log").open("rb") as handle:
            handle.seek(max(0, (folder / "log").stat().st_size - 4096))
            return b"MemoryError" in handle.read()
    except OSError:
        return False


def collect(folder: Path, outputs: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The declared output files of the work folder (as egress files), and the rest.

    Files are read without following symbolic links; a link, a device or anything but a
    regular file is discarded. At most :data:`egress.MAX_SNAPSHOT_BYTES` in all (half of
    it base64 overhead): files past that are discarded too, and listed.
    """
    kept: list[dict[str, Any]] = []
    discarded: list[str] = []
    budget = egress.MAX_SNAPSHOT_BYTES * 2 // 3
    work = folder / "work"
    for root, dirs, files in os.walk(work):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(work).as_posix()
            if not any(fnmatch.fnmatchcase(rel, pattern) for pattern in outputs):
                discarded.append(rel)
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                discarded.append(rel)
                continue
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size > budget:
                    discarded.append(rel)
                    continue
                data = handle.read()
            budget -= len(data)
            kept.append({"path": rel, "data_b64": base64.b64encode(data).decode()})
    return kept, discarded


def _log_tail(folder: Path) -> bytes:
    path = folder / "log"
    if not path.is_file():
        return b""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - LOG_BYTES))
        return handle.read()


def _meta_files(folder: Path, code: dict[str, Any]) -> list[dict[str, Any]]:
    """The executed notebook (if any) and the log, as files of the job's request."""
    files = []
    if code["kind"] == "notebook":
        with contextlib.suppress(OSError):  # the job could have put anything there
            fd = os.open(folder / "meta" / EXECUTED, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    data = handle.read(egress.MAX_SNAPSHOT_BYTES // 3)
                    files.append({"path": EXECUTED, "data_b64": base64.b64encode(data).decode()})
    files.append({"path": LOG, "data_b64": base64.b64encode(_log_tail(folder)).decode()})
    return files


def run(
    settings: Shuyu,
    policies: dict[str, DatasetPolicy],
    job_id: str,
    *,
    check_context: Callable[[str], Any],
) -> str:
    """Run one claimed job to its end (see the module docstring); return its status.

    ``check_context(tenant)`` gives the disclosure checks' context for the request.
    """
    zone = settings.zone("jobs")
    with session_scope(settings.db_url) as session:
        row = session.get(Job, job_id)
        if row is None or row.status != "running":
            return row.status if row else "missing"
        tenant, username = row.tenant, row.username
        try:
            code = queue.read_code(zone, row)
            imported = production.imported(settings, session, tenant, code.get("imports", {}))
        except (queue.JobError, ingress.IngressError) as err:
            row.reason = err.message
            queue.transition(session, row, "fail", actor="platform", detail={"reason": err.message})
            return row.status
    folder = run_folder(settings, job_id)
    limits = Limits.from_settings(settings)
    group: Accounting | None = None
    try:
        built = production.build(settings, tenant, policies)
        _prepare(folder, code)
        limited = Cgroup(
            f"job-{job_id}",
            memory=limits.memory_mb * 1024 * 1024,
            cpus=limits.cpus,
            pids=limits.pids,
        )
        try:
            limited.create()
            group = Accounting(limited, f"job-{job_id}")
        except SandboxError as err:
            log.warning("job %s runs without a cgroup: %s", job_id, err)
        filter_fd = seccomp.filter_fd()
        try:
            argv = command(
                folder,
                code,
                built,
                limits,
                filter_fd,
                cgroup=group is not None,
                imported=imported,
            )
            outcome = execute(
                argv, folder, limits, group, lambda: _cancelled(settings, job_id), (filter_fd,)
            )
        finally:
            os.close(filter_fd)
    except Exception as err:  # a platform-side failure: the job fails, audited, nothing out
        log.exception("job %s could not run", job_id)
        outcome = Outcome("fail", None, f"the platform could not run the job: {err}", {})
        built = {}
        shutil.rmtree(folder, ignore_errors=True)  # nothing of it goes to review
    finally:
        if group is not None:
            group.group.remove()
            group.remove()
    return _finish(
        settings, job_id, code, folder, outcome, built, imported, check_context, username
    )


def _cancelled(settings: Shuyu, job_id: str) -> bool:
    with session_scope(settings.db_url) as session:
        row = session.get(Job, job_id)
        return row is None or row.status != "running"


def _finish(
    settings: Shuyu,
    job_id: str,
    code: dict[str, Any],
    folder: Path,
    outcome: Outcome,
    built: dict[str, production.ProductionInput],
    imported: dict[str, production.ImportedInput],
    check_context: Callable[[str], Any],
    username: str,
) -> str:
    """Record how the run ended and file its request, in one transaction.

    The checks run first, while the job is still ``running``; then its end, its
    request (frozen, checked, submitted) and the link between them are committed
    together. A runner killed before that commit leaves the job ``running``, to be
    requeued, never ended without its request; one cancelled meanwhile keeps nothing.
    """
    try:
        kept, discarded = collect(folder, code["outputs"]) if folder.exists() else ([], [])
        files = kept + _meta_files(folder, code) if folder.exists() else []
        input_digests = {name: item.sha256 for name, item in built.items()}
        with session_scope(settings.db_url) as session:
            row = session.get(Job, job_id)
            if row is None or row.status != "running":  # cancelled meanwhile
                return row.status if row is not None else "missing"
            provenance = {
                "job": row.id,
                "entry": row.entry,
                "kind": row.kind,
                "code_sha256": row.code_sha256,
                "parameters": json.loads(row.parameters),
                "outputs": json.loads(row.outputs),
                "inputs": input_digests,
                "raw_versions": {name: item.raw_version for name, item in built.items()},
                "imports": {
                    name: {"id": item.id, "sha256": item.sha256} for name, item in imported.items()
                },
                "environment": environment(),
                "status": queue.TRANSITIONS["running"][outcome.action],
                "exit_code": outcome.exit_code,
                "usage": outcome.usage,
                "attempt": row.attempts,
            }
            tenant, purpose, entry = row.tenant, row.purpose, row.entry
        content = {
            "kind": "job",
            "job": job_id,
            "entry": entry,
            "files": files,
            "discarded": discarded,
            "provenance": provenance,
        }
        report = _checks(settings, content, check_context(tenant)) if files else None
        outbox = settings.zone("outbox")
        frozen: Path | None = None
        try:
            with session_scope(settings.db_url) as session:
                row = session.get(Job, job_id)
                if row is None or row.status != "running":
                    return row.status if row is not None else "missing"
                row.inputs = audit.canonical_json(input_digests)
                row.usage = audit.canonical_json(outcome.usage)
                row.exit_code = outcome.exit_code
                row.reason = outcome.reason
                detail = {"exit_code": outcome.exit_code, "reason": outcome.reason}
                queue.transition(
                    session,
                    row,
                    outcome.action,
                    actor="platform",
                    detail={**detail, **outcome.usage, "discarded": discarded},
                )
                if files:  # a run the platform could not start has nothing to review
                    request = egress.create(
                        session,
                        outbox,
                        tenant=tenant,
                        username=username,
                        title=f"job {job_id[:8]}: {entry}",
                        purpose=purpose,
                        content=content,
                    )
                    frozen = egress.snapshot_path(outbox, request.id)
                    _record(session, request, report)
                    egress.transition(session, request, "submit", actor=username)
                    row.request_id = request.id
                return row.status
        except BaseException:
            if frozen is not None:  # not committed: no snapshot without its request
                frozen.unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _checks(settings: Shuyu, content: dict[str, Any], context: Any) -> Any:
    """The disclosure report of a job's request, or the refusal when it is unreadable."""
    try:
        return jailed.check_content(content, context, JailLimits.from_settings(settings))
    except JailRefusal as refusal:
        return refusal


def _record(session: Any, request: Any, report: Any) -> None:
    """Store the checks on the request; content the jail could not read fails them."""
    if isinstance(report, JailRefusal):
        request.verdict = "fail"
        request.checks = audit.canonical_json(
            {"verdict": "fail", "findings": [], "error": report.message, "counts": {}}
        )
    elif report is not None:
        egress.record_checks(session, request, report)
