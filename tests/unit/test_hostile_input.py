"""Hostile and meaningless scenario files: each rule of docs/scenario-validation.md, one test.

Files are made by mutating a copy of the shipped ``mm1.toml`` (or ``cdc-line``) in ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from darkfab.scenarios.cli import main
from darkfab.scenarios.loader import ScenarioError, load_scenario
from darkfab.scenarios.toml_input import MAX_ENTRIES, MAX_FILE_BYTES, MAX_NESTING_DEPTH

FILES = Path(__file__).resolve().parents[2] / "scenarios" / "files"
MM1 = (FILES / "mm1.toml").read_bytes()


def errors(tmp_path: Path, data: bytes, overrides=None) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_bytes(data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides or [])
    return [p.format(info.value.file) for p in info.value.problems]


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MM1)
    assert load_scenario(path).scenario.name == "mm1"


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_utf16_and_utf32_are_refused(tmp_path, codec):
    (msg,) = errors(tmp_path, MM1.decode().encode(codec))
    assert msg.endswith("<encoding>: the file starts with a UTF-16 or UTF-32 byte-order mark; "
                        "TOML files are UTF-8: save it as UTF-8")


def test_non_utf8_byte_is_located(tmp_path):
    data = MM1.replace(b'description = "M', b'description = "\xe9M')
    (msg,) = errors(tmp_path, data)
    assert f"bad.toml:5: <encoding>: byte 0xE9 at column 16 is not UTF-8" in msg


def test_binary_file(tmp_path):
    (msg,) = errors(tmp_path, MM1 + b"\n\x00\x01\x02")
    assert "<encoding>: binary data" in msg


def test_size_limit(tmp_path):
    (msg,) = errors(tmp_path, MM1 + b"#" * MAX_FILE_BYTES)
    assert msg.endswith(f"bad.toml: <file>: the file is larger than the limit of "
                        f"{MAX_FILE_BYTES:,} bytes (4 MiB)")


def test_nesting_limit_at_the_line(tmp_path):
    n = MAX_NESTING_DEPTH
    ok = MM1 + b"\n[controller.params]\nx = " + b"[" * (n - 2) + b"]" * (n - 2) + b"\n"
    too_deep = MM1 + b"\nx = " + b"[" * (n + 1) + b"]" * (n + 1) + b"\n"
    assert "nested more than" not in "\n".join(errors(tmp_path, ok))  # other problems only
    (msg,) = errors(tmp_path, too_deep)
    assert msg.endswith(f"<toml>: arrays or inline tables nested more than {n} deep")
    line = MM1.count(b"\n") + 2
    assert f"bad.toml:{line}:" in msg


def test_brackets_in_strings_and_comments_do_not_count(tmp_path):
    data = MM1.replace(b'description = "', b'description = "' + b"[" * 100) \
        + b"# " + b"{" * 100 + b"\n"
    path = tmp_path / "ok.toml"
    path.write_bytes(data)
    assert load_scenario(path).scenario.description.startswith("[" * 100)


def test_dotted_key_depth(tmp_path):
    (msg,) = errors(tmp_path, MM1 + b"\n" + b".".join([b"k"] * 200_000) + b" = 1\n")
    assert "a dotted key with more than" in msg


def test_entry_limit(tmp_path):
    keys = b"".join(b"k%d = 1\n" % i for i in range(MAX_ENTRIES + 1))
    (msg,) = errors(tmp_path, MM1 + b"\n[bloat]\n" + keys)
    assert msg.endswith(f"<toml>: more than {MAX_ENTRIES:,} keys and array items in the file")


def test_non_finite_and_huge_values(tmp_path):
    data = MM1.replace(b"x_m = 10.0", b"x_m = nan").replace(b"x_m = 20.0", b"x_m = 1e308") \
        .replace(b"mean_s = 0.9", b"mean_s = inf")
    msgs = "\n".join(errors(tmp_path, data))
    assert "nodes.station.x_m: Input should be a finite number" in msgs
    assert "nodes.exit.x_m: Input should be less than or equal to 1000000" in msgs
    assert "equipment.server.process_time.mean_s: Input should be a finite number" in msgs


@pytest.mark.parametrize("name", [".", "..", "a/b", "-x", ".hidden", "x" * 101])
def test_scenario_name_is_a_safe_folder_name(tmp_path, name):
    data = MM1.replace(b'name = "mm1"', f'name = "{name}"'.encode())
    (msg,) = errors(tmp_path, data)
    assert "scenario.name: must be a safe folder name" in msg


def test_self_loop_is_refused(tmp_path):
    msgs = errors(tmp_path, MM1.replace(b'next = "exit"', b'next = "queue"'))
    assert any("equipment.server.next: 'queue' is this equipment's own input" in m
               for m in msgs), msgs


def test_cycle_without_exit_is_refused_but_rework_loop_is_not(tmp_path):
    jackson = (FILES / "jackson.toml").read_text()
    load_scenario(FILES / "jackson.toml")  # a 20 % rework loop: units leave with probability 1
    path = tmp_path / "j.toml"
    path.write_text(jackson)
    s = load_scenario(path)
    # send every exit back into the network: now nothing ever reaches the sink
    last = [n for n, e in s.equipment.items() if any(to in s.sinks for to, _ in e.branches())]
    overrides = []
    for n in last:
        e = s.equipment[n]
        overrides.append((f"equipment.{n}.next", e.input))
        overrides.append((f"equipment.{n}.alternative_routes", False))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides)
    assert any("routing loop" in p.message for p in info.value.problems)


def test_normal_window_with_no_mass(tmp_path):
    data = MM1.replace(b'{ dist = "exponential", mean_s = 0.9 }',
                       b'{ dist = "normal", mean_s = 1.0, sd_s = 0.01, low_s = 5.0 }')
    (msg,) = errors(tmp_path, data)
    assert "equipment.server.process_time: [low_s, high_s] holds only" in msg


@pytest.mark.parametrize("peclet", [0.001, 1e9])
def test_closed_blender_peclet_out_of_range_fails_check(peclet):
    with pytest.raises(ScenarioError) as info:
        load_scenario("cdc-line", ['continuous_lines.cdc.blender.model="closed"',
                                   f"continuous_lines.cdc.blender.peclet={peclet}"])
    (p,) = info.value.problems
    assert p.path == "continuous_lines.cdc.blender.peclet"
    assert "0.1 <= peclet <= 1e+06" in p.message


def test_press_draw_underflow_fails_check():
    with pytest.raises(ScenarioError) as info:
        load_scenario("cdc-line", ["continuous_lines.cdc.press.die_diameter_mm=1e-200",
                                   "continuous_lines.cdc.press.fill_depth_mm=1e-200"])
    (p,) = info.value.problems
    assert p.path == "continuous_lines.cdc.press"


# --- one rule for a horizon shorter than the warm-up: an error naming both fields ------------
@pytest.mark.parametrize("cmd, args", [
    ("run", ["--hours", "1"]), ("run", ["--days", "0.1"]),
    ("run", ["--set", "scenario.horizon_s=3600"]), ("check", ["--set", "scenario.horizon_s=3600"])],
    ids=["run-hours", "run-days", "run-set", "check-set"])
def test_horizon_shorter_than_warmup_is_one_error(capsys, cmd, args):
    rc = main([cmd, "cdc-line", *args] + (["--quiet", "--out", "/nonexistent"]
                                          if cmd == "run" else []))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1
    assert "scenario.warmup_s: the warm-up (21600 s) must be shorter than scenario.horizon_s" \
        in err[0]
    assert err[0].endswith("[horizon_s from --set, --hours or --days]")
