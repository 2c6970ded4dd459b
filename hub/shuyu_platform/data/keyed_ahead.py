"""A view's keyed columns masked by a helper process, from the last batch backwards.

Pseudonyms, per-person date shifts and per-person noise (:func:`masking.is_keyed`) hash
each row's value under the tenant key, one value at a time in Python: on a file of unique
person IDs that is the largest cost of a view build, and it sits in pass 2's masking
loop, while pass 1 (counting classes) leaves the second core mostly idle. A keyed
column's masking does not depend on pass 1's outcome when its rule is the same at every
generalisation level. So a build of at least :data:`MIN_ROWS` rows starts a helper
process before pass 1 that masks those columns of pass 2's batches (the same row-group
order and batch size) from the **last** batch backwards, leaving each batch's masked
columns in a scratch folder beside the view. Pass 2 masks from the first batch forwards:
each batch the helper has finished it takes from the folder; any other it masks itself,
and tells the helper, which stops once it reaches a batch pass 2 has begun. The two meet
where their speeds say, with no batch masked twice but the one they meet on.

What the view holds is the same byte for byte (a test builds both ways). The helper
reads the raw file through the build's own descriptor (passed to it), so a file replaced
meanwhile cannot feed it other rows, and each batch carries its row count and the first
and last raw values of the columns it read, which pass 2 checks against its own batch.
Any disagreement, a helper that fails or dies, or a scratch folder that cannot be
written makes pass 2 mask the remaining batches itself, as it would have anyway: the
helper can only save time. It pauses when :data:`MAX_AHEAD_BYTES` of batches wait to be
taken, and the scratch folder goes when the build ends, or with the next build of the
same view after a killed one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shuyu_platform.core.atomic import temporary_path
from shuyu_platform.data import masking
from shuyu_platform.data.policy import DatasetPolicy

log = logging.getLogger(__name__)

#: Builds of fewer raw rows mask everything in pass 2: a helper process costs about a
#: second of CPU to start, more than it saves on a small file.
MIN_ROWS: Final[int] = 2_000_000
#: Masked batches the helper may leave waiting before it pauses (disk, not memory).
MAX_AHEAD_BYTES: Final[int] = 1 << 30


def keyed_fields(levels: Sequence[DatasetPolicy], names: Sequence[str]) -> list[str]:
    """The fields of ``names`` a helper can mask ahead: keyed, and masked alike at every
    generalisation level (pass 1 chooses the level only later)."""
    first = levels[0]
    return [
        name
        for name in names
        if masking.is_keyed(first.fields[name])
        and all(level.fields[name].masking == first.fields[name].masking for level in levels)
    ]


@dataclass(frozen=True)
class Job:
    """What the helper needs: everything pass 2 would use to mask the keyed fields."""

    fd: int
    policy: DatasetPolicy
    fields: tuple[str, ...]
    columns: tuple[str, ...]
    key: bytes
    reference_date: date
    filters: Mapping[str, pa.Array]
    row_groups: tuple[int, ...]
    batch_rows: int
    folder: str


def _edges(table: pa.Table, columns: Sequence[str]) -> str:
    """The row count and the first and last values of ``columns``: what both processes
    compare to know they are looking at the same batch."""
    ends: list[Any] = [table.num_rows]
    if table.num_rows:
        for name in columns:
            column = table.column(name)
            ends.append(repr((column[0].as_py(), column[-1].as_py())))
    return json.dumps(ends, ensure_ascii=False)


def filter_rows(table: pa.Table, filters: Mapping[str, pa.Array]) -> pa.Table:
    """The rows of ``table`` whose value in each filter column is one of its values."""
    if not filters:
        return table
    keep = None
    for column, values in filters.items():
        match = pc.is_in(table.column(column), value_set=values)
        keep = match if keep is None else pc.and_(keep, match)
    return table.filter(keep)


class KeyedAhead:
    """The helper process of one view build, as pass 2 sees it."""

    def __init__(self, process: subprocess.Popen[bytes], folder: Path, job: Job) -> None:
        self._process = process
        self._folder = folder
        self._job = job
        self._next = 0
        self._buffer = b""
        self._finished: dict[int, str] = {}
        self._closed = False
        #: Batches pass 2 took from the helper (the others it masked itself).
        self.batches_taken = 0

    @classmethod
    def start(
        cls,
        *,
        source: pa.NativeFile,
        out_path: Path,
        policy: DatasetPolicy,
        fields: Sequence[str],
        columns: Sequence[str],
        key: bytes,
        reference_date: date,
        filters: Mapping[str, pa.Array],
        row_groups: Sequence[int],
        batch_rows: int,
    ) -> KeyedAhead | None:
        """Start the helper for ``fields`` (read with ``columns``), or return None when it
        cannot start; the build then masks every batch itself."""
        folder = temporary_path(out_path, ".keyed")
        job = Job(
            fd=source.fileno(),
            policy=policy,
            fields=tuple(fields),
            columns=tuple(columns),
            key=key,
            reference_date=reference_date,
            filters=dict(filters),
            row_groups=tuple(row_groups),
            batch_rows=batch_rows,
            folder=str(folder),
        )
        try:
            folder.mkdir(mode=0o700)
            process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(job.fd,),
                close_fds=True,
            )
        except OSError as err:
            log.warning("view build: pass 2 masks the keyed columns itself (%s)", err)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        ahead = cls(process, folder, job)
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        if not ahead._send(struct.pack(">Q", len(data)) + data):
            ahead.close()
            return None
        return ahead

    def take(self, table: pa.Table) -> dict[str, pa.Array] | None:
        """The masked keyed columns of pass 2's next batch ``table`` when the helper has
        them; otherwise None, and the helper learns that pass 2 masks this batch."""
        if self._closed:
            return None
        index = self._next
        self._next += 1
        try:
            self._drain()
        except (OSError, ValueError) as err:
            return self._give_up(str(err))
        edges = self._finished.pop(index, None)
        if edges is None:
            if self._process.poll() is None:  # else it has stopped: nothing to tell
                self._send(f"{index}\n".encode())
            return None
        if edges != _edges(table, self._job.columns):
            return self._give_up(f"batch {index} of the helper is not pass 2's batch")
        path = self._folder / f"{index}.arrow"
        try:
            with pa.OSFile(str(path)) as batch_file:
                masked = pa.ipc.open_file(batch_file.read_buffer()).read_all()
            path.unlink()
        except (OSError, pa.ArrowException) as err:
            return self._give_up(f"batch {index}: {err}")
        if masked.num_rows != table.num_rows or masked.column_names != list(self._job.fields):
            return self._give_up(f"batch {index} has another shape")
        self.batches_taken += 1
        return {name: masked.column(name).combine_chunks() for name in self._job.fields}

    def _send(self, data: bytes) -> bool:
        """Write to the helper; False (and a warning) when it is gone."""
        stdin = self._process.stdin
        try:
            assert stdin is not None
            stdin.write(data)
            stdin.flush()
        except (OSError, ValueError) as err:
            log.warning("view build: the keyed-column helper cannot be reached (%s)", err)
            return False
        return True

    def _drain(self) -> None:
        """Read every line the helper has written so far, without waiting."""
        stdout = self._process.stdout
        assert stdout is not None
        while select.select([stdout], [], [], 0)[0]:
            chunk = os.read(stdout.fileno(), 1 << 16)
            if not chunk:
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("the helper sent something other than a JSON object")
            if "error" in message:
                raise ValueError(str(message["error"]))
            if "batch" in message:
                self._finished[int(message["batch"])] = str(message["edges"])

    def _give_up(self, why: str) -> None:
        log.warning("view build: pass 2 masks the keyed columns itself from here: %s", why)
        self.close()
        return None

    def close(self) -> None:
        """Stop the helper (if it still runs) and remove the scratch folder."""
        if self._process.poll() is None:
            self._process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=10)
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        shutil.rmtree(self._folder, ignore_errors=True)
        self._closed = True


# ============================================================================ helper


class _Batches:
    """Pass 2's batches of one job, any one of them on demand.

    Pass 2 reads the row groups in the job's order with ``iter_batches``, which cuts the
    rows of that sequence into batches of ``batch_rows`` across row-group boundaries;
    batch ``i`` is rows ``[i * batch_rows, (i + 1) * batch_rows)`` of the sequence.
    """

    def __init__(self, parquet: pq.ParquetFile, job: Job) -> None:
        self._parquet = parquet
        self._job = job
        sizes = [parquet.metadata.row_group(g).num_rows for g in job.row_groups]
        self._starts = [0]
        for size in sizes:
            self._starts.append(self._starts[-1] + size)
        self.count = -(-self._starts[-1] // job.batch_rows)
        self._cached: dict[int, pa.Table] = {}

    def batch(self, index: int) -> pa.Table:
        """Batch ``index``, filtered as pass 2 filters it."""
        first = index * self._job.batch_rows
        last = min(first + self._job.batch_rows, self._starts[-1])
        parts = []
        position = bisect_right(self._starts, first) - 1
        while first < last:
            group_start, group_end = self._starts[position], self._starts[position + 1]
            take = min(last, group_end) - first
            parts.append(self._group(position).slice(first - group_start, take))
            first += take
            position += 1
        self._cached = {p: t for p, t in self._cached.items() if p < position}
        table = pa.concat_tables(parts).combine_chunks()
        return filter_rows(table, self._job.filters)

    def _group(self, position: int) -> pa.Table:
        if position not in self._cached:
            self._cached[position] = self._parquet.read_row_group(
                self._job.row_groups[position], columns=list(self._job.columns), use_threads=False
            )
        return self._cached[position]


def _folder_bytes(folder: Path) -> int:
    total = 0
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            total += entry.stat().st_size
    return total


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the build closed the pipe before the job was sent")
        data += chunk
    return data


def _claims(fd: int) -> Iterator[int]:
    """The highest batch index pass 2 has said it masks itself, so far (never waits)."""
    buffer = b""
    while True:
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 12)
            if not chunk:
                break
            buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield max((int(line) for line in lines if line.strip()), default=-1)


def run(job: Job, claims: Iterator[int], out: IO[str]) -> None:
    """Mask ``job``'s keyed fields from the last batch backwards into its folder, one line
    per batch, until the batch pass 2 reached (``claims``)."""
    parquet = pq.ParquetFile(pa.OSFile(f"/proc/self/fd/{job.fd}"), pre_buffer=False)
    batches = _Batches(parquet, job)
    folder = Path(job.folder)
    fields = list(job.fields)
    reached = -1
    for index in range(batches.count - 1, -1, -1):
        reached = max(reached, next(claims))
        if index <= reached:
            break
        table = batches.batch(index)
        masked = masking.mask_table(
            table, job.policy, fields, key=job.key, reference_date=job.reference_date
        )
        while _folder_bytes(folder) > MAX_AHEAD_BYTES:
            time.sleep(0.05)
            reached = max(reached, next(claims))
            if index <= reached:
                return
        path = folder / f"{index}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, masked.schema) as writer:
            writer.write_table(masked)
        out.write(json.dumps({"batch": index, "edges": _edges(table, job.columns)}) + "\n")
        out.flush()


def main() -> None:
    """The helper process: a pickled :class:`Job` and then claims on stdin, lines on stdout.

    It reads the raw file through the descriptor the build passed (``/proc/self/fd``
    opens the build's own open file, whatever its path names now) and dies with the
    build.
    """
    from shuyu_platform.core.lifetime import die_with_parent

    die_with_parent(os.getppid(), signal.SIGKILL)
    # Unbuffered reads of the descriptor: a buffered reader could hold claims back.
    (size,) = struct.unpack(">Q", _read_exactly(0, 8))
    job = pickle.loads(_read_exactly(0, size))  # written by the build that started us
    # The lines go to the build through a descriptor of their own; anything a library
    # prints goes to stderr and cannot be taken for one.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        run(job, _claims(0), out)
    except BrokenPipeError:
        pass
    except Exception as err:  # the build falls back; it needs only the text
        with contextlib.suppress(OSError):
            out.write(json.dumps({"error": f"{type(err).__name__}: {err}"}) + "\n")
            out.flush()
        sys.exit(1)


if __name__ == "__main__":
    main()
