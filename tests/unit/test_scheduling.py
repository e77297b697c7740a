"""CP-SAT job-shop scheduler: feasibility, warm start, determinism, rolling horizon, and the
simulated shop following its machine sequences."""

from __future__ import annotations

import pytest
import simpy

from darkfab.agents.jobshop import JobShopModel, SequencePolicy
from darkfab.control.dispatching import dispatch_schedule
from darkfab.control.jobshop import JobShopInstance, feasibility_errors, load_instance
from darkfab.control.scheduling import CpSatScheduler

FT06 = load_instance("ft06")
FT10 = load_instance("ft10")


def simulate(inst: JobShopInstance, sequences) -> JobShopModel:
    env = simpy.Environment()
    routes = [[(o.machine, o.time) for o in job] for job in inst.jobs]
    model = JobShopModel(env, routes, inst.num_machines, SequencePolicy(sequences))
    model.start()
    env.run()
    return model


def test_ft06_optimum_and_the_simulation_reproduces_it():
    res = CpSatScheduler(time_limit_s=20).solve(FT06)
    assert res.status == "OPTIMAL" and res.makespan == 55 and res.lower_bound == 55
    assert feasibility_errors(FT06, res.schedule) == []
    assert res.hint_makespan == dispatch_schedule(FT06, "mwkr").makespan
    model = simulate(FT06, res.schedule.machine_sequences(FT06.num_machines))
    assert model.done and model.makespan_s == res.makespan
    assert {k: v[1] for k, v in model.starts.items()} == \
        {(o.job, o.index): o.start for o in res.schedule.operations}


def test_ft10_short_limit_is_feasible_and_bounded():
    res = CpSatScheduler(time_limit_s=5).solve(FT10)
    assert res.status in ("FEASIBLE", "OPTIMAL")
    assert feasibility_errors(FT10, res.schedule) == []
    assert res.lower_bound <= 930 <= res.makespan <= res.objective <= res.hint_makespan
    model = simulate(FT10, res.schedule.machine_sequences(FT10.num_machines))
    assert model.makespan_s == res.makespan  # a sub-optimal plan is reproduced too


def test_deterministic_mode_repeats_itself():
    def once():
        r = CpSatScheduler(time_limit_s=30, deterministic_time_limit=0.02,
                           random_seed=3).solve(FT10)
        return r.status, r.objective, r.lower_bound, r.schedule.operations

    assert once() == once()


def test_hint_can_be_switched_off_and_parameters_are_checked():
    res = CpSatScheduler(time_limit_s=10, hint_rule=None).solve(FT06)
    assert res.hint_makespan is None and res.makespan == 55
    with pytest.raises(ValueError):
        CpSatScheduler(time_limit_s=0)
    with pytest.raises(ValueError):
        CpSatScheduler(num_workers=0)


def test_rolling_horizon_keeps_the_frozen_part_and_reoptimises_the_rest():
    previous = dispatch_schedule(FT06, "spt")  # makespan 88, far from optimal
    now, freeze = 10.0, 5.0
    res = CpSatScheduler(time_limit_s=10).reschedule(FT06, previous, now, freeze_window=freeze)
    assert res.schedule is not None and feasibility_errors(FT06, res.schedule) == []
    new = res.schedule.by_key()
    frozen = [o for o in previous.operations if o.start < now + freeze]
    assert frozen
    for o in frozen:
        assert (new[(o.job, o.index)].start, new[(o.job, o.index)].machine) == (o.start, o.machine)
    for key, o in new.items():
        if key not in {(f.job, f.index) for f in frozen}:
            assert o.start >= now + freeze
    assert 55 <= res.makespan < previous.makespan


def test_rolling_horizon_respects_a_machine_outage():
    previous = CpSatScheduler(time_limit_s=10).solve(FT06).schedule
    res = CpSatScheduler(time_limit_s=10).reschedule(FT06, previous, now=8.0,
                                                    machine_available={2: 30.0})
    assert feasibility_errors(FT06, res.schedule) == []
    fixed = {(o.job, o.index) for o in previous.operations if o.start < 8.0}
    for o in res.schedule.operations:
        if (o.job, o.index) not in fixed and o.machine == 2:
            assert o.start >= 30.0
    assert res.makespan >= previous.makespan


def test_contradictory_fixed_starts_are_reported_not_raised():
    res = CpSatScheduler(time_limit_s=5).solve(FT06, fixed={(0, 0): 0.0, (0, 1): 0.0})
    assert res.status == "INFEASIBLE" and res.schedule is None and res.makespan is None
