"""darkfab serve's OPC UA server (asyncua) and pacing: a client on 127.0.0.1 browses to a unit,
reads its PackTags, commands it (validated like a controller's), writes a set-point and
disconnects; the results folder is complete. Lockstep runs are reproducible per seed."""

from __future__ import annotations

import asyncio
import json
import socket

import pyarrow.parquet as pq
import pytest

pytest.importorskip("asyncua")
from asyncua import Client, ua  # noqa: E402
from asyncua.ua.uaerrors import UaStatusCodeError  # noqa: E402

from darkfab.scenarios import load_scenario  # noqa: E402
from darkfab.scenarios.opcua_server import NAMESPACE, STATE_NUMBER  # noqa: E402
from darkfab.scenarios.serve import Pacer, serve_simulation  # noqa: E402
from darkfab.scenarios.simulation import Simulation  # noqa: E402

CDC = ["scenario.horizon_s=10800", "scenario.warmup_s=0"]  # 3 h
EXECUTE, HELD = STATE_NUMBER["Execute"], STATE_NUMBER["Held"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _scripted_client(url: str, log: dict) -> None:
    """Browse to the press, wait for Execute, Hold / Unhold, change the line rate, then
    acknowledge cycles to the horizon."""
    async with Client(url) as client:
        idx = await client.get_namespace_index(NAMESPACE)
        plant = await client.nodes.objects.get_child(f"{idx}:Plant")
        press = await plant.get_child([f"{idx}:Units", f"{idx}:cdc.press"])
        state = await press.get_child([f"{idx}:Status", f"{idx}:StateCurrent"])
        tph = await press.get_child([f"{idx}:ProcessValues", f"{idx}:tablets_per_h"])
        line_rate = await press.get_child([f"{idx}:SetPoints", f"{idx}:line_rate_kg_h"])
        ack = f"{idx}:Acknowledge"
        while await state.read_value() != EXECUTE:
            await plant.call_method(ack)
        for _ in range(30):  # 30 min of production
            await plant.call_method(ack)
        log["t_hold"] = await (await plant.get_child(f"{idx}:PlantClock")).read_value()
        await press.call_method(f"{idx}:Hold")
        log["after_hold"] = await state.read_value()
        with pytest.raises(UaStatusCodeError) as bad:  # Hold in Held: PackML refuses
            await press.call_method(f"{idx}:Hold")
        log["bad_hold"] = bad.value.code
        log["reason"] = await (await press.get_child(f"{idx}:LastCommandResult")).read_value()
        await plant.call_method(ack)
        await press.call_method(f"{idx}:Unhold")
        log["after_unhold"] = await state.read_value()
        for _ in range(5):
            await plant.call_method(ack)
        log["tph_before"] = await tph.read_value()
        rate = await line_rate.read_value()
        await line_rate.write_value(ua.Variant(0.8 * rate, ua.VariantType.Double))
        for _ in range(5):
            await plant.call_method(ack)
        log["tph_after"] = await tph.read_value()
        with pytest.raises(UaStatusCodeError) as bad:  # far outside its range
            await line_rate.write_value(ua.Variant(1e6, ua.VariantType.Double))
        log["bad_rate"] = bad.value.code
        done = await plant.get_child(f"{idx}:Done")
        while not await done.read_value():
            await plant.call_method(ack)


async def _started(task: asyncio.Task, ready: asyncio.Event) -> None:
    """Wait until the server listens (or re-raise why it could not start)."""
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set(), "the server did not start within 60 s"


async def _serve_lockstep(s, out, log, **kw):
    sim = Simulation.open(s, out_dir=out)
    port = _free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_simulation(sim, lockstep=True, cycle_s=60.0, port=port,
                                                on_ready=lambda _u: ready.set(), **kw))
    await _started(task, ready)
    try:
        await _scripted_client(f"opc.tcp://127.0.0.1:{port}/darkfab/", log)
    finally:
        result, stats = await task
    return result


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = load_scenario("cdc-line", CDC)
    tmp = tmp_path_factory.mktemp("opcua")
    logs, results = [], []
    for tag in ("a", "b"):
        log: dict = {}
        results.append(asyncio.run(_serve_lockstep(s, tmp / tag, log)))
        logs.append(log)
    return s, tmp, logs, results


def test_client_commands_the_press_over_opcua(served):
    s, tmp, logs, results = served
    log = logs[0]
    assert log["after_hold"] == HELD
    assert log["bad_hold"] == ua.StatusCodes.BadInvalidState
    assert "Hold" in log["reason"]
    assert log["after_unhold"] == EXECUTE
    # a line-rate cut of 20 % cuts tablets per hour by 20 % (same tablet weight)
    assert log["tph_after"] == pytest.approx(0.8 * log["tph_before"], rel=0.02)
    assert log["bad_rate"] == ua.StatusCodes.BadOutOfRange


def test_results_complete_and_commands_logged_with_issuer(served):
    s, tmp, logs, results = served
    out = results[0].out_dir
    for f in ("summary.json", "verification.json", "events.parquet", "kpis.parquet",
              "states.parquet"):
        assert (out / f).exists(), f
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["partial"] and summary["simulated_s"] == s.scenario.horizon_s
    ev = pq.read_table(out / "events.parquet").to_pandas()
    ours = ev[ev.location.str.startswith("opcua:")]
    assert set(ours.kind) == {"command", "command_rejected"}
    hold = ours[(ours.kind == "command") & (ours.detail == "Hold")]
    assert len(hold) == 1 and hold.time_s.iloc[0] == logs[0]["t_hold"]
    assert set(ours.location) == {"opcua:1"}  # the first (and only) client session


def test_lockstep_with_a_scripted_client_is_reproducible(served):
    s, tmp, logs, results = served
    a, b = (r.out_dir / "events.parquet" for r in results)
    assert a.read_bytes() == b.read_bytes()
    assert logs[0] == logs[1]


def test_read_only_refuses_commands(tmp_path):
    s = load_scenario("cdc-line", ["scenario.horizon_s=600", "scenario.warmup_s=0"])

    async def go():
        sim = Simulation.open(s, out_dir=tmp_path)
        port = _free_port()
        ready = asyncio.Event()
        stop = asyncio.Event()
        task = asyncio.create_task(serve_simulation(
            sim, lockstep=True, port=port, read_only=True, on_ready=lambda _u: ready.set(),
            stop=stop))
        await _started(task, ready)
        async with Client(f"opc.tcp://127.0.0.1:{port}/darkfab/") as client:
            idx = await client.get_namespace_index(NAMESPACE)
            press = await client.nodes.objects.get_child(
                [f"{idx}:Plant", f"{idx}:Units", f"{idx}:cdc.press"])
            with pytest.raises(UaStatusCodeError) as e:
                await press.call_method(f"{idx}:Hold")
            code = e.value.code
        stop.set()
        result, _ = await task
        return code, result
    code, result = asyncio.run(go())
    assert code == ua.StatusCodes.BadUserAccessDenied
    assert result.summary["partial"]  # stopped before the horizon: partial results
    ev = pq.read_table(tmp_path / "events.parquet").to_pandas()
    assert not ev.location.str.startswith("opcua").any()


class _FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.per_call = 0.0  # wall seconds that pass on every reading (a slow model)

    def __call__(self) -> float:
        self.t += self.per_call
        return self.t


def test_pacer_keeps_pace_when_the_model_is_fast(tmp_path):
    s = load_scenario("packaging-line", ["scenario.horizon_s=86400"])
    sim = Simulation.open(s, out_dir=tmp_path)
    clock, said = _FakeClock(), []
    p = Pacer(sim, 3600.0, clock=clock, report=said.append)
    for _ in range(10):
        assert p.tick() == pytest.approx(0.0, abs=1e-9)
        clock.t += 0.1
        assert sim.now == pytest.approx(3600.0 * (clock.t - 0.1))
    assert not said
    sim.close()


def test_pacer_reports_lag_when_the_model_is_slow(tmp_path):
    s = load_scenario("packaging-line", ["scenario.horizon_s=86400"])
    sim = Simulation.open(s, out_dir=tmp_path)
    clock, said = _FakeClock(), []
    clock.per_call = 1.0  # every slice of 0.02 s' worth of simulated time costs 1 wall s
    p = Pacer(sim, 100.0, clock=clock, report=said.append)
    lags = [p.tick() for _ in range(5)]
    assert lags == sorted(lags) and lags[-1] > 5.0  # the lag grows, it is not hidden
    assert sim.now == pytest.approx(5 * 100.0 * 0.02)  # one slice a tick: never skips time
    assert said and "behind the wall clock" in said[0]
    assert p.stats.max_lag_s == lags[-1] and p.stats.behind_ticks >= 4
    clock.per_call = 0.0
    clock.t = 1.0 + sim.now / 100.0 + 0.01  # the wall clock waits (wall0 = 1): catches up
    p.tick()
    assert "caught up" in said[-1]
    sim.close()


@pytest.mark.parametrize("argv, needle", [
    (["serve", "cdc-line", "--speed", "0"], "--speed: must be positive"),
    (["serve", "cdc-line", "--lockstep", "--cycle-s", "-1"], "--cycle-s: must be positive"),
    (["serve", "cdc-line", "--speed", "10", "--port", "70000"], "--port: 70000"),
    (["serve", "mm1", "--speed", "10", "--set", "scenario.horizon_s=-1"], "horizon_s"),
])
def test_serve_bad_input_one_line_exit_2(argv, needle, capsys):
    from darkfab.scenarios.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_serve_cli_paced_writes_results(tmp_path, capsys):
    from darkfab.scenarios.cli import main
    rc = main(["serve", "mm1", "--speed", "1e9", "--port", str(_free_port()),
               "--set", "scenario.horizon_s=3600", "--set", "scenario.warmup_s=60",
               "--out", str(tmp_path)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "serving mm1 at opc.tcp://127.0.0.1:" in err and "pacing:" in err
    assert json.loads((tmp_path / "summary.json").read_text())["partial"] is False


def test_readme_client_example_runs(tmp_path, capsys):
    """The README's client, as written there, against ``serve cdc-line --lockstep``."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                if "asyncua" in b and "Hold" in b)
    s = load_scenario("cdc-line", ["scenario.horizon_s=3600", "scenario.warmup_s=0"])

    async def go():
        sim = Simulation.open(s, out_dir=tmp_path)
        port = _free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve_simulation(
            sim, lockstep=True, port=port, on_ready=lambda _u: ready.set(), stop=stop))
        await _started(task, ready)
        client = code.replace(":4840/", f":{port}/").replace("asyncio.run(main())", "")
        ns: dict = {}
        exec(compile(client, "README.md", "exec"), ns)  # noqa: S102 - our own README
        await ns["main"]()
        stop.set()
        return await task
    asyncio.run(go())
    printed = capsys.readouterr().out.split()
    assert printed[:2] == [str(EXECUTE), str(HELD)]


def test_alarms_are_opcua_events(tmp_path):
    s = load_scenario("cdc-line", ["scenario.horizon_s=3600", "scenario.warmup_s=0"])

    class Handler:
        def __init__(self) -> None:
            self.events: list = []

        def event_notification(self, event) -> None:
            self.events.append(event)

    async def go():
        sim = Simulation.open(s, out_dir=tmp_path)
        port = _free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve_simulation(
            sim, lockstep=True, port=port, on_ready=lambda _u: ready.set(), stop=stop))
        await _started(task, ready)
        h = Handler()
        async with Client(f"opc.tcp://127.0.0.1:{port}/darkfab/") as c:
            idx = await c.get_namespace_index(NAMESPACE)
            plant = await c.nodes.objects.get_child(f"{idx}:Plant")
            sub = await c.create_subscription(50, h)
            await sub.subscribe_events(plant)
            sim.plant.model.alarms.raise_alarm(sim.now, "cdc.press", "test_condition",
                                               "raised by the test", "critical")
            await plant.call_method(f"{idx}:Acknowledge")  # publishes the alarm
            for _ in range(100):
                if h.events:
                    break
                await asyncio.sleep(0.05)
        stop.set()
        await task
        return h.events
    events = asyncio.run(go())
    assert len(events) == 1
    ev = events[0]
    assert ev.SourceName == "cdc.press" and ev.Severity == 900
    assert "test_condition: raised by the test" in ev.Message.Text
