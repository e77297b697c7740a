"""Electronic batch records, tamper-evident: one JSON record per closed batch, one line each of
``RUN_DIR/batch_records.jsonl``, chained by hashes in the manner of 21 CFR Part 11 audit
trails.

Each record carries ``seq`` (0, 1, 2 … in the order written), ``prev_sha256`` (the hash of
the record before it; for the first, the run's genesis value, SHA-256 of
``"darkfab-batch-records:" + run_id``) and ``sha256``: the SHA-256 of the record's canonical
JSON without the ``sha256`` key (keys sorted, no spaces, UTF-8, NaN and infinities as null).
The line written is that canonical JSON with ``sha256`` added. ``summary.json`` also gives
each closed batch's ``record_sha256``, so a record removed from the end of the file (which
leaves the chain itself intact) is found too.

:func:`verify_records` recomputes everything: an edited record no longer matches its hash, a
deleted or moved record breaks ``seq`` and the chain, and the file and ``summary.json`` must
list the same batches in the same order.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["BatchRecordChain", "RECORDS_FILE", "genesis", "record_hash", "verify_records",
           "BadRecordsInput"]

RECORDS_FILE = "batch_records.jsonl"


class BadRecordsInput(ValueError):
    """The run directory cannot be checked (no summary, no run id, no records file)."""


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalars
        return _clean(x.item())
    return x


def _canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def genesis(run_id: str) -> str:
    """The hash the first record chains to."""
    return hashlib.sha256(f"darkfab-batch-records:{run_id}".encode()).hexdigest()


def record_hash(record: dict) -> str:
    """SHA-256 of a record's canonical JSON, its own ``sha256`` key left out."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


class BatchRecordChain:
    """Appends chained records to ``path`` (one run's chain; all lines of the plant share it).

    Args:
        path: the JSONL file (created, or truncated).
        run_id: the run's id (the genesis value is derived from it).
    """

    def __init__(self, path: Path | str, run_id: str) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.count = 0
        self.last_sha256 = genesis(run_id)
        self._f = self.path.open("w", encoding="utf-8")

    def append(self, record: dict) -> str:
        """Write ``record`` as the next link; returns its SHA-256."""
        if self._f is None:
            raise RuntimeError("batch record chain is closed")
        rec = {"seq": self.count, "prev_sha256": self.last_sha256, "run_id": self.run_id,
               **_clean(record)}
        rec["sha256"] = record_hash(rec)
        self._f.write(_canonical(rec) + "\n")
        self._f.flush()
        self.count += 1
        self.last_sha256 = rec["sha256"]
        return rec["sha256"]

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        if self._f is not None:
            self._f.close()
            self._f = None


def _expected(summary: dict) -> list[tuple[str, str, str | None]]:
    """(line, batch, record_sha256) of each closed batch with a record in ``summary.json``,
    by end time (their order in the file is checked by the chain itself)."""
    out = []
    for name, line in sorted((summary.get("continuous_lines") or {}).items()):
        for b in line.get("batches", []):
            if "record_sha256" in b and not b.get("open"):
                out.append((b["end_s"], name, b["batch"], b["record_sha256"]))
    out.sort(key=lambda t: t[0])
    return [(n, b, h) for _, n, b, h in out]


def verify_records(run_dir: Path | str) -> tuple[list[str], int]:
    """Check ``run_dir``'s batch records (module docstring). Returns (problems, records read):
    one line per problem, none if the records are intact. :class:`BadRecordsInput` if the
    directory cannot be checked."""
    run = Path(run_dir)
    if not run.is_dir():
        raise BadRecordsInput(f"{run}: not a directory")
    try:
        summary = json.loads((run / "summary.json").read_text())
    except FileNotFoundError:
        raise BadRecordsInput(f"{run}: no summary.json (not a darkfab run directory)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise BadRecordsInput(f"{run / 'summary.json'}: unreadable ({e})") from None
    run_id = summary.get("run_id") if isinstance(summary, dict) else None
    if not isinstance(run_id, str):
        raise BadRecordsInput(f"{run / 'summary.json'}: no run_id")
    path = run / RECORDS_FILE
    expected = _expected(summary)
    if not path.exists():
        if expected:
            return [f"{RECORDS_FILE}: missing, summary.json lists {len(expected)} batch "
                    "record(s)"], 0
        raise BadRecordsInput(f"{run}: no {RECORDS_FILE} (run without [continuous_lines.X."
                              "release] records)")
    problems: list[str] = []
    prev = genesis(run_id)
    records: list[dict] = []
    with path.open(encoding="utf-8") as f:
        for i, text in enumerate(f, start=1):
            where = f"{RECORDS_FILE} line {i}"
            try:
                rec = json.loads(text)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                problems.append(f"{where}: not a JSON record ({e}): edited")
                prev = None  # the next link cannot be checked against it
                continue
            seq, label = rec.get("seq"), f"{where} (seq {rec.get('seq')}, batch {rec.get('batch')})"
            if rec.get("sha256") != record_hash(rec):
                problems.append(f"{label}: content does not match its SHA-256: edited")
            if seq != len(records):
                problems.append(f"{label}: seq {seq} where {len(records)} was expected: a "
                                "record is missing or out of order")
            elif prev is not None and rec.get("prev_sha256") != prev:
                problems.append(f"{label}: does not chain to the record before it "
                                "(prev_sha256 differs): a record before it was edited, "
                                "removed or moved")
            if rec.get("run_id") != run_id:
                problems.append(f"{label}: run_id {rec.get('run_id')!r} is not this run's "
                                f"({run_id})")
            records.append(rec)
            prev = rec.get("sha256")
    got = [(r.get("line"), r.get("batch"), r.get("sha256")) for r in records]
    have = {h for _, _, h in got}
    for line, batch, h in expected:
        if h not in have:
            problems.append(f"batch {batch} of line {line}: its record (sha256 {h[:12]}…) is "
                            f"not in {RECORDS_FILE}: missing or edited")
    if len(records) != len(expected):
        problems.append(f"{RECORDS_FILE} holds {len(records)} record(s), summary.json lists "
                        f"{len(expected)} closed batch(es) with records")
    return problems, len(records)
