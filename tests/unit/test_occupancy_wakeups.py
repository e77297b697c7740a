"""A robot waiting for its leg wakes only when it can hold the leg or when what keeps it out
changes (Occupancy.wait_for), and the robot and the fleet manager meet through Protocols.

Each case builds the occupancy by hand and checks, event by event, which waits have fired: the
expected answer follows from the rule itself (can the waiter hold every key? are the occupants
keeping it out still the same?), not from a run."""

from __future__ import annotations

import simpy

from darkfab.agents.fleet_port import Fleet, FleetRobot
from darkfab.factory.occupancy import Occupancy

LANE = ("lane", "a", "b")
LANE2 = ("lane", "b", "c")
LEG = [LANE, ("node", "b"), LANE2, ("node", "c")]


def occupancy(node_capacity: int = 1, lane_capacity: int = 1) -> Occupancy:
    env = simpy.Environment()
    return Occupancy(env, {n: node_capacity for n in "abc"},
                     {LANE: lane_capacity, LANE2: lane_capacity})


def test_a_release_that_leaves_the_leg_blocked_by_the_same_robot_wakes_nobody():
    occ = occupancy()
    occ.hold(LEG, "lead")  # the leader holds the whole leg ahead of the follower
    ev = occ.wait_for(LEG, "follow")
    for key in LEG[:-1]:  # the leader passes the first lane, node and lane: still in the way
        occ.release(key, "lead")
        assert not ev.triggered, f"woken by the release of {key} though still blocked"
    occ.release(LEG[-1], "lead")
    assert ev.triggered and occ.can_hold(LEG, "follow")
    assert occ.wakeups == 1


def test_a_release_that_changes_who_blocks_the_leg_wakes_the_waiter():
    occ = occupancy()
    occ.hold([LANE], "r1")
    occ.hold([("node", "c")], "r2")
    ev = occ.wait_for(LEG, "w")
    assert occ.blockers(LEG, "w") == {"r1", "r2"}
    occ.release(LANE, "r1")  # now only r2 keeps it out: its wait-for edges changed
    assert ev.triggered and not occ.can_hold(LEG, "w")


def test_room_on_a_wider_lane_changes_the_blockers_and_releases_elsewhere_are_silent():
    occ = occupancy(lane_capacity=2)
    occ.hold([LANE], "r1")
    occ.hold([LANE], "r2")
    occ.hold([("node", "c")], "r3")
    ev = occ.wait_for(LEG, "w")
    occ.release(LANE, "r1")  # the lane has room now, but r3 still holds the goal
    assert ev.triggered  # the blockers changed from {r1, r2, r3} to {r3}
    ev2 = occ.wait_for(LEG, "w")
    occ.hold([LANE], "r4")
    occ.release(("node", "a"), "nobody")  # a key not in the leg: nothing to do with it
    assert not ev2.triggered


def test_wake_blocked_by_wakes_only_the_robots_that_occupant_keeps_out():
    occ = occupancy()
    occ.hold([("node", "b")], "idle")
    occ.hold([("node", "a")], "other")
    kept_out = occ.wait_for([LANE, ("node", "b")], "w1")
    elsewhere = occ.wait_for([("node", "a")], "w2")
    occ.wake_blocked_by("idle")
    assert kept_out.triggered and not elsewhere.triggered


def test_a_waiter_that_can_already_hold_nothing_more_is_not_woken_twice():
    occ = occupancy()
    occ.hold([("node", "c")], "r")
    ev = occ.wait_for([("node", "c")], "w")
    occ.release(("node", "c"), "r")
    occ.hold([("node", "c")], "r")
    occ.release(("node", "c"), "r")
    assert ev.triggered and occ.wakeups == 1


def test_robot_and_fleet_manager_implement_their_protocols(tmp_path):
    from darkfab.scenarios import load_scenario, run_scenario

    s = load_scenario("amr-warehouse", ["scenario.horizon_s=600", "scenario.warmup_s=0"])
    res = run_scenario(s, out_dir=tmp_path, verify_run=False)
    assert isinstance(res.plant.fleet, Fleet)
    for robot in res.plant.robots.values():
        assert isinstance(robot, FleetRobot)
