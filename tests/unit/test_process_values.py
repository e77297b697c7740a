"""``EquipmentObs.values`` of line units (:class:`darkfab.control.observation.ProcessValues`): a read-only
mapping of :class:`Reading` s, a snapshot of the values when the observation was made."""

from collections.abc import Mapping
from types import MappingProxyType

import pytest

from darkfab.control.observation import ProcessValues, Reading


def test_reads_like_a_mapping_of_readings():
    raw = {"hopper_mass_kg": (1.5, "kg", 10.0), "feed_rate_kg_h": (5.4, "kg/h", 7.5)}
    v = ProcessValues(raw)
    assert isinstance(v, Mapping)
    assert list(v) == ["hopper_mass_kg", "feed_rate_kg_h"] and len(v) == 2
    assert v["hopper_mass_kg"] == Reading(1.5, "kg", 10.0)
    assert v["feed_rate_kg_h"].value == 5.4 and v["feed_rate_kg_h"].time_s == 7.5
    assert "hopper_mass_kg" in v and "speed_rpm" not in v
    assert v.get("speed_rpm") is None
    with pytest.raises(KeyError):
        v["speed_rpm"]
    # equal to the eager form the observation used to carry
    assert v == MappingProxyType({k: Reading(*t) for k, t in raw.items()})
    assert dict(v.items()) == {k: Reading(*t) for k, t in raw.items()}
    # what the mapping proxy it replaces offers
    assert v.copy() == dict(v.items()) and list(reversed(v)) == list(reversed(raw))
    assert v | {"x": Reading(1.0, "", 0.0)} == {**v.copy(), "x": Reading(1.0, "", 0.0)}


def test_a_malformed_reading_fails_when_observed():
    with pytest.raises(ValueError):
        ProcessValues({"speed_rpm": (250.0, "rpm")})  # a plug-in unit's reading without time


def test_is_a_read_only_snapshot():
    raw = {"speed_rpm": (250.0, "rpm", 3.0)}
    v = ProcessValues(raw)
    raw["speed_rpm"] = (0.0, "rpm", 4.0)  # the plant's next reading
    raw["holdup_kg"] = (1.0, "kg", 4.0)
    assert v["speed_rpm"] == Reading(250.0, "rpm", 3.0) and list(v) == ["speed_rpm"]
    with pytest.raises(TypeError):
        v["speed_rpm"] = Reading(1.0, "rpm", 5.0)  # type: ignore[index]
