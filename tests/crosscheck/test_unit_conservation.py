"""Unit conservation over generated plants, recomputed from the event log alone.

Hypothesis draws small lines: a source, 1–4 stages in series, a stage of one or two parallel
machines (probabilistic branches split the flow), finite input buffers, failures that hold or
abort (aborted work is scrapped), quality rejects to a scrap sink, transformations (a batch of
units consumed, a new product produced). From ``events.parquet`` alone, following every unit id
(entering by ``create`` or ``produce``, leaving by ``consume``, ``complete`` or ``scrap``):

- every unit enters once, leaves at most once, after it entered, as the product it entered as;
- per product, at every event: created + produced = completed + scrapped + consumed + in plant,
  with in plant (units entered and not left) never negative;
- the time average of the units in the plant after warm-up equals ``summary.json``'s
  ``wip_mean``, and the ``complete`` rows after warm-up its ``units_completed``.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from darkfab.scenarios import load_scenario, run_scenario
from time_scaling import to_toml

ENTER = {"create", "produce"}
LEAVE = {"consume", "complete", "scrap"}


def _dist(draw, mean: float) -> dict:
    kind = draw(st.sampled_from(["exponential", "lognormal", "constant"]))
    if kind == "constant":
        return {"dist": "constant", "value_s": mean}
    if kind == "lognormal":
        return {"dist": "lognormal", "mean_s": mean, "cv": 0.5}
    return {"dist": "exponential", "mean_s": mean}


@st.composite
def plants(draw) -> dict:
    stages = [draw(st.integers(1, 2)) if s else 1 for s in range(draw(st.integers(1, 4)))]
    product = "p0"
    products = {"p0": {}}
    buffers, equipment = {}, {}
    names = [[f"m{s}{j}" for j in range(n)] for s, n in enumerate(stages)]
    for s, row in enumerate(names):
        for name in row:
            buffers[f"q_{name}"] = {"node": "floor",
                                    "capacity_units": draw(st.integers(1, 4))}
    for s, row in enumerate(names):
        nxt = names[s + 1] if s + 1 < len(names) else None
        for name in row:
            e = {"node": "floor", "input": f"q_{name}",
                 "process_time": _dist(draw, draw(st.sampled_from([5.0, 10.0, 20.0])))}
            if nxt is None:
                e["next"] = "out"
            elif len(nxt) == 1:
                e["next"] = f"q_{nxt[0]}"
            else:
                p = draw(st.sampled_from([0.3, 0.5, 0.8]))
                e["next"] = [{"to": f"q_{nxt[0]}", "probability": p},
                             {"to": f"q_{nxt[1]}", "probability": round(1 - p, 10)}]
            if draw(st.booleans()):
                e["reject_probability"] = draw(st.sampled_from([0.05, 0.2]))
                e["reject_to"] = "scrap"
            if draw(st.booleans()):
                e["failures"] = [{"name": "jam",
                                  "time_to_failure": {"dist": "exponential",
                                                      "mean_s": draw(st.sampled_from(
                                                          [100.0, 400.0]))},
                                  "repair_time": {"dist": "exponential", "mean_s": 60.0},
                                  "reaction": draw(st.sampled_from(["hold", "abort"]))}]
            if row == names[s] and s > 0 and draw(st.integers(0, 2)) == 0:
                new = f"p{s}"
                products[new] = {}
                e["batch_size_units"] = draw(st.integers(1, 3))
                e["output"] = {"product": new, "units": draw(st.integers(1, 2)),
                               "container": False}
            equipment[name] = e
    return {
        "scenario": {"name": "conservation", "horizon_s": 3000.0, "warmup_s": 300.0,
                     "seed": draw(st.integers(0, 10_000))},
        "products": products,
        "nodes": {"floor": {"x_m": 0.0, "y_m": 0.0}},
        "sources": {"in": {"node": "floor", "to": f"q_{names[0][0]}", "product": product,
                           "interarrival": _dist(draw, draw(st.sampled_from([4.0, 8.0, 15.0])))}},
        "buffers": buffers,
        "equipment": equipment,
        "sinks": {"out": {"node": "floor", "kind": "product"},
                  "scrap": {"node": "floor", "kind": "scrap"}},
    }


def check_conservation(run_dir: Path, summary: dict) -> Counter:
    ev = pq.read_table(run_dir / "events.parquet",
                       columns=["time_s", "kind", "unit_id", "product"]).to_pylist()
    entered: dict[int, str] = {}
    left: set[int] = set()
    flows: dict[str, Counter] = {}
    in_plant = Counter()
    warm, end = summary["warmup_s"], summary["simulated_s"]
    area, last_t, completed_after = 0.0, warm, 0
    for i, e in enumerate(ev):
        kind, uid, prod, t = e["kind"], e["unit_id"], e["product"], e["time_s"]
        if kind not in ENTER and kind not in LEAVE:
            continue
        if t > warm:
            area += sum(in_plant.values()) * (t - max(last_t, warm))
            last_t = t
        f = flows.setdefault(prod, Counter())
        f[kind] += 1
        if kind in ENTER:
            assert uid not in entered, f"event {i}: unit {uid} enters twice"
            entered[uid] = prod
            in_plant[prod] += 1
        else:
            assert entered.get(uid) == prod, f"event {i}: unit {uid} ({prod}) leaves unentered"
            assert uid not in left, f"event {i}: unit {uid} leaves twice"
            left.add(uid)
            in_plant[prod] -= 1
            if kind == "complete" and t >= warm:
                completed_after += 1
        assert in_plant[prod] >= 0
        assert f["create"] + f["produce"] == (f["complete"] + f["scrap"] + f["consume"]
                                              + in_plant[prod]), f"event {i}: {prod} {f}"
    area += sum(in_plant.values()) * (end - max(last_t, warm))
    assert math.isclose(area / (end - warm), summary["wip_mean"], rel_tol=1e-9, abs_tol=1e-9)
    assert completed_after == summary["units_completed"]
    return Counter({k: v for f in flows.values() for k, v in f.items()})


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(plants())
def test_units_are_conserved_per_product_at_every_event(plant):
    note(to_toml(plant))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plant.toml"
        path.write_text(to_toml(plant))
        res = run_scenario(load_scenario(str(path)), out_dir=Path(tmp) / "run")
        flows = check_conservation(res.out_dir, res.summary)
    assert flows["create"] > 50  # the plant did work
