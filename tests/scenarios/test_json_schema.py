"""``darkfab schema``: the JSON Schema of scenario files accepts every shipped scenario and
refuses what ``check`` refuses field by field (unknown keys, out-of-range values, bad
choices)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from darkfab.scenarios.cli import main
from darkfab.scenarios.loader import shipped_scenarios

jsonschema = pytest.importorskip("jsonschema")


def _schema(tmp_path, *flags):
    out = tmp_path / "sub" / "scenario.schema.json"
    assert main(["schema", "--out", str(out), *flags]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validators(tmp_path_factory):
    d = tmp_path_factory.mktemp("schema")
    plant, jobshop = _schema(d), _schema(d, "--jobshop")
    for s in (plant, jobshop):
        jsonschema.Draft202012Validator.check_schema(s)
    return {False: jsonschema.Draft202012Validator(plant),
            True: jsonschema.Draft202012Validator(jobshop)}


@pytest.mark.parametrize("name", sorted(shipped_scenarios()))
def test_shipped_scenarios_validate(validators, name):
    """A complete file validates as it is; a file that ``extends`` another (partial until the
    merge) validates as the scenario it resolves to."""
    data = tomllib.loads(shipped_scenarios()[name].read_text(encoding="utf-8"))
    if "extends" in data or "layout" in data:
        from darkfab.scenarios import load_scenario
        data = load_scenario(name).model_dump(mode="json", exclude_none=True)
    errors = [e.message for e in validators["jobshop" in data].iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["scenario"].update(horizon_s=-1.0), "horizon_s"),
    (lambda d: d["scenario"].update(horizn_s=1.0), "horizn_s"),
    (lambda d: d["nodes"][next(iter(d["nodes"]))].update(role="garage"), "garage"),
    (lambda d: d["equipment"]["server"].update(
        process_time={"dist": "lognormal", "mean_s": 1.0}), "process_time"),
    (lambda d: d["buffers"].update({"bad name!": {"node": "station"}}), "bad name!"),
])
def test_schema_refuses_bad_fields(validators, edit, where):
    data = tomllib.loads(shipped_scenarios()["mm1"].read_text(encoding="utf-8"))
    validators[False].validate(data)
    edit(data)
    errors = list(validators[False].iter_errors(data))
    assert errors and any(where in str(e.message) or where in e.json_path for e in errors)


def test_schema_describes_tables_and_fields(tmp_path, capsys):
    assert main(["schema"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["$schema"].endswith("2020-12/schema") and s["title"] == "darkfab scenario"
    defs = s["$defs"]
    assert "AMR" in defs["FleetSpec"]["description"]  # the model's docstring
    # a field's comment in schema.py or one of its parts (schema_layout.py) becomes its
    # description
    assert "payload_kg" in defs["FleetSpec"]["properties"]["payload_kg"]["description"] or \
        "mass" in defs["FleetSpec"]["properties"]["payload_kg"]["description"]
    assert "without progress" in \
        defs["VerificationSpec"]["properties"]["deadlock_bound_s"]["description"]
    assert defs["Meta"]["properties"]["horizon_s"]["exclusiveMinimum"] == 0


def test_field_comments_read_every_part_of_the_schema():
    """``schema.PARTS`` names every ``schema_*.py`` module: a new part's field comments reach
    the JSON Schema and the reference."""
    from darkfab.scenarios import schema

    folder = Path(schema.__file__).parent
    assert set(schema.PARTS) == {p.stem for p in folder.glob("schema_*.py")}
