"""Job-shop results against the published optima (Fisher & Thompson ft06 = 55, ft10 = 930).

The full ft10 check (CP-SAT within 3 % of 930 in 60 s) is slow and lives in
``tests/benchmarks/bench_jobshop.py``; here ft10 gets a short limit and is checked for bounds."""

from __future__ import annotations

import pytest

from darkfab.control.dispatching import RULES, dispatch_schedule
from darkfab.control.jobshop import KNOWN_BOUNDS, load_instance
from darkfab.control.scheduling import CpSatScheduler


def test_cpsat_proves_the_ft06_optimum():
    res = CpSatScheduler(time_limit_s=20).solve(load_instance("ft06"))
    assert res.optimal
    assert res.makespan == res.lower_bound == KNOWN_BOUNDS["ft06"][1] == 55


@pytest.mark.parametrize("name", ["ft06", "ft10"])
def test_no_rule_beats_the_proven_optimum(name):
    inst = load_instance(name)
    opt = KNOWN_BOUNDS[name][1]
    spans = {r: dispatch_schedule(inst, r).makespan for r in RULES}
    assert min(spans.values()) >= opt
    assert max(spans.values()) < 2 * opt  # non-delay schedules are within 2x (all here)


def test_cpsat_bound_brackets_the_ft10_optimum_with_a_short_limit():
    res = CpSatScheduler(time_limit_s=4).solve(load_instance("ft10"))
    assert res.lower_bound <= 930 <= res.makespan
