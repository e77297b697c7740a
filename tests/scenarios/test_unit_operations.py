"""A new unit operation is a module and a schema section: a metal detector defined here, after
the press, registered, configured in a scenario section, is a unit of the line with its own
PackML state, process values and set-point, and sits in the interlock chain (stopping it
stops every unit upstream of it); the engine, the chain and the builder are not edited."""

from __future__ import annotations

import importlib

import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, ConfigDict, Field

from darkfab.agents.line.units import LineUnit
from darkfab.factory.unit_operations import (UnitOperation, chain_order, register, registered,
                                             unregister)
from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.loader import ScenarioError


class MetalDetectorSpec(BaseModel):
    """A metal detector on the press's tablet chute: sensitivity (mm of ferrous sphere)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sensitivity_mm: float = Field(gt=0, le=5)


class MetalDetector:
    """The unit's agent: tablets inspected (the press's output) and its sensitivity."""

    def __init__(self, spec: MetalDetectorSpec, line) -> None:
        self.line = line
        self.sensitivity_mm = spec.sensitivity_mm
        self.setpoints = {"sensitivity_mm": ("mm", 0.3, 2.0)}

    def set_point(self, name: str, value: float, now: float) -> str | None:
        self.sensitivity_mm = value
        return None

    def readings(self, now: float) -> dict[str, tuple[float, str, float]]:
        return {"tablets_inspected": (self.line.output_kg / self.line.tablet.weight_kg, "", now),
                "sensitivity_mm": (self.sensitivity_mm, "mm", now)}


OP = UnitOperation("metal_detector", "press", MetalDetectorSpec, MetalDetector,
                   "metal detector after the press")

PROBE = '''
from darkfab.control import PackMLCommand, WakeUp
from darkfab.control.commands import SetPoint
from darkfab.control.supervisor import AutoRecoverySupervisor

class Probe(AutoRecoverySupervisor):
    SCRIPT = {script!r}
    seen = []

    def reset(self, info):
        super().reset(info)
        type(self).info = info
        type(self).seen = []
        self.started = False

    def decide(self, events, obs):
        out = super().decide(events, obs)
        if not self.started:
            out += [WakeUp(t, f"probe:{{t!r}}") for t in sorted(self.SCRIPT)]
            self.started = True
        for e in events:
            if e.kind == "timer" and e.detail.startswith("probe:"):
                t = float(e.detail[6:])
                type(self).seen.append((obs.time_s, obs.equipment))
                for kind, *args in self.SCRIPT[t]:
                    out.append(PackMLCommand(*args) if kind == "packml" else SetPoint(*args))
            if e.kind == "command_rejected":
                type(self).seen.append(("rejected", e.detail))
        return out
'''


@pytest.fixture
def metal_detector():
    register(OP)
    yield OP
    unregister(OP.kind)


def test_chain_places_the_new_unit(metal_detector):
    order = chain_order()
    assert order["press"] < order["metal_detector"] < order["pat"] < order["gate"]
    assert LineUnit("cdc.metal_detector", "metal_detector", {}).rank == order["metal_detector"]
    with pytest.raises(ValueError, match="unknown upstream"):
        register(UnitOperation("x", "nowhere", MetalDetectorSpec, MetalDetector))


def test_the_section_is_validated_by_its_model(metal_detector):
    ok = load_scenario("cdc-line", [
        "continuous_lines.cdc.unit_operations={metal_detector = {sensitivity_mm = 0.8}}"])
    assert ok.continuous_lines["cdc"].unit_operations["metal_detector"].sensitivity_mm == 0.8
    with pytest.raises(ScenarioError, match="metal_detector.sensitivity_mm"):
        load_scenario("cdc-line", [
            "continuous_lines.cdc.unit_operations={metal_detector = {sensitivity_mm = -1}}"])
    unregister(OP.kind)
    with pytest.raises(ScenarioError, match="unknown unit operation"):
        load_scenario("cdc-line", [
            "continuous_lines.cdc.unit_operations={metal_detector = {sensitivity_mm = 0.8}}"])
    assert "metal_detector" not in registered()


def test_new_unit_runs_in_the_line_and_its_interlock(tmp_path, controller_module,
                                                     metal_detector):
    """Hold the metal detector at 2 h: the press, blender and feeders stop with it (upstream,
    Held), the PAT and gate downstream are Suspended, no tablets are made; Unhold at 3 h and
    the line runs again. Its set-point and process values are in the observation."""
    t0, t1 = 2 * 3600.0, 3 * 3600.0
    script = {t0 - 1.0: [("sp", "cdc.metal_detector", "sensitivity_mm", 0.5, "test")],
              t0: [("packml", "cdc.metal_detector", "Hold", "test")], t0 + 600.0: [],
              t1 - 1.0: [], t1: [("packml", "cdc.metal_detector", "Unhold", "test")],
              t1 + 1800.0: []}
    controller_module("probe_unit_op", PROBE.format(script=script))
    s = load_scenario("cdc-line", [
        "scenario.warmup_s=0", "scenario.horizon_s=14400", "continuous_lines.cdc.failures=[]",
        "controller.name=probe_unit_op:Probe",
        "continuous_lines.cdc.unit_operations={metal_detector = {sensitivity_mm = 0.8}}"])
    res = run_scenario(s, out_dir=tmp_path / "run", allow_code=True)
    probe = importlib.import_module("probe_unit_op").Probe
    assert probe.info.setpoints["cdc.metal_detector"]["sensitivity_mm"].unit == "mm"
    seen = {t: eq for t, eq in probe.seen if t != "rejected"}
    assert not [d for t, d in probe.seen if t == "rejected"]
    before = seen[t0 - 1.0]["cdc.metal_detector"]
    assert before.state.value == "Execute" and before.values["tablets_inspected"].value > 0
    assert before.values["sensitivity_mm"].value == 0.8
    stopped = seen[t0 + 600.0]
    assert stopped["cdc.metal_detector"].state.value == "Held"
    assert stopped["cdc.metal_detector"].values["sensitivity_mm"].value == 0.5
    for u in ("cdc.press", "cdc.blender", "cdc.api", "cdc.excipient"):
        assert stopped[u].state.value == "Held", u
    for u in ("cdc.pat", "cdc.gate"):
        assert stopped[u].state.value == "Suspended", u
    made = seen[t0 + 600.0]["cdc.metal_detector"].values["tablets_inspected"].value
    assert seen[t1 - 1.0]["cdc.metal_detector"].values["tablets_inspected"].value == made
    after = seen[t1 + 1800.0]
    for u in ("cdc.metal_detector", "cdc.press", "cdc.api"):
        assert after[u].state.value == "Execute", u
    assert after["cdc.metal_detector"].values["tablets_inspected"].value > made
    ev = pq.read_table(res.out_dir / "events.parquet").to_pylist()
    order = [r["entity"] for r in ev if r["kind"] == "state" and r["time_s"] == t0]
    assert order[0] == "cdc.metal_detector"  # the commanded unit first, then upstream
    assert order.index("cdc.press") < order.index("cdc.blender") < order.index("cdc.api")
    assert res.summary["mass_balance_rel_error"] < 1e-9


PLUGIN = '''
from pydantic import BaseModel, ConfigDict, Field
from darkfab.factory.unit_operations import UnitOperation


class DedusterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    vibration_hz: float = Field(gt=0, le=100)


class Deduster:
    def __init__(self, spec, line):
        self.hz = spec.vibration_hz
        self.setpoints = {}

    def set_point(self, name, value, now):
        return "no set-points"

    def readings(self, now):
        return {"vibration_hz": (self.hz, "Hz", now)}


DEDUSTER = UnitOperation("deduster", "press", DedusterSpec, Deduster, "tablet deduster")
'''


def test_an_installed_unit_operation_is_found_by_the_command_line(tmp_path):
    """A package that names its unit operation in the ``darkfab.unit_operations`` entry-point
    group is known to ``darkfab check`` and ``run`` (in a fresh process: no test code imported
    there); without the package the section is one error line, exit 2."""
    import subprocess
    import sys

    site = tmp_path / "site"
    (site / "dfk_deduster-0.1.dist-info").mkdir(parents=True)
    (site / "dfk_deduster.py").write_text(PLUGIN)
    (site / "dfk_deduster-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dfk-deduster\nVersion: 0.1\n")
    (site / "dfk_deduster-0.1.dist-info" / "entry_points.txt").write_text(
        "[darkfab.unit_operations]\ndeduster = dfk_deduster:DEDUSTER\n")
    scen = tmp_path / "line.toml"
    scen.write_text('extends = "cdc-line"\n\n'
                    "[continuous_lines.cdc.unit_operations.deduster]\nvibration_hz = 50\n")

    def darkfab(*args, plugin=True):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site) if plugin else ""}
        return subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", *args],
                              capture_output=True, text=True, env=env, timeout=300)

    ok = darkfab("check", str(scen))
    assert ok.returncode == 0, ok.stderr
    run = darkfab("run", str(scen), "--hours", "7", "--out", str(tmp_path / "run"), "--quiet")
    assert run.returncode == 0, run.stderr
    probe = subprocess.run(  # the unit is in the plant a fresh process builds
        [sys.executable, "-c", "from darkfab.scenarios import load_scenario\n"
         "from darkfab.scenarios.simulation import Simulation\n"
         f"sim = Simulation.open(load_scenario({str(scen)!r}), out_dir={str(tmp_path / 'o')!r})\n"
         "sim.advance_to(3600.0)\n"
         "print(sim.observe().equipment['cdc.deduster'].values['vibration_hz'].value)\n"
         "sim.close()\n"], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split()[-1] == "50.0"
    bad = darkfab("check", str(scen), plugin=False)
    assert bad.returncode == 2
    assert "unknown unit operation 'deduster'" in bad.stderr and "Traceback" not in bad.stderr
