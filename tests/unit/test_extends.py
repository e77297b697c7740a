"""``extends``: a scenario inherits a shipped scenario or a file and overrides parts of it.

The merged scenario is checked against the parent edited by hand (an independent computation
of what the rules in docs/layouts.md say it must be)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from darkfab.scenarios import load_scenario, shipped_scenarios
from darkfab.scenarios.inherit import merge
from darkfab.scenarios.loader import ScenarioError

MM1 = Path(__file__).resolve().parents[2] / "scenarios" / "files" / "mm1.toml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def lines(e: ScenarioError) -> list[str]:
    return str(e).splitlines()


def test_the_wide_aisle_variant_is_the_warehouse_with_its_aisle_edited():
    parent = load_scenario("amr-warehouse").model_dump(mode="json")
    child = load_scenario("amr-warehouse-wide").model_dump(mode="json")
    expected = json.loads(json.dumps(parent))
    expected["scenario"]["name"] = "amr-warehouse-wide"
    expected["scenario"]["description"] = child["scenario"]["description"]
    expected["nodes"]["aisle"]["capacity_robots"] = 2
    edited = 0
    for link in expected["links"]:
        if {link["a"], link["b"]} in ({"w5", "aisle"}, {"aisle", "dock"}):
            link["capacity_robots"] = 2
            link["speed_limit_m_s"] = None  # removed: the default
            edited += 1
    assert edited == 2
    assert child == expected


def test_tables_merge_arrays_replace_empty_tables_remove(tmp_path):
    write(tmp_path / "child.toml", """
        extends = "amr-warehouse"
        [scenario]
        name = "five"
        [nodes.park_6]
        [fleet]
        count = 5
        homes = ["park_1", "park_2", "park_3", "park_4", "park_5"]
        [[links]]
        a = "w2"
        b = "park_6"
        remove = true
        [[links]]
        a = "w5"
        b = "dock"
        speed_limit_m_s = 0.5
        """)
    parent = load_scenario("amr-warehouse")
    s = load_scenario(tmp_path / "child.toml")
    assert s.scenario.name == "five" and s.scenario.horizon_s == parent.scenario.horizon_s
    assert "park_6" not in s.nodes and len(s.nodes) == len(parent.nodes) - 1
    assert s.fleet.homes == [f"park_{i}" for i in range(1, 6)]  # replaced, not appended
    assert s.fleet.battery == parent.fleet.battery  # inherited
    ends = [(lk.a, lk.b) for lk in s.links]
    assert ("w2", "park_6") not in ends
    assert ends[-1] == ("w5", "dock") and s.links[-1].speed_limit_m_s == 0.5  # a new link
    assert len(s.links) == len(parent.links)  # one removed, one added


def test_merge_does_not_touch_its_inputs_and_matches_links_either_way():
    parent = {"a": {"x": 1, "y": [1, 2]}, "links": [{"a": "p", "b": "q", "capacity_robots": 1}]}
    child = {"a": {"y": [3]}, "links": [{"a": "q", "b": "p", "capacity_robots": 2}]}
    snapshot = json.dumps([parent, child])
    out, src = merge(parent, child)
    assert json.dumps([parent, child]) == snapshot
    assert out == {"a": {"x": 1, "y": [3]}, "links": [{"a": "p", "b": "q",
                                                        "capacity_robots": 2}]}
    assert src == [("child", 0)]
    # a directed link is matched only with the same direction
    out, src = merge(parent, {"links": [{"a": "q", "b": "p", "directed": True}]})
    assert len(out["links"]) == 2 and src == [("parent", 0), ("child", 0)]


def test_a_chain_of_files_with_relative_paths(tmp_path):
    write(tmp_path / "base" / "mm1.toml", MM1.read_text())
    write(tmp_path / "mid" / "slow.toml", """
        extends = "../base/mm1.toml"
        [equipment.server.process_time]
        mean_s = 0.95
        """)
    write(tmp_path / "top.toml", """
        extends = "mid/slow.toml"
        [scenario]
        name = "top"
        """)
    s = load_scenario(tmp_path / "top.toml")
    base = load_scenario(MM1)
    assert s.scenario.name == "top"
    assert s.equipment["server"].process_time.mean_s == 0.95
    assert s.sources == base.sources


def test_errors_name_the_child_or_the_parent_file_and_line(tmp_path):
    parent = write(tmp_path / "parent.toml", MM1.read_text().replace(
        "horizon_s = ", "horizon_s = -", 1))
    bad_line = next(i for i, ln in enumerate(parent.read_text().splitlines(), 1)
                    if ln.startswith("horizon_s"))
    child = write(tmp_path / "child.toml", """
        extends = "parent.toml"

        [equipment.server]
        servers = "two"
        """)
    with pytest.raises(ScenarioError) as e:
        load_scenario(child)
    out = lines(e.value)
    assert f"{parent}:{bad_line}: scenario.horizon_s: " in "\n".join(out)
    assert any(ln.startswith(f"{child}:5: equipment.server.servers: ") for ln in out), out


def test_cycles_and_unknown_parents_are_refused(tmp_path):
    a = write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ScenarioError) as e:
        load_scenario(a)
    assert "cycle of extends" in str(e.value) and str(tmp_path / "b.toml") + ":1:" in str(e.value)
    write(tmp_path / "c.toml", 'extends = "c.toml"\n')
    with pytest.raises(ScenarioError, match="cycle"):
        load_scenario(tmp_path / "c.toml")
    write(tmp_path / "d.toml", 'extends = "no-such-plant"\n')
    with pytest.raises(ScenarioError) as e:
        load_scenario(tmp_path / "d.toml")
    assert "no-such-plant" in str(e.value) and "amr-warehouse" in str(e.value)
    write(tmp_path / "e.toml", "extends = 3\n")
    with pytest.raises(ScenarioError, match=r"e.toml:1: extends: must be"):
        load_scenario(tmp_path / "e.toml")


def test_removing_a_link_the_parent_lacks_is_an_error(tmp_path):
    write(tmp_path / "x.toml", """
        extends = "amr-warehouse"
        [[links]]
        a = "w0"
        b = "dock"
        remove = true
        """)
    with pytest.raises(ScenarioError, match=r"x.toml:3: links\[0\]: remove = true"):
        load_scenario(tmp_path / "x.toml")


def test_check_and_run_resolve_the_merged_scenario(tmp_path):
    child = write(tmp_path / "wide.toml", f"""
        extends = "{shipped_scenarios()['amr-warehouse-wide']}"
        [scenario]
        name = "wide2"
        """)
    cli = [sys.executable, "-m", "darkfab.scenarios.cli"]
    r = subprocess.run([*cli, "check", str(child)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    r = subprocess.run([*cli, "run", str(child), "--hours", "1", "--set", "scenario.warmup_s=600",
                        "--quiet", "--no-verify",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    resolved = json.loads((out / "summary.json").read_text())["resolved_scenario"]
    assert resolved["scenario"]["name"] == "wide2"
    assert resolved["nodes"]["aisle"]["capacity_robots"] == 2
    assert "extends" not in resolved
    assert resolved == load_scenario(child, ["scenario.horizon_s=3600",
                                                   "scenario.warmup_s=600"]).model_dump(mode="json")
