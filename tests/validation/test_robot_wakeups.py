"""Targeted wake-ups of waiting robots give statistically the same results as eager ones.

The robots of ``amr-warehouse`` wait for their legs under two wake-up policies, over R
replications with common random numbers (the same seed and replication number, hence the same
random streams, for both policies):

* targeted (the fleet's own): a waiting robot wakes when it can hold its leg, when what keeps it
  out changes, or when a robot keeping it out becomes idle or stalls;
* eager (the policy before, rebuilt here from public methods only): every release of a lane or
  node wakes every robot waiting for it, and every wait ends after ``retry_s`` at the latest.

Waking a robot that still cannot move changes nothing but when it looks again, so the policies
must agree on throughput, transport lead time and robot utilization. Equivalence is tested
(two one-sided tests at 5 %, Schuirmann 1987): the 90 % Student-t interval of the mean paired
difference (targeted − eager) over the R pairs must lie within ±``MARGIN`` of the eager mean.
The interval's half-width, t(0.95, R − 1)·s_d/√R, is the tolerance derived from R; the margin is
the practical bound on a difference that would matter.
"""

from __future__ import annotations

import math

import pytest

from darkfab.control.fleet import FleetManager
from darkfab.factory.occupancy import Occupancy
from darkfab.factory.statistics import t_interval
from darkfab.scenarios import load_scenario, run_scenario

REPLICATIONS = 6
HORIZON_S = 2 * 86_400.0
MARGIN = 0.01  # relative: 1 % of the eager mean
KPIS = {
    "throughput (tasks/h)": lambda s: s["fleet"]["tasks_per_h"],
    "lead time mean (s)": lambda s: s["fleet"]["transport_lead_time_s"]["mean"],
    "lead time p95 (s)": lambda s: s["fleet"]["transport_lead_time_s"]["p95"],
    "robot utilization": lambda s: s["fleet"]["utilization"],
}


def eager_wakeups(monkeypatch) -> None:
    """Every release of a key wakes every robot waiting for it; waits end after retry_s."""
    waiters: dict[tuple[int, object], list] = {}
    release = Occupancy.release

    def wait_for(self, keys, robot):
        ev = self.env.event()
        for k in keys:
            waiters.setdefault((id(self), k), []).append(ev)
        return ev

    def release_and_wake(self, key, robot):
        release(self, key, robot)
        for ev in waiters.pop((id(self), key), ()):
            if not ev.triggered:
                ev.succeed()

    monkeypatch.setattr(Occupancy, "wait_for", wait_for)
    monkeypatch.setattr(Occupancy, "release", release_and_wake)
    monkeypatch.setattr(FleetManager, "patience_s", lambda self, robot, loaded: self.retry_s)


def kpis(tmp_path, tag: str, replication: int) -> dict[str, float]:
    s = load_scenario("amr-warehouse", [f"scenario.horizon_s={HORIZON_S}"])
    res = run_scenario(s, replication=replication, out_dir=tmp_path / f"{tag}{replication}",
                       verify_run=False)
    return {k: f(res.summary) for k, f in KPIS.items()}


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wakeups")
    targeted = [kpis(tmp, "targeted", r) for r in range(REPLICATIONS)]
    with pytest.MonkeyPatch.context() as mp:
        eager_wakeups(mp)
        eager = [kpis(tmp, "eager", r) for r in range(REPLICATIONS)]
    return targeted, eager


@pytest.mark.parametrize("kpi", list(KPIS))
def test_targeted_wakeups_are_equivalent_to_eager_ones(paired, kpi):
    targeted, eager = paired
    diffs = [t[kpi] - e[kpi] for t, e in zip(targeted, eager)]
    ci = t_interval(diffs, 0.90)
    base = sum(e[kpi] for e in eager) / len(eager)
    bound = MARGIN * abs(base)
    print(f"{kpi}: eager {base:.4f}, targeted - eager {ci.mean:+.4f} ± {ci.half_width:.4f} "
          f"(90 %, R = {REPLICATIONS}), margin ±{bound:.4f}")
    assert math.isfinite(ci.half_width)
    assert -bound <= ci.mean - ci.half_width and ci.mean + ci.half_width <= bound, (
        f"{kpi}: 90 % interval of the paired difference {ci.mean:+.4f} ± {ci.half_width:.4f} "
        f"is not within ±{bound:.4f} ({MARGIN:.0%} of {base:.4f}); diffs {diffs}")


def test_the_eager_policy_really_wakes_more(paired, monkeypatch, tmp_path):
    """The comparison is not vacuous: the eager policy wakes waiting robots far more often
    (counted as the fleet's own waits that end, per leg set off)."""
    def count(eager: bool) -> float:
        n = {"waits": 0, "legs": 0}
        with pytest.MonkeyPatch.context() as mp:
            if eager:
                eager_wakeups(mp)
            wait_for, on_moving = Occupancy.wait_for, FleetManager.on_moving

            def counting_wait(self, keys, robot):
                n["waits"] += 1
                return wait_for(self, keys, robot)

            def counting_moving(self, robot, steps):
                n["legs"] += 1
                return on_moving(self, robot, steps)

            mp.setattr(Occupancy, "wait_for", counting_wait)
            mp.setattr(FleetManager, "on_moving", counting_moving)
            s = load_scenario("amr-warehouse", ["scenario.horizon_s=43200",
                                                "scenario.warmup_s=0"])
            run_scenario(s, out_dir=tmp_path / f"count{int(eager)}", verify_run=False)
        return n["waits"] / n["legs"]

    targeted, eager = count(False), count(True)
    print(f"waits per leg: targeted {targeted:.2f}, eager {eager:.2f}")
    assert eager > 3.0 * targeted
