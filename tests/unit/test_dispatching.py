"""Dispatching rules: each rule's priority by its formula, and a conformance suite over the
registry (every rule gives a feasible, non-delay schedule that the simulated shop reproduces)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import simpy

from darkfab.agents.jobshop import JobShopModel
from darkfab.control.dispatching import (RULES, Atc, Candidate, DispatchingRule, make_rule,
                                         select, twk_due_dates, dispatch_schedule)
from darkfab.control.jobshop import JobShopInstance, feasibility_errors, load_instance
from darkfab.scenarios.jobshop import DispatchPolicy


def random_instance(seed: int, n: int = 5, m: int = 4, zeros: bool = False) -> JobShopInstance:
    rng = np.random.default_rng(seed)
    lo = 0 if zeros else 1
    routes = [[(int(k), int(rng.integers(lo, 10))) for k in rng.permutation(m)]
              for _ in range(n)]
    return JobShopInstance.from_routes(f"rand{seed}", routes, m)


INSTANCES = [load_instance("ft06"), load_instance("ft10"), random_instance(1),
             random_instance(2, 8, 3), random_instance(3, 6, 5, zeros=True)]

C = [Candidate(job=0, op=0, processing_time=5, due_date=30, remaining_work=20, ready_time=2),
     Candidate(job=1, op=2, processing_time=2, due_date=12, remaining_work=4, ready_time=4),
     Candidate(job=2, op=1, processing_time=8, due_date=50, remaining_work=25, ready_time=1)]


@pytest.mark.parametrize("name, expected_job", [
    ("fifo", 2), ("spt", 1), ("lpt", 2), ("edd", 1), ("mwkr", 2),
    ("cr", 1),   # CRs at t=10: (30-10)/20=1.0, (12-10)/4=0.5, (50-10)/25=1.6
])
def test_each_rule_picks_by_its_definition(name, expected_job):
    rule = make_rule(name)
    assert C[select(rule, C, 10.0)].job == expected_job


def test_atc_matches_the_formula():
    rule = Atc(k=2.0)
    t = 10.0
    pbar = (5 + 2 + 8) / 3
    want = [c.weight / c.processing_time
            * math.exp(-max(c.due_date - c.processing_time - t, 0) / (2.0 * pbar)) for c in C]
    assert rule.priorities(C, t) == pytest.approx(want)
    # job 1: small p and nearly due -> highest index
    assert C[select(rule, C, t)].job == 1
    # job 0 with weight 3: 3/5 * exp(-15/10) = 0.134 < 0.5; with weight 3 x 2 x 2: 0.535 > 0.5
    heavy = [replace(C[0], weight=3.0), *C[1:]]
    assert heavy[select(rule, heavy, t)].job == 1
    heavy = [replace(C[0], weight=12.0), *C[1:]]
    assert heavy[select(rule, heavy, t)].job == 0
    with pytest.raises(ValueError):
        Atc(k=0)


def test_ties_are_broken_by_waiting_time_then_job():
    a = Candidate(job=3, op=0, processing_time=4, ready_time=5)
    b = Candidate(job=1, op=0, processing_time=4, ready_time=5)
    c = Candidate(job=0, op=0, processing_time=4, ready_time=7)
    assert [a, b, c][select(make_rule("spt"), [a, b, c], 9)].job == 1


def test_registry_and_errors():
    assert {"fifo", "spt", "edd", "cr", "atc", "lpt", "mwkr"} <= set(RULES)
    for name in RULES:
        r = make_rule(name)
        assert isinstance(r, DispatchingRule) and r.name == name
    with pytest.raises(ValueError, match="unknown dispatching rule"):
        make_rule("nope")
    with pytest.raises(ValueError):
        select(make_rule("spt"), [], 0)


def test_twk_due_dates():
    inst = load_instance("ft06")
    assert twk_due_dates(inst, 2.0) == [2.0 * inst.job_work(j) for j in range(6)]


# --- conformance over every registered rule -------------------------------------------------
@pytest.mark.parametrize("inst", INSTANCES, ids=lambda i: i.name)
@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_schedule_is_feasible_and_non_delay(rule, inst):
    s = dispatch_schedule(inst, rule)
    assert feasibility_errors(inst, s) == []
    # non-delay: no machine is idle while an operation waits for it
    by_key = s.by_key()
    busy = {k: sorted((o.start, o.end) for o in s.operations if o.machine == k)
            for k in range(inst.num_machines)}
    for o in s.operations:
        ready = by_key[(o.job, o.index - 1)].end if o.index > 0 else 0.0
        if o.start > ready:  # it waited: the machine must be busy over [ready, start)
            t = ready
            for a, b in busy[o.machine]:
                if a <= t < b:
                    t = b
            assert t >= o.start, (rule, o, "machine idle at", t)
    assert s.makespan >= inst.trivial_lower_bound()


@pytest.mark.parametrize("inst", INSTANCES, ids=lambda i: i.name)
@pytest.mark.parametrize("rule", sorted(RULES))
def test_simulated_shop_reproduces_the_rule_schedule(rule, inst):
    env = simpy.Environment()
    routes = [[(o.machine, o.time) for o in job] for job in inst.jobs]
    model = JobShopModel(env, routes, inst.num_machines, DispatchPolicy(inst, make_rule(rule)))
    model.start()
    env.run()
    assert model.done
    ref = dispatch_schedule(inst, rule)
    assert model.makespan_s == ref.makespan
    assert {k: (v[1], v[2]) for k, v in model.starts.items()} == \
        {(o.job, o.index): (o.start, o.end) for o in ref.operations}
