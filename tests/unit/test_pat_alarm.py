"""NIR alarm rules and their confusion matrix, on hand-made reading sequences."""

from __future__ import annotations

import pytest

from darkfab.factory.pat_alarm import PatAlarmRule

LO, HI = 0.95, 1.05


def _run(rule: PatAlarmRule, values, truths):
    fires = rule.feed_many(list(range(len(values))), list(values), list(truths))
    rule.finish()
    return fires, rule.confusion.as_dict()


def test_single_reading_rule():
    # one noisy reading out of spec (truth in spec), then a real two-reading excursion
    values = [1.0, 1.06, 1.0, 0.94, 0.93, 1.0]
    truths = [False, False, False, True, True, False]
    fires, c = _run(PatAlarmRule("single", LO, HI), values, truths)
    assert fires == [(1, 1), (3, 3), (4, 3 + 1)]
    assert c["false_alarms"] == 1 and c["true_alarms"] == 1
    assert (c["readings_tp"], c["readings_fp"], c["readings_fn"], c["readings_tn"]) == (2, 1, 0, 3)
    assert c["excursions"] == 1 and c["missed_excursions"] == 0


def test_k_of_n_ignores_a_lone_reading_and_reaches_back_to_its_evidence():
    values = [1.0, 1.06, 1.0, 1.0, 0.94, 1.0, 0.93, 1.0]
    truths = [False, False, False, False, True, True, True, False]
    fires, c = _run(PatAlarmRule("k_of_n", LO, HI, k=2, n=3), values, truths)
    # the lone 1.06 never fires; 0.94 (t=4) and 0.93 (t=6) are 2 of the last 3 at t=6: the
    # evidence starts at t=4
    assert fires == [(6, 4)]
    assert c["false_alarms"] == 0 and c["true_alarms"] == 1
    assert c["excursions"] == 1 and c["missed_excursions"] == 0
    # a short excursion the rule never confirms is missed
    fires, c = _run(PatAlarmRule("k_of_n", LO, HI, k=2, n=3), [1.0, 0.9, 1.0, 1.0],
                    [False, True, False, False])
    assert fires == [] and c["missed_excursions"] == 1 and c["readings_fn"] == 1


def test_moving_average():
    values = [1.0, 1.0, 0.9, 0.9, 0.9]
    fires, c = _run(PatAlarmRule("moving_average", LO, HI, n=3), values, [False] * 5)
    # means of the last 3: 0.967, 0.933 (fires, evidence from t=1), 0.9
    assert fires == [(3, 1), (4, 2)]
    assert c["false_alarms"] == 1  # the truth was in spec throughout: one false alarm


def test_bad_rules():
    with pytest.raises(ValueError):
        PatAlarmRule("median", LO, HI)
    with pytest.raises(ValueError):
        PatAlarmRule("k_of_n", LO, HI, k=4, n=3)
