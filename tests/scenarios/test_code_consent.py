"""Code only by consent: a scenario file that names ``controller.name = "module:Class"`` never
imports that module on ``check`` or on ``run`` unless the command line names it
(``--controller``) or opts in (``--allow-code``); the Python API takes the class itself.

The user module writes a marker file when it is imported: its absence is the proof that no
code ran (not just that no controller was built).
"""

from __future__ import annotations

import json
import sys

import pytest

from darkfab.control import CautiousSupervisor, ControllerCodeNotAllowed
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.cli import main
from darkfab.scenarios.experiment import run_experiment
from darkfab.scenarios.loader import ScenarioError, shipped_scenarios

MM1 = ["mm1", "--hours", "2", "--set", "scenario.warmup_s=0"]  # a short shipped run

MODULE = '''
import pathlib
pathlib.Path(__file__).with_name("imported.txt").write_text("the module ran")

from darkfab.control import AutoRecoverySupervisor


class Mine(AutoRecoverySupervisor):
    name = "mine"


class Broken(AutoRecoverySupervisor):
    def __init__(self):
        raise ValueError("no such plant")
'''


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """(module name, scenario file naming ``module:Mine``, marker path), in a working
    directory that holds the module (where ``module:Class`` is looked up)."""
    name = f"consent_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    text = shipped_scenarios()["mm1"].read_text()
    text = text.replace("horizon_s = 200_000.0", "horizon_s = 2_000.0") \
        .replace("warmup_s = 5_000.0", "warmup_s = 0.0")
    scen = tmp_path / "shared.toml"
    scen.write_text(text + f'\n[controller]\nname = "{name}:Mine"\n')
    monkeypatch.chdir(tmp_path)
    yield name, scen, tmp_path / "imported.txt"
    sys.modules.pop(name, None)


def test_check_validates_the_name_but_never_imports(evil, capsys):
    name, scen, marker = evil
    assert main(["check", str(scen)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "not imported" in out and "--allow-code" in out
    load_scenario(scen)
    assert not marker.exists() and name not in sys.modules


def test_check_rejects_a_malformed_module_name(evil, capsys):
    _, scen, marker = evil
    scen.write_text(scen.read_text().replace(":Mine", "-x:Mine"))
    assert main(["check", str(scen)]) == 2
    err = capsys.readouterr().err
    assert "controller.name" in err and "module:Class" in err
    assert not marker.exists()


def test_run_without_consent_exits_2_naming_the_flags(evil, tmp_path, capsys):
    name, scen, marker = evil
    assert main(["run", str(scen), "--quiet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "controller.name" in err[0] and "--allow-code" in err[0] \
        and f"--controller {name}:Mine" in err[0]
    assert not marker.exists() and name not in sys.modules
    assert not (tmp_path / "o").exists()
    # --set on the command line is not consent either
    assert main(["run", *MM1, "--quiet", "--out", str(tmp_path / "o2"),
                 "--set", f'controller.name="{name}:Mine"']) == 2
    assert "--allow-code" in capsys.readouterr().err and not marker.exists()


def test_run_with_allow_code_runs_it(evil, tmp_path):
    _, scen, marker = evil
    assert main(["run", str(scen), "--quiet", "--allow-code", "--out", str(tmp_path / "o")]) == 0
    assert marker.exists()


def test_run_with_controller_on_the_command_line_runs_it(evil, tmp_path):
    name, _, marker = evil
    out = tmp_path / "o"
    assert main(["run", *MM1, "--quiet", "--controller", f"{name}:Mine",
                 "--out", str(out)]) == 0
    assert marker.exists()
    sm = json.loads((out / "summary.json").read_text())
    assert sm["resolved_scenario"]["controller"]["name"] == f"{name}:Mine"


def test_a_constructor_that_raises_is_a_scenario_error(evil, tmp_path, capsys):
    name, scen, _ = evil
    out = tmp_path / "o"
    assert main(["run", str(scen), "--quiet", "--controller", f"{name}:Broken",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "controller.name" in err and "ValueError: no such plant" in err
    assert "Traceback" not in err and not out.exists()


def test_registered_names_need_no_consent(tmp_path):
    out = tmp_path / "o"
    assert main(["run", *MM1, "--quiet", "--controller",
                 "cautious{max_faults = 2}", "--out", str(out)]) == 0
    ctl = json.loads((out / "summary.json").read_text())["resolved_scenario"]["controller"]
    assert ctl["name"] == "cautious" and ctl["params"] == {"max_faults": 2}


def test_python_api_takes_the_class_or_allow_code(evil, tmp_path):
    name, scen, marker = evil
    s = load_scenario(scen)
    with pytest.raises(ControllerCodeNotAllowed, match="allow_code"):
        run_scenario(s, out_dir=tmp_path / "refused")
    assert not marker.exists() and not (tmp_path / "refused").exists()
    # the class itself: no import of anything named by the file
    res = run_scenario(s, out_dir=tmp_path / "cls", controller=CautiousSupervisor)
    assert not marker.exists()
    assert res.plant.controller.__class__ is CautiousSupervisor
    assert res.summary["resolved_scenario"]["controller"]["name"] == "cautious"
    res = run_scenario(s, out_dir=tmp_path / "inst", controller=CautiousSupervisor(max_faults=1))
    assert res.plant.controller.max_faults == 1 and not marker.exists()
    run_scenario(s, out_dir=tmp_path / "allowed", allow_code=True)
    assert marker.exists()


def test_experiment_needs_allow_code(evil, tmp_path):
    name, scen, marker = evil
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[experiment]\nname = "e"\nscenario = "{scen.name}"\nreplications = 1\n')
    with pytest.raises(ScenarioError) as e:
        run_experiment(exp, engine="serial", out_dir=tmp_path / "e")
    assert "--allow-code" in str(e.value)
    assert not marker.exists()
    res = run_experiment(exp, engine="serial", out_dir=tmp_path / "e", allow_code=True)
    assert res.summary["runs_ok"] == 1 and marker.exists()


def test_compare_names_its_controllers(evil, tmp_path):
    """``compare --controller module:Class`` is consent (the command line names it)."""
    name, _, marker = evil
    assert main(["compare", *MM1, "--replications", "1", "--engine",
                 "serial", "--controller", "auto-recovery", "--controller", f"{name}:Mine",
                 "--out", str(tmp_path / "c")]) == 0
    assert marker.exists()


def test_compare_reports_an_unimportable_controller_before_running(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["compare", *MM1, "--replications", "1", "--engine", "serial", "--controller",
                 "auto-recovery", "--controller", "no_such_module_xyz:C", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot import module 'no_such_module_xyz'" in err and not out.exists()
