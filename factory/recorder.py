"""Results tables written to Parquet in batches with explicit pyarrow schemas
(:mod:`darkfab.factory.schemas`, re-exported here), crash-safe.

Rows are appended to column lists (memory stays bounded whatever the horizon). Columns
``run_id`` and ``replication`` are constant per run and are added when a batch is written. Only
few-valued columns (:data:`DICTIONARY_COLUMNS`) are dictionary-encoded: for times, ids and free
text a dictionary costs time and bytes.

Two ways to write, chosen when the writer is made:

* **Staged** (inside :func:`staging`, as every ``darkfab run``): each flush appends the pending
  rows as one record batch to an Arrow IPC stream next to the table (``events.parquet.arrows``,
  lz4-compressed, unbuffered, so the batch is in the operating system's hands when ``flush``
  returns; a timed flush also calls ``fsync`` on it). A process killed at any moment (SIGKILL, the
  OOM killer) leaves a stream readable up to its last complete batch. A writer flushes when it
  holds :attr:`FlushPolicy.rows` rows, and every table of the run flushes together when
  :attr:`FlushPolicy.every_s` seconds of wall time have passed since the last timed flush (the
  clock is looked at every :data:`CHECK_ROWS` rows a writer takes, and by the runner between
  slices of simulated time). Each flushed batch then goes on into the ``.parquet`` file (below);
  ``close`` moves the file into place, then deletes the stream. The stream is read back only to
  recover a run that died, or if writing the file failed (:func:`compact`). While a stream is
  open its writer holds an exclusive ``flock`` on it, so a recovery can tell a live run from a
  dead one (:func:`stage_in_use`).
* **Direct** (outside :func:`staging`): no stream; a process killed leaves nothing readable.

Either way the ``.parquet`` file is written under a temporary name (``.events.parquet.tmp``) in
row groups of ``batch_rows`` rows whatever the flush times and the sizes of the batches, so its
bytes do not depend on the wall clock or on the mode; ``close`` renames it into place (complete
or absent).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

try:  # POSIX: a live run's streams are locked; elsewhere recovery cannot tell
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .schemas import (ALARMS_SCHEMA, DICTIONARY_COLUMNS, EVENTS_SCHEMA, GENEALOGY_SCHEMA,
                      KPIS_SCHEMA, LINE_UNITS_SCHEMA, LOAD_CELLS_SCHEMA, NIR_READINGS_SCHEMA,
                      STATES_SCHEMA, TIMESERIES_SCHEMA, TRANSPORT_SCHEMA)

__all__ = [
    "EVENTS_SCHEMA", "STATES_SCHEMA", "GENEALOGY_SCHEMA", "KPIS_SCHEMA", "TIMESERIES_SCHEMA",
    "TRANSPORT_SCHEMA", "ALARMS_SCHEMA", "LINE_UNITS_SCHEMA", "NIR_READINGS_SCHEMA",
    "LOAD_CELLS_SCHEMA", "DICTIONARY_COLUMNS", "TableWriter",
    "EventLog", "write_table", "FlushPolicy", "FlushGroup", "staging", "STAGE_SUFFIX",
    "CHECK_ROWS", "stage_path", "read_stage", "compact", "stage_in_use",
]

STAGE_SUFFIX = ".arrows"
"""A table's staging stream is its path plus this suffix (``events.parquet.arrows``)."""

CHECK_ROWS = 4096
"""A staged writer looks at the wall clock (is a timed flush due?) every this many rows."""

MERGE_BATCHES = 64
"""A table's batches waiting to fill a Parquet row group are merged into one at this many."""


@dataclass(frozen=True)
class FlushPolicy:
    """When a staged run's rows reach the disk. ``every_s``: wall seconds between flushes of
    every table (``inf``: only by rows); ``rows``: a table's pending rows that make it flush.
    After a SIGKILL, what was flushed is recoverable (``darkfab recover``)."""

    every_s: float = 5.0
    rows: int = 65_536

    def __post_init__(self) -> None:
        if not self.every_s > 0:  # also NaN
            raise ValueError(f"flush every_s must be > 0 seconds (inf: by rows only), "
                             f"not {self.every_s!r}")
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
            raise ValueError(f"flush rows must be an integer >= 1, not {self.rows!r}")


class FlushGroup:
    """The staged writers of one run, flushed together on a wall-clock period. ``clock``:
    seconds, monotonic (injectable for tests)."""

    def __init__(self, policy: FlushPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.writers: list[TableWriter] = []
        self.flushes = 0  # timed flushes so far
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        return self._clock() - self._last >= self.policy.every_s

    def tick(self) -> bool:
        """Flush every table if the period has passed; ``True`` if it did."""
        if not self.due():
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Flush every table (:meth:`TableWriter.flush`) and ``fsync`` the streams."""
        for w in self.writers:
            w.flush()
            w.sync()
        self.flushes += 1
        self._last = self._clock()


_GROUP: ContextVar[FlushGroup | None] = ContextVar("darkfab_flush_group", default=None)


@contextlib.contextmanager
def staging(policy: FlushPolicy | None,
            clock: Callable[[], float] = time.monotonic) -> Iterator[FlushGroup | None]:
    """Writers made inside this block are staged under ``policy`` and join the yielded group
    (``None``: direct writers, no group). The block need only cover the writers' creation."""
    group = None if policy is None else FlushGroup(policy, clock)
    token = _GROUP.set(group)
    try:
        yield group
    finally:
        _GROUP.reset(token)


def stage_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + STAGE_SUFFIX)


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True,
                            use_dictionary=[n for n in schema.names if n in DICTIONARY_COLUMNS])


class _Stage:
    """An open staging stream: an unbuffered Arrow file (each write is a system call), an IPC
    stream writer on it, and a second descriptor of the file for the lock and ``fsync``."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        # locked before it is truncated: a stream a live run holds is refused, not emptied
        self.fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(self.fd)
                raise
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema,
                                        options=pa.ipc.IpcWriteOptions(compression="lz4"))
        # an empty batch puts the schema on disk now: even a table that never got a row is
        # recovered with its schema
        self.writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema))

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        self.writer.close()
        self.sink.close()
        os.close(self.fd)  # releases the lock


def stage_in_use(path: Path | str) -> bool:
    """Is the staging stream ``path`` still held by a live writer (POSIX ``flock``)?"""
    if fcntl is None:
        return False
    with open(path, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def read_stage(path: Path | str) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch], list[str]]:
    """(schema, batches, problems) of a staging stream, tolerant of a truncated end: the
    batches are every complete one before the first damaged message (a process killed in the
    middle of a write). ``schema`` is ``None`` if not even the schema was written. The
    ``problems`` list gets a line when the batches stop early (once the iterator is done)."""
    problems: list[str] = []
    f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    try:
        reader = pa.ipc.open_stream(f)
    except (pa.ArrowException, OSError, EOFError) as e:
        f.close()
        problems.append(f"{Path(path).name}: no schema ({type(e).__name__}: {e})")
        return None, iter(()), problems

    def batches() -> Iterator[pa.RecordBatch]:
        with f:
            while True:
                try:
                    b = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowException, OSError, EOFError) as e:
                    problems.append(f"{Path(path).name}: stopped at a damaged batch "
                                    f"({type(e).__name__}: {e})")
                    return
                yield b

    return reader.schema, batches(), problems


def _fsync(path: Path) -> None:
    """``fsync`` a file, or a folder (its entries: a rename), where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - a folder cannot be opened (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - not supported for folders on some systems
        pass
    finally:
        os.close(fd)


class _RowGroups:
    """A Parquet file written in row groups of ``rows`` rows whatever the sizes of the batches
    it is given (so its bytes do not depend on when they came), to a temporary file that
    :meth:`close` renames to ``final``: the file is complete or absent. Holds fewer than
    ``rows`` rows plus one batch, in fewer than :data:`MERGE_BATCHES` batches (a table that
    gets a few rows per timed flush would otherwise keep a batch, and its overhead, per flush)."""

    def __init__(self, final: Path, schema: pa.Schema, rows: int) -> None:
        self.final, self.schema, self.rows = final, schema, rows
        self.tmp = final.with_name(f".{final.name}.tmp")
        self.writer = _parquet_writer(self.tmp, schema)
        self.pending: list[pa.RecordBatch] = []
        self.n = 0  # rows pending
        self.written = 0

    def _pending_table(self) -> pa.Table:
        return pa.Table.from_batches(self.pending, self.schema).combine_chunks()

    def add(self, b: pa.RecordBatch) -> None:
        if b.num_rows == 0:
            return
        self.pending.append(b)
        self.n += b.num_rows
        while self.n >= self.rows:
            t = self._pending_table()
            self.writer.write_table(t.slice(0, self.rows))
            self.pending = t.slice(self.rows).to_batches()
            self.n -= self.rows
            self.written += self.rows
        if len(self.pending) >= MERGE_BATCHES:
            self.pending = self._pending_table().to_batches()

    def close(self, durable: bool = False) -> int:
        """Write the rows pending, finish the file and move it into place; returns its rows.
        ``durable``: ``fsync`` the file before the rename and the folder after it (the stream
        it replaces is deleted next: after a power cut one of the two must be whole)."""
        if self.n:
            self.writer.write_table(self._pending_table())
            self.written += self.n
            self.pending, self.n = [], 0
        self.writer.close()
        if durable:
            _fsync(self.tmp)
        os.replace(self.tmp, self.final)
        if durable:
            _fsync(self.final.parent)
        return self.written

    def abandon(self) -> None:
        """Close the temporary file without moving it into place (a write failed)."""
        with contextlib.suppress(Exception):
            self.writer.close()


def compact(stage: Path | str, final: Path | str, batch_rows: int = 65_536,
            schema: pa.Schema | None = None) -> tuple[int, list[str]]:
    """Write the batches of the staging stream ``stage`` to the Parquet file ``final`` (via a
    temporary file and a rename, so ``final`` is complete or absent) in row groups of
    ``batch_rows`` rows, then delete ``stage``. ``schema``: used if the stream has none.
    Returns (rows, problems); raises ``ValueError`` if no schema is known."""
    stage, final = Path(stage), Path(final)
    found, batches, problems = read_stage(stage)
    schema = found or schema
    if schema is None:
        raise ValueError(f"{stage}: no schema in the stream and none known")
    groups = _RowGroups(final, schema, batch_rows)
    try:
        for b in batches:
            groups.add(b)
    except BaseException:
        groups.abandon()
        raise
    rows = groups.close(durable=True)
    stage.unlink()
    return rows, problems


class TableWriter:
    """Batched, append-only writer of one table: staged if made inside :func:`staging`, else
    direct (see the module docstring). ``batch_rows``: rows per Parquet row group."""

    def __init__(self, path: Path | str, schema: pa.Schema, run_id: str, replication: int,
                 batch_rows: int = 65_536) -> None:
        self.path = Path(path)
        self.schema = schema
        self._names = [f.name for f in schema][2:]
        self._types = [f.type for f in schema][2:]
        self.columns: list[list] = [[] for _ in self._names]
        self._run_id = run_id
        self._replication = replication
        self._run_scalars = (pa.scalar(run_id, schema.field(0).type),
                             pa.scalar(replication, schema.field(1).type))
        self._batch = batch_rows
        self._group = _GROUP.get()
        self._stage: _Stage | None = None
        if self._group is None:
            self._rows = batch_rows
        else:
            self._rows = self._group.policy.rows
            # first: its lock refuses a second writer before it touches the live run's files
            self._stage = _Stage(stage_path(self.path), schema)
            # a previous run's file of this table: gone, so that a recovery after a kill of this
            # run makes the table from this run's stream
            self.path.unlink(missing_ok=True)
        self._groups: _RowGroups | None = _RowGroups(self.path, schema, batch_rows)
        self._groups_failed = False  # staged: the Parquet side failed; close compacts the stream
        if self._group is not None:
            self._group.writers.append(self)
        self._first = min(self._rows, CHECK_ROWS) if self._group is not None else self._rows
        self._limit = self._first  # pending rows at which _full() looks (hot path: one compare)
        self._open = True
        self.rows_written = 0
        # called with each batch as it is written (an Arrow table): lets a consumer (the
        # verification) see the log once, without reading the file back
        self.batch_listeners: list[Callable[[pa.Table], None]] = []

    def __len__(self) -> int:
        return self.rows_written + len(self.columns[0])

    def append(self, *row) -> None:
        for col, v in zip(self.columns, row):
            col.append(v)
        if len(self.columns[0]) >= self._limit:
            self._full()

    def extend(self, *columns) -> None:
        """Append many rows given column by column (sequences of equal length)."""
        for col, v in zip(self.columns, columns):
            col.extend(v)
        if len(self.columns[0]) >= self._limit:
            self._full()

    def _full(self) -> None:
        """The pending rows reached ``_limit``: flush at ``rows``, or all tables if a timed
        flush is due, else look again ``CHECK_ROWS`` rows later."""
        n = len(self.columns[0])
        if n >= self._rows:
            self.flush()
        elif self._group is not None and self._group.due():
            self._group.flush()
        else:
            self._limit = min(self._rows, n + CHECK_ROWS)

    def flush(self) -> None:
        """Write the pending rows: staged, to the stream (the record a recovery reads), then on
        towards the Parquet file (whole row groups); direct, towards the Parquet file."""
        n = len(self.columns[0])
        self._limit = self._first
        if n == 0 or not self._open:
            return
        arrays = [pa.repeat(self._run_scalars[0], n), pa.repeat(self._run_scalars[1], n)]
        arrays += [pa.array(c, t) for c, t in zip(self.columns, self._types)]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if self._stage is not None:
            self._stage.write(table)
        self.rows_written += n
        for c in self.columns:  # written: never flushed twice, whatever fails below
            c.clear()
        if not self._groups_failed:
            try:
                for b in table.to_batches():
                    self._groups.add(b)
            except BaseException:
                self._groups_failed = True  # staged: the stream still has every row
                self._groups.abandon()
                raise
        for fn in self.batch_listeners:
            fn(table)

    def sync(self) -> None:
        """Make what was flushed durable (``fsync`` of the stream; direct writers: nothing)."""
        if self._stage is not None and self._open:
            self._stage.sync()

    def close(self) -> None:
        """Flush, then finish the Parquet file and move it into place (staged: then delete the
        stream; if writing the file failed, it is made from the stream instead). Safe to call
        twice."""
        if not self._open:
            return
        self.flush()  # if it raises, the stream stays for a recovery (or a second close)
        self._open = False
        if self._stage is not None:
            self._group.writers.remove(self)
            if self._groups_failed:
                self._stage.close()
                compact(self._stage.path, self.path, self._batch, self.schema)
            else:  # the file in place before the stream's lock goes (a recovery waits)
                self._groups.close(durable=True)
                self._stage.close()
                self._stage.path.unlink()
            self._stage = None
        elif not self._groups_failed:
            self._groups.close()
        self._groups = None


class EventLog(TableWriter):
    """The event log; ``record`` is on the hot path and appends straight to the column lists."""

    def __init__(self, path: Path | str, run_id: str, replication: int,
                 batch_rows: int = 65_536) -> None:
        super().__init__(path, EVENTS_SCHEMA, run_id, replication, batch_rows)
        (self._t, self._kind, self._entity, self._unit, self._product, self._loc,
         self._detail) = self.columns

    def record(self, t: float, kind: str, entity: str, unit_id: int = -1, product: str = "",
               location: str = "", detail: str = "") -> None:
        self._t.append(t)
        self._kind.append(kind)
        self._entity.append(entity)
        self._unit.append(unit_id)
        self._product.append(product)
        self._loc.append(location)
        self._detail.append(detail)
        if len(self._t) >= self._limit:
            self._full()


def write_table(path: Path | str, schema: pa.Schema, rows: list[tuple], run_id: str,
                replication: int) -> None:
    """Write a small table in one go (e.g. the KPI table), via a temporary file and a rename:
    the file is complete or absent."""
    path = Path(path)
    cols = list(zip(*rows)) if rows else [[] for _ in schema.names[2:]]
    arrays = [pa.array([run_id] * len(rows), schema.field(0).type),
              pa.array([replication] * len(rows), schema.field(1).type)]
    arrays += [pa.array(list(c), f.type) for c, f in zip(cols, list(schema)[2:])]
    tmp = path.with_name(f".{path.name}.tmp")
    with _parquet_writer(tmp, schema) as w:
        if rows:
            w.write_table(pa.Table.from_arrays(arrays, schema=schema))
    os.replace(tmp, path)
