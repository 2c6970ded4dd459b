"""Peak and resident memory of processes, and the machine's load, for every benchmark.

Linux only (``/proc``). Peaks are ``VmHWM`` (the kernel's high-water mark of resident
memory) rather than ``getrusage``'s ``ru_maxrss``: after ``exec`` the latter also counts
the parent's peak, so a measurement started from a large process would report that.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

MIB = 1024**2
#: The repository, where ``python -m benchmarks.<name>`` runs.
REPO = Path(__file__).resolve().parent.parent


def _status_kib(pid: int | str, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (0 if the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def peak_mib(pid: int | str = "self") -> float:
    """Peak resident memory of one process so far, in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def reset_peak() -> None:
    """Make this process's peak its current resident memory (before a measurement)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def pss_mib(pid: int) -> float:
    """Proportional set size of one process (shared pages split among their users), MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid: int) -> float:
    """Resident memory of one process now, MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def tree_mib(pid: int) -> dict[str, float]:
    """RSS, PSS and the sum of peaks of ``pid`` and its descendants, MiB."""
    pids = descendants(pid)
    return {
        "rss": sum(rss_mib(p) for p in pids),
        "pss": sum(pss_mib(p) for p in pids),
        "peak": sum(peak_mib(p) for p in pids),
        "processes": float(len(pids)),
    }


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, and its CPUs, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} CPUs"


def measure_in_fresh_process(
    module: str, kind: str, *args: str, python: str = sys.executable
) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --measure <kind> <args…>`` and read the JSON
    object its last line prints: one measurement in a process of its own, so the peak
    memory it reports is that measurement's alone. Exits with the child's error if it fails.
    """
    command = [python, "-m", f"benchmarks.{module}", "--measure", kind, *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{kind} failed ({python}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rotations(kinds: Sequence[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    """``(round number, order)`` for each round: every method leads one round in turn, so
    none always runs first on a cold cache or last on a warm one."""
    for number in range(1, rounds + 1):
        shift = (number - 1) % len(kinds)
        yield number, [*kinds[shift:], *kinds[:shift]]


def interleaved_rounds(
    kinds: Sequence[str], rounds: int, measure: Callable[[str], dict[str, Any]], digits: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """Measure every method ``rounds`` times in rotating order (see ``rotations``), printing
    each round's steady and first-call seconds and peak memory; the results per method."""
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for number, order in rotations(kinds, rounds):
        for kind in order:
            results[kind].append(measure(kind))
        done = ", ".join(
            f"{kind} {results[kind][-1]['seconds']:.{digits}f} s "
            f"(first {results[kind][-1]['first']:.{digits}f} s, "
            f"{results[kind][-1]['peak_mib']:.0f} MiB)"
            for kind in order
        )
        print(f"  round {number}: {done}", flush=True)
    return results


class PeakTree:
    """Samples the summed RSS of this process and its descendants in a thread, for
    measurements whose memory lives in child processes (a JVM, a Spark driver); ``stop``
    returns the largest sum seen, MiB."""

    def __init__(self, interval: float = 0.05) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(rss_mib(p) for p in descendants(os.getpid())))
            self._stop.wait(interval)

    def stop(self) -> float:
        """End sampling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        return self.peak
