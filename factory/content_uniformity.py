"""Uniformity of dosage units (content uniformity, CU): the pharmacopoeial tests as pure
functions of the individual contents (% of label claim).

**USP <905> / Ph. Eur. 2.9.40** (harmonised text, "Uniformity of dosage units"):

* Acceptance value AV = |M − X̄| + k·s, X̄ the mean and s the sample standard deviation (n − 1)
  of the individual contents; k = 2.4 for n = 10 and 2.0 for n = 30.
* Reference value M (T the target content per unit at manufacture, 100 % unless stated):
  with T ≤ 101.5, M = X̄ if 98.5 ≤ X̄ ≤ 101.5, M = 98.5 if X̄ < 98.5, M = 101.5 if X̄ > 101.5;
  with T > 101.5, M = X̄ if 98.5 ≤ X̄ ≤ T, M = 98.5 if X̄ < 98.5, M = T if X̄ > T.
* L1 = 15.0 (largest allowed AV), L2 = 25.0 (unless the monograph says otherwise).
* Stage 1: 10 units; they comply if AV ≤ L1. Otherwise stage 2: 20 more units; the 30 comply
  if their AV ≤ L1 and no unit is below (1 − 0.01·L2)·M or above (1 + 0.01·L2)·M.

**Ph. Eur. 2.9.47** ("Demonstration of uniformity of dosage units using large sample sizes",
Ph. Eur. 8.0, 04/2013:20947), n ≥ 100 units selected by a predefined sampling plan, L1 = 15.0
and L2 = 25.0 unless otherwise specified, M as in 2.9.40:

* Alternative 1 (parametric): AV = |M − X̄| + k·s with k from Table 2.9.47.-1 by n; the sample
  complies if AV ≤ L1 and no more than c2 units (Table 2.9.47.-1) lie outside
  (1 ± 0.01·L2)·M.
* Alternative 2 (non-parametric): the sample complies if no more than c1 units lie outside
  (1 ± 0.01·L1)·M (0.85–1.15·M) and no more than c2 outside (1 ± 0.01·L2)·M (0.75–1.25·M),
  c1 and c2 from Table 2.9.47.-2 by n.

**Table values: what is sourced.** Only the rows of Table 2.9.47.-1 that the chapter's own
text states, in its note on how to read the table: "for a sample size of n = 400, enter the
table at n ≥ 385: k = 2.23 and c2 = 3; for n = 450, enter at n ≥ 407: k = 2.24 and c2 = 3; for
n = 500, enter at n ≥ 490: k = 2.24 and c2 = 4" (Ph. Eur. 8.0, 2.9.47, as reproduced at
abcdocz.com/doc/266962). The ranges of n these examples prove are 385–400, 407–450 and
490–500 (a row could start anywhere in 401–406 or 451–489 for all the text shows), and only
those are in :data:`OPTION1_ROWS`. No row of Table 2.9.47.-2 (alternative 2) could be sourced:
:func:`option2_limits` raises for every n, and :func:`ph_eur_2947_option2` takes c1 and c2 from
the caller (copied from the chapter the user holds). No value here is interpolated or made up;
:func:`option1_limits` raises :class:`TableNotSourced` for any other n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["CuResult", "TableNotSourced", "OPTION1_ROWS", "reference_value", "acceptance_value",
           "count_outside", "option1_limits", "option2_limits", "usp_905", "ph_eur_2947_option1",
           "ph_eur_2947_option2", "L1", "L2"]

L1 = 15.0  # largest allowed acceptance value (2.9.40 / <905>, 2.9.47)
L2 = 25.0  # largest allowed deviation of a unit from M, % (2.9.40 / <905>, 2.9.47)

#: Table 2.9.47.-1 rows the chapter's text states (module docstring):
#: (n from, n to, k, c2), both ends included.
OPTION1_ROWS: tuple[tuple[int, int, float, int], ...] = (
    (385, 400, 2.23, 3),
    (407, 450, 2.24, 3),
    (490, 500, 2.24, 4),
)


class TableNotSourced(ValueError):
    """The tabulated constant for this sample size is not in the sourced rows."""


@dataclass(frozen=True)
class CuResult:
    """The outcome of one CU test (contents in % of label claim)."""

    test: str  # "usp_905" | "ph_eur_2.9.47_option1" | "ph_eur_2.9.47_option2"
    n: int  # units evaluated (30 for a stage-2 <905> result)
    passed: bool
    mean_pct: float
    sd_pct: float
    reference_pct: float  # M
    acceptance_value: float | None  # AV (None for 2.9.47 alternative 2)
    k: float | None
    stage: int | None = None  # <905>: 1 or 2
    c1: int | None = None
    c2: int | None = None
    outside_l1: int | None = None  # units outside (1 ± 0.01·L1)·M
    outside_l2: int = 0  # units outside (1 ± 0.01·L2)·M
    reasons: tuple[str, ...] = field(default_factory=tuple)  # why it failed, if it did

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d


def reference_value(mean_pct: float, target_pct: float = 100.0) -> float:
    """M of 2.9.40 / <905> (module docstring): X̄ clamped to [98.5, 101.5] when T ≤ 101.5,
    to [98.5, T] when T > 101.5."""
    high = 101.5 if target_pct <= 101.5 else target_pct
    return min(max(mean_pct, 98.5), high)


def _mean_sd(x: np.ndarray) -> tuple[float, float]:
    if x.size < 2:
        raise ValueError(f"need at least 2 contents, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("contents must be finite")
    return float(x.mean()), float(x.std(ddof=1))


def acceptance_value(contents: Sequence[float] | np.ndarray, k: float,
                     target_pct: float = 100.0) -> tuple[float, float, float, float]:
    """AV = |M − X̄| + k·s of ``contents`` (% of label claim); returns (AV, M, X̄, s)."""
    x = np.asarray(contents, dtype=float)
    mean, sd = _mean_sd(x)
    m = reference_value(mean, target_pct)
    return abs(m - mean) + k * sd, m, mean, sd


def count_outside(contents: Sequence[float] | np.ndarray, m: float, limit_pct: float) -> int:
    """Units below (1 − 0.01·limit)·M or above (1 + 0.01·limit)·M (on the limit: inside)."""
    x = np.asarray(contents, dtype=float)
    lo, hi = (1.0 - 0.01 * limit_pct) * m, (1.0 + 0.01 * limit_pct) * m
    return int(np.count_nonzero((x < lo) | (x > hi)))


def option1_limits(n: int) -> tuple[float, int]:
    """k and c2 of Table 2.9.47.-1 for sample size ``n``, from the sourced rows only
    (:data:`OPTION1_ROWS`); :class:`TableNotSourced` otherwise."""
    for lo, hi, k, c2 in OPTION1_ROWS:
        if lo <= n <= hi:
            return k, c2
    ranges = ", ".join(f"{lo}–{hi}" for lo, hi, _, _ in OPTION1_ROWS)
    raise TableNotSourced(f"Ph. Eur. 2.9.47 Table 2.9.47.-1: no sourced row for n = {n} "
                          f"(sourced: n = {ranges}); give k and c2 from the chapter")


def option2_limits(n: int) -> tuple[int, int]:
    """c1 and c2 of Table 2.9.47.-2: no row is sourced (module docstring); always raises."""
    raise TableNotSourced(f"Ph. Eur. 2.9.47 Table 2.9.47.-2: no sourced row for n = {n}; "
                          "give c1 and c2 from the chapter")


def usp_905(contents: Sequence[float] | np.ndarray, target_pct: float = 100.0,
            l1: float = L1, l2: float = L2) -> CuResult:
    """USP <905> / Ph. Eur. 2.9.40 content uniformity, two stages: the first 10 contents, then
    (stage 1 failed) the first 30. Needs at least 10 contents; 30 if stage 2 is needed (else
    :class:`ValueError`)."""
    x = np.asarray(contents, dtype=float)
    if x.size < 10:
        raise ValueError(f"USP <905> needs 10 units (30 for stage 2), got {x.size}")
    av, m, mean, sd = acceptance_value(x[:10], 2.4, target_pct)
    if av <= l1:
        return CuResult("usp_905", 10, True, mean, sd, m, av, 2.4, stage=1,
                        outside_l2=count_outside(x[:10], m, l2))
    if x.size < 30:
        raise ValueError(f"USP <905> stage 1 failed (AV {av:.2f} > L1 {l1:g}); stage 2 needs "
                         f"30 units, got {x.size}")
    x30 = x[:30]
    av, m, mean, sd = acceptance_value(x30, 2.0, target_pct)
    out = count_outside(x30, m, l2)
    reasons = []
    if av > l1:
        reasons.append(f"AV {av:.2f} > L1 {l1:g} (n = 30)")
    if out:
        reasons.append(f"{out} unit(s) outside (1 ± {0.01 * l2:g})·M, M = {m:.2f} %")
    return CuResult("usp_905", 30, not reasons, mean, sd, m, av, 2.0, stage=2, outside_l2=out,
                    reasons=tuple(reasons))


def ph_eur_2947_option1(contents: Sequence[float] | np.ndarray, target_pct: float = 100.0,
                        k: float | None = None, c2: int | None = None, l1: float = L1,
                        l2: float = L2) -> CuResult:
    """Ph. Eur. 2.9.47 alternative 1 (parametric): AV ≤ L1 and at most c2 units outside
    (1 ± 0.01·L2)·M. ``k`` and ``c2`` from :func:`option1_limits` unless both are given."""
    x = np.asarray(contents, dtype=float)
    if x.size < 100:
        raise ValueError(f"Ph. Eur. 2.9.47 needs n ≥ 100 units, got {x.size}")
    if (k is None) != (c2 is None):
        raise ValueError("give both k and c2, or neither (then from Table 2.9.47.-1)")
    if k is None:
        k, c2 = option1_limits(x.size)
    assert c2 is not None
    av, m, mean, sd = acceptance_value(x, k, target_pct)
    out = count_outside(x, m, l2)
    reasons = []
    if av > l1:
        reasons.append(f"AV {av:.2f} > L1 {l1:g} (n = {x.size}, k = {k:g})")
    if out > c2:
        reasons.append(f"{out} unit(s) outside (1 ± {0.01 * l2:g})·M > c2 = {c2}, "
                       f"M = {m:.2f} %")
    return CuResult("ph_eur_2.9.47_option1", int(x.size), not reasons, mean, sd, m, av, k,
                    c2=c2, outside_l2=out, reasons=tuple(reasons))


def ph_eur_2947_option2(contents: Sequence[float] | np.ndarray, c1: int, c2: int,
                        target_pct: float = 100.0, l1: float = L1,
                        l2: float = L2) -> CuResult:
    """Ph. Eur. 2.9.47 alternative 2 (non-parametric): at most ``c1`` units outside
    (1 ± 0.01·L1)·M and at most ``c2`` outside (1 ± 0.01·L2)·M (``c1``, ``c2``: Table
    2.9.47.-2 for this n, from the caller; none is sourced here)."""
    x = np.asarray(contents, dtype=float)
    if x.size < 100:
        raise ValueError(f"Ph. Eur. 2.9.47 needs n ≥ 100 units, got {x.size}")
    if c1 < 0 or c2 < 0:
        raise ValueError("c1 and c2 must be ≥ 0")
    mean, sd = _mean_sd(x)
    m = reference_value(mean, target_pct)
    o1, o2 = count_outside(x, m, l1), count_outside(x, m, l2)
    reasons = []
    if o1 > c1:
        reasons.append(f"{o1} unit(s) outside (1 ± {0.01 * l1:g})·M > c1 = {c1}, M = {m:.2f} %")
    if o2 > c2:
        reasons.append(f"{o2} unit(s) outside (1 ± {0.01 * l2:g})·M > c2 = {c2}, M = {m:.2f} %")
    return CuResult("ph_eur_2.9.47_option2", int(x.size), not reasons, mean, sd, m, None, None,
                    c1=c1, c2=c2, outside_l1=o1, outside_l2=o2, reasons=tuple(reasons))

