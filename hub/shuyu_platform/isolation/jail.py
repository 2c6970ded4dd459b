"""The parsing jail: merchant-supplied content is parsed in a throw-away, limited process.

The platform service never parses a snapshot (Parquet, CSV, images, notebooks, HTML)
in its own process. :func:`run` is the one entry point: it starts a fresh Python
process for one task of :data:`TASKS` and hands it the task's input as JSON on its
standard input; the process answers JSON on its standard output. The process runs

- inside bubblewrap with its own, empty network namespace (no network at all), its own
  PID, IPC and UTS namespaces, the software read-only and a small private ``/tmp``;
  nothing of the state root (no database, no ``raw/``, no ``outbox/``);
- as uid and gid ``nobody``, no capabilities, ``no_new_privs``, a clean environment;
- under ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU time), ``RLIMIT_FSIZE`` (its answer
  is written to a file, so this caps the answer too) and ``RLIMIT_NOFILE``, and a wall
  clock after which the service kills it.

A task that exceeds a limit, crashes or answers nonsense raises :class:`JailRefusal`
with a sentence a merchant can act on; the service process is never at risk, and at
most :attr:`Limits.concurrency` jails run at once in one service process.

Input and answer travel through unlinked temporary files opened by the service and
inherited as the jail's standard input and output: no pipe to deadlock, and the
answer's size is bounded by the kernel, not by the jail's good will.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import shuyu_platform

from .bwrap import mounts, system_dirs

#: The tasks a jail may run, as ``module:function`` (JSON-able input -> JSON-able answer),
#: with why each parses merchant content. Nothing else can be named.
TASKS: Final[dict[str, tuple[str, str]]] = {
    "egress.checks": (
        "shuyu_platform.egress.jailed:checks",
        "disclosure checks read the snapshot's tables, images, notebooks and HTML",
    ),
    "egress.watermark": (
        "shuyu_platform.egress.jailed:watermark",
        "watermarking rewrites the released CSV, Parquet, images and notebooks",
    ),
    "ingress.checks": (
        "shuyu_platform.ingress.jailed:checks",
        "an import request's automatic checks read the merchant's CSV or Parquet file",
    ),
    "ingress.pseudonymise": (
        "shuyu_platform.ingress.jailed:pseudonymised",
        "an approved import is rewritten with its identifier columns pseudonymised",
    ),
    "dashboards.prepare": (
        "shuyu_platform.egress.jailed:prepare_dashboard",
        "publishing validates and rewrites the dashboard notebook",
    ),
}
#: The uid and gid a jail runs as.
NOBODY: Final[int] = 65534
#: Exit status of a jail that ran out of memory in Python (MemoryError).
EXIT_MEMORY: Final[int] = 3


class JailRefusal(Exception):
    """A task the jail refused or could not finish; ``message`` says why, for the merchant.

    ``reason`` is one of ``memory``, ``cpu``, ``time``, ``output``, ``killed``, ``crash`` or
    ``content`` (the task itself refused the input: a ValueError inside).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Limits:
    """How much one jailed task may use (``c.Shuyu.jail_*``)."""

    memory_mb: int = 1024
    cpu_seconds: int = 30
    wall_seconds: int = 60
    output_mb: int = 256
    concurrency: int = 2

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """The limits an operator set on :class:`~shuyu_platform.core.settings.Shuyu`."""
        return cls(
            memory_mb=settings.jail_memory_mb,
            cpu_seconds=settings.jail_cpu_seconds,
            wall_seconds=settings.jail_wall_seconds,
            output_mb=settings.jail_output_mb,
            concurrency=settings.jail_concurrency,
        )


_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def _slot(concurrency: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _slots.setdefault(concurrency, threading.BoundedSemaphore(concurrency))


def command(limits: Limits, task: str) -> list[str]:
    """The command line of one jail: prlimit, bubblewrap, setpriv, then this module."""
    tools = {name: shutil.which(name) for name in ("prlimit", "bwrap", "setpriv")}
    missing = sorted(name for name, path in tools.items() if not path)
    if missing:
        raise RuntimeError(f"the parsing jail needs {', '.join(missing)} (util-linux, bubblewrap)")
    mib = 1024 * 1024
    args = [
        str(tools["prlimit"]),
        f"--as={limits.memory_mb * mib}",
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 5}",
        f"--fsize={limits.output_mb * mib}",
        "--nofile=64", "--core=0", "--",
        str(tools["bwrap"]), "--die-with-parent", "--new-session",
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--hostname", "shuyu-jail",
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", str(16 * mib), "--tmpfs", "/tmp",
        "--ro-bind", "/usr", "/usr",
        "--clearenv",
        "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "LANG", "C.UTF-8", "--setenv", "OMP_NUM_THREADS", "1",
        "--setenv", "ARROW_DEFAULT_MEMORY_POOL", "system",
    ]  # fmt: skip
    args += system_dirs()
    software = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    package = Path(shuyu_platform.__file__).resolve().parent
    if not any(package.is_relative_to(prefix) for prefix in software):
        software.add(package)  # an editable install: the source tree, read-only
    binds = [("--ro-bind", path, path) for path in sorted(software)]
    args += mounts(binds, {Path("/"), Path("/usr"), Path("/tmp")})
    python = str(Path(sys.prefix) / "bin" / "python")
    return [
        *args, "--chdir", "/tmp",
        str(tools["setpriv"]), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        python, "-I", "-m", __name__, task,
    ]  # fmt: skip


def run(task: str, payload: Any, limits: Limits | None = None) -> Any:
    """Run one task of :data:`TASKS` on ``payload`` in a fresh jail; return its answer.

    Blocks the calling thread (run it in a worker thread from the event loop) and
    raises :class:`JailRefusal` when the task is refused or exceeds a limit.
    """
    if task not in TASKS:
        raise KeyError(f"no jailed task {task!r}; tasks are {', '.join(TASKS)}")
    limits = limits or Limits()
    return execute(command(limits, task), payload, limits)


def execute(argv: list[str], payload: Any, limits: Limits) -> Any:
    """Run a jail's command line (from :func:`command`) on ``payload``; see :func:`run`."""
    with _slot(limits.concurrency), contextlib.ExitStack() as files:
        source = files.enter_context(tempfile.TemporaryFile())
        answer = files.enter_context(tempfile.TemporaryFile())
        errors = files.enter_context(tempfile.TemporaryFile())
        source.write(json.dumps(payload, ensure_ascii=False, allow_nan=False).encode())
        source.seek(0)
        proc = subprocess.Popen(
            argv,
            stdin=source,
            stdout=answer,
            stderr=errors,
            start_new_session=True,
            close_fds=True,
        )
        try:
            status = proc.wait(limits.wall_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise JailRefusal(
                "time",
                f"reading the content took longer than {limits.wall_seconds} s; "
                "it was stopped (is it unusually large or malformed?)",
            ) from None
        errors.seek(0)
        tail = errors.read()[-2000:].decode(errors="replace")
        answer.seek(0)
        data = answer.read()
    return _answer(status, data, tail, limits)


def _answer(status: int, data: bytes, stderr: str, limits: Limits) -> Any:
    """The task's answer, or the :class:`JailRefusal` its exit status means.

    bubblewrap passes a signal that ended the jailed process on as exit status
    128 + signal number; a signal that ended bubblewrap itself comes as a negative one.
    """
    if status > 128:
        status = -(status - 128)
    # Python ignores SIGXFSZ: a write past RLIMIT_FSIZE fails instead, so the size tells.
    if status == -signal.SIGKILL:
        raise JailRefusal(
            "killed",
            "reading the content was stopped by the system (CPU or memory limit exceeded)",
        )
    if status == -signal.SIGXCPU:
        raise JailRefusal(
            "cpu",
            f"reading the content needed more than {limits.cpu_seconds} s of CPU time; "
            "it was stopped (is it unusually large or malformed?)",
        )
    if status == -signal.SIGXFSZ or len(data) >= limits.output_mb * 1024 * 1024:
        raise JailRefusal(
            "output", f"the result of reading the content is larger than {limits.output_mb} MiB"
        )
    if status == EXIT_MEMORY or status in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS):
        raise JailRefusal(
            "memory",
            f"reading the content needs more than {limits.memory_mb} MiB of memory; it was "
            "stopped (a compressed file that expands hugely, such as a decompression bomb?)",
        )
    try:
        reply = json.loads(data) if status == 0 else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or not ({"result", "refused"} & set(reply)):
        raise JailRefusal(
            "crash",
            f"the content could not be read: its parser stopped (exit status {status}) "
            f"{stderr.strip().splitlines()[-1][:300] if stderr.strip() else ''}".strip(),
        )
    if "refused" in reply:
        raise JailRefusal("content", str(reply["refused"]))
    return reply["result"]


# ------------------------------------------------------------------ inside the jail


def main(argv: list[str] | None = None) -> int:
    """The jailed process: read the input, run the task, write ``{"result": ...}``.

    A ``ValueError`` from the task (content it refuses) is answered as
    ``{"refused": message}``; running out of memory exits with :data:`EXIT_MEMORY`.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in TASKS:
        print(f"usage: python -m {__name__} <{'|'.join(TASKS)}>", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # jsonschema (through nbformat) builds an IRI grammar for seconds at import; the
    # notebook schema has no IRI formats, so the jail goes without it.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    target, _ = TASKS[args[0]]
    module, function = target.split(":")
    try:
        payload = json.load(sys.stdin.buffer)
        task = getattr(importlib.import_module(module), function)
        reply: dict[str, Any] = {"result": task(payload)}
    except MemoryError:
        os._exit(EXIT_MEMORY)
    except (ValueError, RecursionError) as err:
        reply = {"refused": str(err)[:1000] or type(err).__name__}
    out = json.dumps(reply, ensure_ascii=False, allow_nan=False).encode()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    status = main()
    # The answer is written: leave without the interpreter's teardown. Under load, a
    # native library's thread still running at exit made C++ teardown abort (SIGABRT,
    # "terminate called without an active exception") after a complete answer, which
    # read as running out of memory. The jail is thrown away; there is nothing to clean.
    sys.stderr.flush()
    os._exit(status)
