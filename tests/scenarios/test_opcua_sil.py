"""Software in the loop from outside: ``darkfab serve cdc-line --lockstep`` as a subprocess on
127.0.0.1 and an asyncua client written from the README's example; and the server's security
(users and passwords, Basic256Sha256 SignAndEncrypt) from asyncua's own support."""

from __future__ import annotations

import asyncio
import json
import socket

import pyarrow.parquet as pq
import pytest

pytest.importorskip("asyncua")
from asyncua import Client, ua  # noqa: E402
from asyncua.crypto.cert_gen import setup_self_signed_certificate  # noqa: E402
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402
from opcua_processes import Served, darkfab, free_port  # noqa: E402

from darkfab.scenarios import load_scenario  # noqa: E402
from darkfab.scenarios.opcua_security import Security  # noqa: E402
from darkfab.scenarios.serve import serve_simulation  # noqa: E402
from darkfab.scenarios.simulation import Simulation  # noqa: E402

EXECUTE, HELD = 6, 11  # PackTags StateCurrent (ISA-TR88.00.02)


async def _readme_client(url: str) -> dict:
    """The README's client, extended by the done-when steps; it acknowledges cycles to the
    horizon, then disconnects."""
    log: dict = {}
    async with Client(url, timeout=30) as c:
        ns = await c.get_namespace_index("urn:darkfab")
        plant = await c.nodes.objects.get_child(f"{ns}:Plant")
        press = await c.nodes.objects.get_child([f"{ns}:Plant", f"{ns}:Units",
                                                 f"{ns}:cdc.press"])
        state = await press.get_child([f"{ns}:Status", f"{ns}:StateCurrent"])
        tph = await press.get_child([f"{ns}:ProcessValues", f"{ns}:tablets_per_h"])
        rate = await press.get_child([f"{ns}:SetPoints", f"{ns}:line_rate_kg_h"])
        done = await plant.get_child(f"{ns}:Done")
        log["first_state"] = await state.read_value()
        while await state.read_value() != EXECUTE:
            await plant.call_method(f"{ns}:Acknowledge")
        for _ in range(3):
            await plant.call_method(f"{ns}:Acknowledge")
        await press.call_method(f"{ns}:Hold")
        log["after_hold"] = await state.read_value()
        await press.call_method(f"{ns}:Unhold")
        log["after_unhold"] = await state.read_value()
        for _ in range(3):
            await plant.call_method(f"{ns}:Acknowledge")
        log["tph_before"] = await tph.read_value()
        log["rate_before"] = await rate.read_value()
        await rate.write_value(ua.Variant(0.8 * log["rate_before"], ua.VariantType.Double))
        for _ in range(3):
            await plant.call_method(f"{ns}:Acknowledge")
        log["tph_after"] = await tph.read_value()
        log["rate_after"] = await rate.read_value()
        while not await done.read_value():
            await plant.call_method(f"{ns}:Acknowledge")
    return log


@pytest.mark.timeout(600)
def test_serve_cdc_line_lockstep_subprocess_and_readme_client(tmp_path):
    out = tmp_path / "run"
    with Served(tmp_path, "cdc-line", "--lockstep", "--cycle-s", "600", "--hours", "4",
                "--set", "scenario.warmup_s=0", "--out", str(out)) as server:
        log = asyncio.run(asyncio.wait_for(_readme_client(server.url), 300))
        assert server.wait(120) == 0, server.err()  # the client left: the server ends
    assert log["after_hold"] == HELD and log["after_unhold"] != HELD
    # a line-rate cut of 20 % cuts the tablets per hour by 20 % (same tablet weight)
    assert log["rate_after"] == pytest.approx(0.8 * log["rate_before"])
    assert log["tph_after"] == pytest.approx(0.8 * log["tph_before"], rel=0.02)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is False and summary["simulated_s"] == 4 * 3600.0
    assert json.loads((out / "verification.json").read_text())["partial"] is False
    tables = sorted(out.glob("*.parquet"))
    assert {"events.parquet", "kpis.parquet", "states.parquet"} <= {t.name for t in tables}
    for t in tables:
        pq.read_table(t)  # readable: every writer closed
    ev = pq.read_table(out / "events.parquet").to_pandas()
    ours = ev[ev.location == "opcua:1"]
    assert list(ours[ours.kind == "command"].detail)[:2] == ["Hold", "Unhold"]


# --- security --------------------------------------------------------------------------------
def _cert(tmp, name: str, app_uri: str, use) -> tuple:
    key, cert = tmp / f"{name}-key.pem", tmp / f"{name}-cert.der"
    asyncio.run(setup_self_signed_certificate(key, cert, app_uri, socket.gethostname(), [use],
                                              {"commonName": name}))
    return cert, key


async def _serving(sim, security, body):
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_simulation(sim, lockstep=True, port=port,
                                                security=security, stop=stop,
                                                on_ready=lambda _u: ready.set(), linger_s=1))
    await asyncio.wait_for(ready.wait(), 60)
    try:
        return await asyncio.wait_for(body(f"opc.tcp://127.0.0.1:{port}/darkfab/"), 120)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _hold(client: Client) -> int:
    ns = await client.get_namespace_index("urn:darkfab")
    press = await client.nodes.objects.get_child([f"{ns}:Plant", f"{ns}:Units",
                                                  f"{ns}:cdc.press"])
    await press.call_method(f"{ns}:Hold")
    return await (await press.get_child([f"{ns}:Status", f"{ns}:StateCurrent"])).read_value()


def _sim(tmp_path):
    s = load_scenario("cdc-line", ["scenario.horizon_s=3600", "scenario.warmup_s=0"])
    sim = Simulation.open(s, out_dir=tmp_path)
    sim.advance_to(1800.0)  # the press in Execute
    return sim


def test_users_and_passwords_anonymous_refused(tmp_path):
    async def body(url):
        seen = {}
        for who, pwd in ((None, None), ("alice", "wrong"), ("mallory", "secret")):
            c = Client(url, timeout=10)
            if who is not None:
                c.set_user(who)
                c.set_password(pwd)
            with pytest.raises(ua.UaStatusCodeError) as e:
                async with c:
                    pass
            seen[who] = e.value.code
        c = Client(url, timeout=10)
        c.set_user("alice")
        c.set_password("secret")
        async with c:
            seen["state"] = await _hold(c)
        return seen
    seen = asyncio.run(_serving(_sim(tmp_path), Security({"alice": "secret"}), body))
    assert seen[None] == ua.StatusCodes.BadIdentityTokenRejected
    assert seen["alice"] == ua.StatusCodes.BadUserAccessDenied
    assert seen["mallory"] == ua.StatusCodes.BadUserAccessDenied
    assert seen["state"] == HELD


def test_certificate_security_sign_and_encrypt(tmp_path):
    """Basic256Sha256 SignAndEncrypt only; a client proves who it is with a trusted
    certificate (X509 identity); an untrusted certificate or an anonymous identity is refused."""
    server_cert, server_key = _cert(tmp_path, "server", "urn:freeopcua:python:server",
                                    ExtendedKeyUsageOID.SERVER_AUTH)
    client_cert, client_key = _cert(tmp_path, "client", "urn:freeopcua:client",
                                    ExtendedKeyUsageOID.CLIENT_AUTH)
    other = tmp_path / "other"
    other.mkdir()
    other_cert, other_key = _cert(other, "client", "urn:freeopcua:client",
                                  ExtendedKeyUsageOID.CLIENT_AUTH)

    async def secure(url, cert, key, identity: bool) -> Client:
        c = Client(url, timeout=10)
        await c.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                             server_certificate=str(server_cert),
                             mode=ua.MessageSecurityMode.SignAndEncrypt)
        if identity:
            await c.load_client_certificate(str(cert))
            await c.load_private_key(key)
        return c

    async def body(url):
        seen = {}
        eps = await Client(url, timeout=10).connect_and_get_server_endpoints()  # public
        seen["endpoints"] = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode)
                             for e in eps}
        with pytest.raises(ua.UaError, match="No matching endpoints"):  # a plain client
            async with Client(url, timeout=10) as plain:
                await _hold(plain)
        for what, cert, key, identity in (("anonymous", client_cert, client_key, False),
                                          ("untrusted", other_cert, other_key, True)):
            c = await secure(url, cert, key, identity)
            with pytest.raises(ua.UaStatusCodeError) as e:
                async with c:
                    pass
            seen[what] = e.value.code
        async with await secure(url, client_cert, client_key, True) as c:
            seen["state"] = await _hold(c)
        return seen
    sec = Security({}, server_cert, server_key, [client_cert])
    seen = asyncio.run(_serving(_sim(tmp_path), sec, body))
    assert seen["endpoints"] == {("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)}
    assert seen["anonymous"] == ua.StatusCodes.BadIdentityTokenRejected
    assert seen["untrusted"] == ua.StatusCodes.BadUserAccessDenied
    assert seen["state"] == HELD


@pytest.mark.parametrize("argv, needle", [
    (["serve", "cdc-line", "--lockstep", "--user", "bob"], "--user: 'bob': expected NAME:PASSWORD"),
    (["serve", "cdc-line", "--lockstep", "--cert", "x.pem"], "--cert/--key: give both"),
    (["serve", "cdc-line", "--lockstep", "--cert", __file__, "--key", __file__],
     "--cert: also give --user/--users-file or --trust"),
    (["serve", "cdc-line", "--lockstep", "--trust", __file__], "--trust: needs --cert/--key"),
    (["serve", "cdc-line", "--lockstep", "--cert", "no.pem", "--key", "no.pem"],
     "--cert: no such file"),
    (["serve", "cdc-line", "--speed", "10", "--remote-controller"],
     "--remote-controller: needs --lockstep"),
    (["supervise", "http://x"], "is not an opc.tcp:// endpoint"),
    (["supervise", "opc.tcp://127.0.0.1:1/darkfab/", "--user", "x"], "expected NAME:PASSWORD"),
])
def test_security_and_supervise_bad_input_one_line_exit_2(argv, needle, capsys):
    from darkfab.scenarios.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_supervise_without_a_server_fails_fast():
    r = darkfab("supervise", f"opc.tcp://127.0.0.1:{free_port()}/darkfab/", "--timeout", "5",
                timeout_s=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip()


# --- Alarms & Conditions -----------------------------------------------------------------------
def test_alarms_are_conditions_acknowledged_over_opcua(tmp_path):
    """An alarm is an AlarmConditionType event; the standard Acknowledge(EventId, Comment)
    acknowledges it in the plant (validated, logged with the client's issuer and comment)."""

    class Handler:
        def __init__(self) -> None:
            self.events: list = []

        def event_notification(self, event) -> None:
            self.events.append(event)

    async def wait_for(h, n):
        for _ in range(200):
            if len(h.events) >= n:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(h.events)} events, expected {n}")

    sim = _sim(tmp_path)

    async def body(url):
        h = Handler()
        out: dict = {}
        ack = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
        async with Client(url, timeout=10) as c:
            ns = await c.get_namespace_index("urn:darkfab")
            plant = await c.nodes.objects.get_child(f"{ns}:Plant")
            sub = await c.create_subscription(50, h)
            await sub.subscribe_events(plant, ua.ObjectIds.AlarmConditionType)
            a = sim.plant.model.alarms.raise_alarm(sim.now, "cdc.press", "test_condition",
                                                   "raised by the test", "high")
            await plant.call_method(f"{ns}:Acknowledge")  # a cycle: publishes the alarm
            await wait_for(h, 1)
            raised = h.events[0]
            out["raised"] = raised
            await plant.call_method(ack, raised.EventId, ua.LocalizedText("seen it"))
            await wait_for(h, 2)
            out["acked"] = h.events[1]
            for what, eid in (("again", raised.EventId), ("unknown", b"not-an-event-id")):
                with pytest.raises(ua.UaStatusCodeError) as e:
                    await plant.call_method(ack, eid, ua.LocalizedText(""))
                out[what] = e.value.code
            sim.plant.model.alarms.clear(sim.now, "cdc.press", "test_condition")
            await plant.call_method(f"{ns}:Acknowledge")
            await wait_for(h, 3)
            out["cleared"] = h.events[2]
            out["id"] = a.id if a is not None else None
        return out
    out = asyncio.run(_serving(sim, None, body))
    r, k, cl = out["raised"], out["acked"], out["cleared"]
    assert r.SourceName == "cdc.press" and r.ConditionName == "test_condition"
    assert r.Severity == 700 and "test_condition: raised by the test" in r.Message.Text
    assert r.ActiveState.Text == "Active" and r.AckedState.Text == "Unacknowledged"
    assert r.Retain is True
    assert k.AckedState.Text == "Acknowledged" and k.ActiveState.Text == "Active"
    assert cl.ActiveState.Text == "Inactive" and cl.Retain is False  # cleared and acked
    assert out["again"] == ua.StatusCodes.BadConditionBranchAlreadyAcked
    assert out["unknown"] == ua.StatusCodes.BadEventIdUnknown
    al = pq.read_table(tmp_path / "alarms.parquet").to_pandas()
    row = al[al.condition == "test_condition"].iloc[0]
    assert row.acknowledged_by == "opcua:1"
    ev = pq.read_table(tmp_path / "events.parquet").to_pandas()
    cmd = ev[(ev.kind == "command") & (ev.location == "opcua:1")]
    assert any(d.startswith("Acknowledge") and "seen it" in d for d in cmd.detail), \
        list(cmd.detail)


def test_supervise_logs_in_with_the_security_options(tmp_path):
    """``darkfab supervise --user --cert --key`` against a server with a user and a
    certificate: the supervisor runs the plant to its horizon; without them it is refused."""
    from argparse import Namespace

    from darkfab.scenarios.opcua_security import client_security
    from darkfab.scenarios.remote_control import open_remote
    from darkfab.scenarios.supervise import supervise

    server_cert, server_key = _cert(tmp_path, "server", "urn:freeopcua:python:server",
                                    ExtendedKeyUsageOID.SERVER_AUTH)
    client_cert, client_key = _cert(tmp_path, "client", "urn:freeopcua:client",
                                    ExtendedKeyUsageOID.CLIENT_AUTH)
    problems: list = []
    configure = client_security(Namespace(user="sup:pw", cert=client_cert, key=client_key,
                                          server_cert=None), problems)
    assert not problems
    s = load_scenario("cdc-line", ["scenario.horizon_s=7200", "scenario.warmup_s=0"])

    async def go():
        sim, remote = open_remote(s, out_dir=tmp_path / "run")
        port = free_port()
        ready = asyncio.Event()
        task = asyncio.create_task(serve_simulation(
            sim, lockstep=True, cycle_s=600.0, port=port, remote=remote, linger_s=5,
            security=Security({"sup": "pw"}, server_cert, server_key),
            on_ready=lambda _u: ready.set()))
        await asyncio.wait_for(ready.wait(), 60)
        url = f"opc.tcp://127.0.0.1:{port}/darkfab/"
        with pytest.raises(ua.UaError):  # no certificate, no user: refused
            await asyncio.wait_for(supervise(url, timeout_s=10), 60)
        st = await asyncio.wait_for(supervise(url, timeout_s=30, configure=configure), 300)
        result, _ = await asyncio.wait_for(task, 120)
        return st, result
    st, result = asyncio.run(go())
    assert st.plant_clock_s == 7200.0 and st.decisions > 0
    assert result.summary["partial"] is False


def test_supervise_needs_a_remote_controller_server(tmp_path):
    from darkfab.scenarios.supervise import supervise

    async def body(url):
        with pytest.raises(RuntimeError, match="--lockstep --remote-controller"):
            await supervise(url, timeout_s=10)
        return True
    assert asyncio.run(_serving(_sim(tmp_path), None, body))


def test_status_and_admin_are_opc30050_object_types(tmp_path):
    """A unit's Status and Admin are instances of OPC 30050's PackMLStatusObjectType and
    PackMLAdminObjectType; the type's mandatory Status variables carry the plant's values
    with the specification's data types, beside darkfab's own PackTags."""
    sim = _sim(tmp_path)

    async def body(url):
        out = {}
        async with Client(url, timeout=10) as c:
            ns = await c.get_namespace_index("urn:darkfab")
            pns = await c.get_namespace_index("http://opcfoundation.org/UA/PackML/")
            out["ns"] = ns
            for unit in ("cdc.press", "cartoner"):
                u = await c.nodes.objects.get_child([f"{ns}:Plant", f"{ns}:Units",
                                                     f"{ns}:{unit}"])
                status = await u.get_child(f"{ns}:Status")
                admin = await u.get_child(f"{ns}:Admin")
                out[unit] = {}
                for node, key in ((status, "status_type"), (admin, "admin_type")):
                    td = await node.read_type_definition()
                    out[unit][key] = (await c.get_node(td).read_browse_name()).Name
                for name in ("UnitModeCurrent", "MachSpeed", "CurMachSpeed",
                             "EquipmentBlocked", "EquipmentStarved"):
                    dv = await (await status.get_child(f"{pns}:{name}")).read_data_value()
                    out[unit][name] = (dv.Value.Value, dv.Value.VariantType)
                out[unit]["darkfab_mode"] = await (await status.get_child(
                    f"{ns}:UnitModeCurrent")).read_value()
                out[unit]["darkfab_speed"] = await (await status.get_child(
                    f"{ns}:MachSpeed")).read_value()
        return out
    out = asyncio.run(_serving(sim, None, body))
    obs = sim.observe()
    assert out["ns"] == 2  # urn:darkfab keeps its index
    for unit in ("cdc.press", "cartoner"):
        o = out[unit]
        assert o["status_type"] == "PackMLStatusObjectType"
        assert o["admin_type"] == "PackMLAdminObjectType"
        assert o["UnitModeCurrent"] == (1, ua.VariantType.Int32) == (o["darkfab_mode"],
                                                                    ua.VariantType.Int32)
        assert o["MachSpeed"][1] == o["CurMachSpeed"][1] == ua.VariantType.Float
        cond = obs.equipment[unit].condition
        assert o["EquipmentBlocked"] == (cond == "blocked", ua.VariantType.Boolean)
        assert o["EquipmentStarved"] == (cond == "starved", ua.VariantType.Boolean)
    press = out["cdc.press"]
    rate = obs.equipment["cdc.press"].values["line_rate_kg_h"].value
    assert press["MachSpeed"][0] == pytest.approx(rate, rel=1e-6)  # Float32 of the set-point
    assert press["darkfab_speed"] == rate
