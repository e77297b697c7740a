"""Queueing-theory validation of the kernel (Gross et al., *Fundamentals of
Queueing Theory*, 4th ed., Wiley 2008).

Every theoretical value is computed here from the formulas, with the rates read off the loaded
scenario (so the tests follow the scenario files), and compared with R independent replications
through a 99 % t-interval (see conftest.py). Each test first checks that the scenario still
satisfies the assumptions of the formula it uses (exponential times, unbounded FIFO buffers, no
failures, ...), so an edited scenario fails loudly instead of being compared with the wrong
theory.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

# --- theory -----------------------------------------------------------------------------------


def mm1(lam: float, mu: float) -> dict[str, float]:
    """M/M/1: ρ = λ/μ, W = 1/(μ − λ), L = ρ/(1 − ρ); sojourn time ~ Exp(μ − λ)."""
    assert lam < mu, "unstable M/M/1"
    rho = lam / mu
    return {"rho": rho, "W": 1.0 / (mu - lam), "L": rho / (1.0 - rho),
            "Wq": rho / (mu - lam), "sojourn_rate": mu - lam}


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = λ/μ (Erlang C)."""
    assert a < c, "unstable M/M/c"
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)


def mmc(lam: float, mu: float, c: int) -> dict[str, float]:
    """M/M/c: Wq = C(c, a)/(cμ − λ), W = Wq + 1/μ, L = λW, utilization a/c."""
    a = lam / mu
    wq = erlang_c(c, a) / (c * mu - lam)
    w = wq + 1.0 / mu
    return {"rho": a / c, "Wq": wq, "W": w, "L": lam * w}


def rate(dist) -> float:
    assert dist.dist == "exponential", f"theory needs exponential times, got {dist.dist}"
    return 1.0 / dist.mean_s


def assert_markovian_station(e, s) -> None:
    """Assumptions of M/M/c at one equipment: single-unit FIFO jobs, exponential service, no
    failures/changeovers/rejects/transformations, unbounded input buffer."""
    assert e.process_time.dist == "exponential"
    assert e.batch_size_units == 1 and e.output is None and e.changeover is None
    assert not e.failures and e.reject_probability == 0
    assert s.buffers[e.input].capacity_units is None, "theory assumes an unbounded buffer"


def jackson(s) -> dict:
    """Open Jackson network from the scenario graph: external Poisson rates γ from the sources,
    routing matrix P from each equipment's branches (a branch to a buffer goes to the equipment
    fed by that buffer; to a sink leaves the network), λ = solve((I − Pᵀ), γ); every node is
    M/M/c_i at λ_i; L = Σ L_i and W = L/Σγ (Little)."""
    names = list(s.equipment)
    idx = {n: i for i, n in enumerate(names)}
    fed_by = {}
    for n, e in s.equipment.items():
        assert e.input not in fed_by, "theory assumes one equipment per buffer"
        fed_by[e.input] = n
        assert_markovian_station(e, s)
    k = len(names)
    gamma = np.zeros(k)
    for src in s.sources.values():
        assert src.lot_size_units == 1 and src.max_units is None
        gamma[idx[fed_by[src.to]]] += rate(src.interarrival)
    P = np.zeros((k, k))
    for n, e in s.equipment.items():
        for to, p in e.branches():
            if to in fed_by:
                P[idx[n], idx[fed_by[to]]] += p
            else:
                assert to in s.sinks and s.sinks[to].kind == "product"
    lam = np.linalg.solve(np.eye(k) - P.T, gamma)
    nodes = {n: {"lam": float(lam[idx[n]]), "c": e.servers,
                 **mmc(float(lam[idx[n]]), rate(e.process_time), e.servers)}
             for n, e in s.equipment.items()}
    L = sum(v["L"] for v in nodes.values())
    return {"gamma": float(gamma.sum()), "nodes": nodes, "L": L, "W": L / float(gamma.sum())}


def single_station(s) -> tuple[float, float, int, str]:
    """λ, μ, c and equipment name of a one-source, one-station scenario."""
    (src,) = s.sources.values()
    (name, e), = s.equipment.items()
    assert src.to == e.input and src.lot_size_units == 1 and src.max_units is None
    assert_markovian_station(e, s)
    assert [to for to, _ in e.branches()] == [next(iter(s.sinks))]
    return rate(src.interarrival), rate(e.process_time), e.servers, name


def test_theory_helpers_agree_with_each_other():
    """Erlang C with one server reduces to the M/M/1 formulas and is a probability increasing
    in the load (pure algebra, no simulation)."""
    lam, mu = 0.7, 1.3
    one, c1 = mm1(lam, mu), mmc(lam, mu, 1)
    assert erlang_c(1, lam / mu) == pytest.approx(lam / mu)
    for q in ("W", "L", "Wq", "rho"):
        assert c1[q] == pytest.approx(one[q], rel=1e-12)
    # Erlang C is a probability, increasing in the load
    loads = np.linspace(0.1, 2.9, 15)
    cs = [erlang_c(3, a) for a in loads]
    assert all(0 < x < 1 for x in cs) and np.all(np.diff(cs) > 0)


# --- M/M/1 ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mm1_runs(replications):
    return replications("mm1")


def test_mm1_sojourn_time(mm1_runs, check_ci):
    lam, mu, c, _ = single_station(mm1_runs.scenario)
    assert c == 1
    th = mm1(lam, mu)
    check_ci("mm1", "W (lead_time mean) [s]", th["W"],
             mm1_runs.kpi(lambda s: s["lead_time_s"]["mean"]), 0.08)


def test_mm1_number_in_system(mm1_runs, check_ci):
    lam, mu, _, _ = single_station(mm1_runs.scenario)
    check_ci("mm1", "L (wip_mean)", mm1(lam, mu)["L"], mm1_runs.kpi(lambda s: s["wip_mean"]), 0.08)


def test_mm1_utilization(mm1_runs, check_ci):
    lam, mu, _, name = single_station(mm1_runs.scenario)
    check_ci("mm1", "utilization = rho", mm1(lam, mu)["rho"],
             mm1_runs.kpi(lambda s: s["equipment"][name]["utilization"]), 0.01)


def test_mm1_throughput(mm1_runs, check_ci):
    lam, _, _, _ = single_station(mm1_runs.scenario)
    check_ci("mm1", "throughput = lambda [1/h]", lam * 3600.0,
             mm1_runs.kpi(lambda s: s["throughput_per_h"]), 0.005)


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_mm1_sojourn_quantiles(mm1_runs, check_ci, q):
    """FIFO M/M/1 sojourn time is exponential with rate μ − λ: quantile −ln(1 − q)/(μ − λ).
    The KPI quantiles come from a log-binned histogram exact to ±0.05 %, far inside the CI."""
    lam, mu, _, _ = single_station(mm1_runs.scenario)
    theory = -math.log1p(-q) / mm1(lam, mu)["sojourn_rate"]
    key = {0.5: "p50", 0.95: "p95"}[q]
    guard = {0.5: 0.06, 0.95: 0.12}[q]
    check_ci("mm1", f"sojourn {key} [s]", theory,
             mm1_runs.kpi(lambda s: s["lead_time_s"][key]), guard)


# --- M/M/c (Erlang C) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mmc_runs(replications):
    return replications("mmc")


def test_mmc_sojourn_time_erlang_c(mmc_runs, check_ci):
    lam, mu, c, _ = single_station(mmc_runs.scenario)
    assert c > 1, "the mmc scenario should exercise parallel servers"
    check_ci("mmc", "W (Erlang C) [s]", mmc(lam, mu, c)["W"],
             mmc_runs.kpi(lambda s: s["lead_time_s"]["mean"]), 0.05)


def test_mmc_number_in_system(mmc_runs, check_ci):
    lam, mu, c, _ = single_station(mmc_runs.scenario)
    check_ci("mmc", "L (wip_mean)", mmc(lam, mu, c)["L"],
             mmc_runs.kpi(lambda s: s["wip_mean"]), 0.055)


def test_mmc_utilization(mmc_runs, check_ci):
    lam, mu, c, name = single_station(mmc_runs.scenario)
    check_ci("mmc", "utilization = a/c", mmc(lam, mu, c)["rho"],
             mmc_runs.kpi(lambda s: s["equipment"][name]["utilization"]), 0.01)


# --- open Jackson network with rework ------------------------------------------------------


@pytest.fixture(scope="module")
def jackson_runs(replications):
    return replications("jackson")


def test_jackson_network_has_feedback(jackson_runs):
    """Guard: the scenario keeps a probabilistic loop, or the test below would not exercise
    the traffic equations (λ_i above the external rate)."""
    th = jackson(jackson_runs.scenario)
    assert max(n["lam"] for n in th["nodes"].values()) > th["gamma"] * (1 + 1e-9)


def test_jackson_sojourn_time(jackson_runs, check_ci):
    th = jackson(jackson_runs.scenario)
    check_ci("jackson", "W = sum(L_i)/gamma [s]", th["W"],
             jackson_runs.kpi(lambda s: s["lead_time_s"]["mean"]), 0.08)


def test_jackson_number_in_system(jackson_runs, check_ci):
    th = jackson(jackson_runs.scenario)
    check_ci("jackson", "L = sum(L_i) (wip_mean)", th["L"],
             jackson_runs.kpi(lambda s: s["wip_mean"]), 0.09)


def test_jackson_throughput(jackson_runs, check_ci):
    th = jackson(jackson_runs.scenario)
    check_ci("jackson", "throughput = gamma [1/h]", th["gamma"] * 3600.0,
             jackson_runs.kpi(lambda s: s["throughput_per_h"]), 0.015)


@pytest.mark.parametrize("node", ["a", "b", "c"])
def test_jackson_node_utilization(jackson_runs, check_ci, node):
    """Utilization λ_i/(c_i μ_i) checks the traffic equations node by node (λ_A = λ_B include
    the rework flow)."""
    th = jackson(jackson_runs.scenario)
    assert node in th["nodes"], f"scenario has no equipment {node!r}"
    check_ci("jackson", f"utilization {node} = lam_i/(c_i mu_i)", th["nodes"][node]["rho"],
             jackson_runs.kpi(lambda s: s["equipment"][node]["utilization"]), 0.025)


# --- tandem line: throughput = bottleneck rate ---------------------------------------------


def serial_line(s) -> list[str]:
    """Equipment names in flow order for a saturated source feeding a serial line with unbounded
    buffers between stations (the first buffer may be finite: it only holds the source's lot)."""
    (src,) = s.sources.values()
    assert src.interarrival.dist == "constant" and src.interarrival.value_s == 0, \
        "theory assumes a saturated source"
    by_input = {e.input: n for n, e in s.equipment.items()}
    order, buf = [], src.to
    while buf in by_input:
        n = by_input[buf]
        e = s.equipment[n]
        assert not e.failures and e.batch_size_units == 1 and e.changeover is None
        assert e.reject_probability == 0 and e.output is None
        if order:
            assert s.buffers[buf].capacity_units is None, "theory assumes unbounded buffers"
        order.append(n)
        (buf,) = [to for to, _ in e.branches()]
    assert buf in s.sinks and len(order) == len(s.equipment)
    return order


@pytest.fixture(scope="module")
def tandem_runs(replications):
    return replications("tandem")


def station_rate(e) -> float:
    return e.servers / e.process_time.mean_s  # needs only the mean: any distribution


def test_tandem_throughput_is_bottleneck_rate(tandem_runs, check_ci):
    s = tandem_runs.scenario
    order = serial_line(s)
    x = min(station_rate(s.equipment[n]) for n in order)
    check_ci("tandem", "throughput = min rate [1/h]", x * 3600.0,
             tandem_runs.kpi(lambda r: r["throughput_per_h"]), 0.02)


def test_tandem_station_utilization(tandem_runs, check_ci):
    """Station i departs at min_{j<=i} rate_j, so it is busy that rate divided by its own
    rate: 1 up to and including the bottleneck, less after it."""
    s = tandem_runs.scenario
    order = serial_line(s)
    upstream_min = math.inf
    for n in order:
        r = station_rate(s.equipment[n])
        upstream_min = min(upstream_min, r)
        check_ci("tandem", f"utilization {n}", upstream_min / r,
                 tandem_runs.kpi(lambda res, n=n: res["equipment"][n]["utilization"]), 0.025)
