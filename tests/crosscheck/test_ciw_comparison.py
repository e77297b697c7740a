"""darkfab against Ciw, a peer discrete-event simulator of queueing networks (Palmer et al.,
"Ciw: An open-source discrete event simulation library", J. Simulation 13(1), 2019), and against
the Pollaczek–Khinchine formula.

Each system is simulated R times independently by each simulator (darkfab: replications of one
seed; Ciw: its own seeds). Each replication gives one estimate after a warm-up: the mean sojourn
time (arrival to departure of the units that leave after the warm-up) and the throughput. The
two simulators agree when the 99 % Welch t-interval of the difference of their means contains
0; the half-width comes from R and the replications' spread, nothing is tuned. A guard checks
that the interval is narrow enough (a few % of the value) for the test to mean something.

Systems:
- tandem line with blocking: Poisson arrivals → unbounded queue → machine 1 (exponential,
  ρ = 0.6) → buffer of 1 → machine 2 (lognormal, cv 0.5, ρ = 0.7) → out. A unit that finishes
  on machine 1 while the buffer is full stays on the machine, which is blocked (blocking after
  service, Ciw's and darkfab's rule); the blocking lengthens the sojourn by about a fifth.
- M/G/2 with lognormal service (cv 1.2, ρ = 0.7).
- M/G/1 with lognormal service: W = E[S] + λ·E[S²]/(2(1 − ρ)) (Pollaczek–Khinchine; Gross et
  al., *Fundamentals of Queueing Theory*, 4th ed., 2008, §5.1.1), for darkfab and for Ciw.

Design (about 18 s of CPU for the file): horizon 20,000 s after a 1,000 s warm-up at
λ = 0.5/s (≈ 9,500 units per replication), R = 8 per simulator and system. A 99 % interval on a
difference has a false-alarm rate of 1 % per comparison, about 5 % over the five comparisons
here: a failure is strong evidence of a real difference, and a rerun with other seeds (the
``seed`` of the scenario) tells a fluke from a bug.
"""

from __future__ import annotations

import math
from pathlib import Path

import ciw
import numpy as np
import pytest
from scipy import stats

from darkfab.scenarios import load_scenario, run_scenario
from time_scaling import to_toml

R = 8
HORIZON_S, WARMUP_S = 20_000.0, 1_000.0
LAM = 0.5
CONFIDENCE = 0.99


def _lognormal_params(mean: float, cv: float) -> tuple[float, float]:
    s2 = math.log(1 + cv * cv)
    return math.log(mean) - s2 / 2, math.sqrt(s2)


# --- darkfab ----------------------------------------------------------------------------------
def _darkfab_plant(stations: list[dict]) -> dict:
    """A line of stations {"service": (mean, cv), "servers": c, "capacity": K or None}."""
    n = len(stations)
    equipment, buffers = {}, {}
    for i, st in enumerate(stations):
        mean, cv = st["service"]
        buffers[f"q{i}"] = {"node": "floor"}
        if st.get("capacity") is not None:
            buffers[f"q{i}"]["capacity_units"] = st["capacity"]
        dist = ({"dist": "exponential", "mean_s": mean} if st.get("exponential")
                else {"dist": "lognormal", "mean_s": mean, "cv": cv})
        equipment[f"m{i}"] = {"node": "floor", "input": f"q{i}", "servers": st.get("servers", 1),
                              "process_time": dist,
                              "next": f"q{i + 1}" if i + 1 < n else "out"}
    return {"scenario": {"name": "ciw-peer", "horizon_s": HORIZON_S, "warmup_s": WARMUP_S,
                         "seed": 20240},
            "products": {"part": {}},
            "nodes": {"floor": {"x_m": 0.0, "y_m": 0.0}},
            "sources": {"in": {"node": "floor", "to": "q0", "product": "part",
                               "interarrival": {"dist": "exponential", "mean_s": 1 / LAM}}},
            "buffers": buffers, "equipment": equipment,
            "sinks": {"out": {"node": "floor", "kind": "product"}}}


def darkfab_runs(stations: list[dict], tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mean sojourn s, throughput /s) per replication."""
    path = tmp / "plant.toml"
    path.write_text(to_toml(_darkfab_plant(stations)))
    s = load_scenario(str(path))
    w, x = [], []
    for r in range(R):
        res = run_scenario(s, replication=r, out_dir=tmp / f"r{r}")
        w.append(res.summary["lead_time_s"]["mean"])
        x.append(res.summary["throughput_per_h"] / 3600.0)
    return np.array(w), np.array(x)


# --- Ciw --------------------------------------------------------------------------------------
def _ciw_service(st: dict):
    mean, cv = st["service"]
    if st.get("exponential"):
        return ciw.dists.Exponential(rate=1 / mean)
    mu, sigma = _lognormal_params(mean, cv)
    return ciw.dists.Lognormal(mean=mu, sd=sigma)


def ciw_runs(stations: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    n = len(stations)
    routing = [[1.0 if j == i + 1 else 0.0 for j in range(n)] for i in range(n)]
    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=LAM)] + [None] * (n - 1),
        service_distributions=[_ciw_service(st) for st in stations],
        number_of_servers=[st.get("servers", 1) for st in stations],
        queue_capacities=[st.get("capacity") if st.get("capacity") is not None else math.inf
                          for st in stations],
        routing=routing)
    w, x = [], []
    for r in range(R):
        ciw.seed(1000 + r)
        q = ciw.Simulation(net)
        q.simulate_until_max_time(HORIZON_S)
        first: dict[int, float] = {}
        done: dict[int, float] = {}
        for rec in q.get_all_records():
            first[rec.id_number] = min(first.get(rec.id_number, math.inf), rec.arrival_date)
            if rec.node == n:
                done[rec.id_number] = rec.exit_date
        out = [(first[i], t) for i, t in done.items() if t >= WARMUP_S]
        w.append(np.mean([t - a for a, t in out]))
        x.append(len(out) / (HORIZON_S - WARMUP_S))
    return np.array(w), np.array(x)


# --- comparison -------------------------------------------------------------------------------
def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Difference of means and the half-width of its Welch t-interval."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return float(a.mean() - b.mean()), float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)
                                             * math.sqrt(va + vb))


def assert_agree(what: str, a: np.ndarray, b: np.ndarray, max_rel_hw: float) -> None:
    d, hw = welch(a, b)
    ref = abs(b.mean())
    print(f"{what}: darkfab {a.mean():.5g}, Ciw {b.mean():.5g}, difference {d:.3g} ± {hw:.3g}")
    assert abs(d) <= hw, (f"{what}: darkfab {a.mean():.5g} vs Ciw {b.mean():.5g}, difference "
                          f"{d:.4g} outside ±{hw:.3g} (99 % Welch, R={a.size}+{b.size})")
    assert hw <= max_rel_hw * ref, f"{what}: interval ±{hw:.3g} too wide to mean anything"


def t_interval(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1)
                                  * x.std(ddof=1) / math.sqrt(x.size))


def pk_sojourn(lam: float, mean: float, cv: float) -> float:
    """M/G/1 mean sojourn: E[S] + λ·E[S²]/(2(1 − ρ)) (Pollaczek–Khinchine)."""
    rho = lam * mean
    assert rho < 1
    return mean + lam * mean ** 2 * (1 + cv ** 2) / (2 * (1 - rho))


TANDEM = [{"service": (1.2, 1.0), "exponential": True},
          {"service": (1.4, 0.5), "capacity": 1}]


def test_tandem_line_with_blocking_agrees_with_ciw(tmp_path):
    dw, dx = darkfab_runs(TANDEM, tmp_path)
    cw, cx = ciw_runs(TANDEM)
    # blocking must matter: with an unbounded buffer the line is M/M/1 then M/G/1 (its input
    # is Poisson, Burke's theorem), and blocking makes the sojourn clearly longer than that
    free = pk_sojourn(LAM, 1.2, 1.0) + pk_sojourn(LAM, 1.4, 0.5)
    assert cw.mean() > 1.1 * free and dw.mean() > 1.1 * free, (cw.mean(), dw.mean(), free)
    print(f"tandem W darkfab {dw.mean():.4g} Ciw {cw.mean():.4g} unblocked {free:.4g}")
    assert_agree("tandem throughput", dx, cx, 0.02)
    assert_agree("tandem sojourn", dw, cw, 0.15)


MGC = [{"service": (2.8, 1.2), "servers": 2}]  # ρ = 0.7


def test_mgc_lognormal_agrees_with_ciw(tmp_path):
    dw, dx = darkfab_runs(MGC, tmp_path)
    cw, cx = ciw_runs(MGC)
    print(f"M/G/2 W darkfab {dw.mean():.4g} Ciw {cw.mean():.4g}")
    assert_agree("M/G/2 throughput", dx, cx, 0.03)
    assert_agree("M/G/2 sojourn", dw, cw, 0.2)


def test_mg1_lognormal_matches_pollaczek_khinchine(tmp_path):
    mean, cv = 1.2, 1.0  # ρ = 0.6
    mg1 = [{"service": (mean, cv)}]
    w_theory = pk_sojourn(LAM, mean, cv)
    for who, (w, _x) in (("darkfab", darkfab_runs(mg1, tmp_path)), ("Ciw", ciw_runs(mg1))):
        m, hw = t_interval(w)
        print(f"M/G/1 {who} W {m:.4g} ± {hw:.3g}, P-K {w_theory:.4g}")
        assert abs(m - w_theory) <= hw, (f"{who}: W {m:.4g} ± {hw:.3g}, "
                                         f"Pollaczek–Khinchine {w_theory:.4g}")
        assert hw <= 0.1 * w_theory
