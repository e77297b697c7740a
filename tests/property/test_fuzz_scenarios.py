"""Fuzz the scenario loader with hostile files: no traceback, no hang, every problem located.

A seeded generator mutates the shipped scenario files (byte flips, truncation, non-UTF-8 bytes,
byte-order marks, binary garbage, deep nesting, NaN/inf/1e308 and huge numbers, wrong types,
dangling references, routing self-loops, huge key counts and files, unsafe names, ``--set``
values). It knows TOML's surface syntax only, nothing of darkfab's schema or validators, so it
cannot share their blind spots. Each file goes through :func:`load_scenario` in-process under a
time budget (SIGALRM), a handful through the real ``darkfab check`` in a subprocess.

Set ``DARKFAB_FUZZ_SEED`` to explore other files; a failure message names the seed and case.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from darkfab.scenarios.loader import ScenarioError, load_scenario

FILES = sorted((Path(__file__).resolve().parents[2] / "scenarios" / "files").glob("*.toml"))
SEED = int(os.environ.get("DARKFAB_FUZZ_SEED", "20240518"))
N_CASES = 560
BUDGET_S = 20  # per case; a hang is minutes (the bugs this guards against took > 3 min)

NUMBER = re.compile(rb"(?<=[=\[,{ ])\s*-?\d[\d_]*(\.\d+)?([eE][-+]?\d+)?(?=\s*[,\]}\n#])")
STRING_VALUE = re.compile(rb'= *"([^"\n]*)"')
KEY_LINE = re.compile(rb"^[ \t]*[A-Za-z0-9_\-\.]+[ \t]*=.*$", re.M)
HOSTILE_NUMBERS = [b"nan", b"+nan", b"-nan", b"inf", b"-inf", b"1e308", b"-1e308", b"1e999",
                   b"-1e999", b"1e-320", b"0", b"-0.0", b"-1", b"9" * 5000, b"0x" + b"f" * 40,
                   b"1" * 30]
WRONG_TYPES = [b'"text"', b"true", b"[1, 2]", b"{ x = 1 }", b"1979-05-27T07:32:00Z", b"[]",
               b"{}", b'"\\u00e9\\u0000"', b"'''\nmulti\n'''"]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer within {BUDGET_S} s")


# --- the generator: TOML surface syntax only --------------------------------------------------
def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _sub_one(rng, pattern: re.Pattern, data: bytes, repl) -> bytes:
    hits = list(pattern.finditer(data))
    if not hits:
        return data + b"\nx = 1\n"
    m = _pick(rng, hits)
    return data[:m.start()] + repl(m) + data[m.end():]


def flip_bytes(rng, d):
    b = bytearray(d)
    for _ in range(int(rng.integers(1, 8))):
        b[int(rng.integers(len(b)))] = int(rng.integers(256))
    return bytes(b)


def truncate(rng, d):
    return d[:int(rng.integers(len(d)))]


def non_utf8(rng, d):
    bad = _pick(rng, [b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x28\xa1", b"\xed\xa0\x80",
                      b"\xf8\x88\x80\x80\x80", b"\xe9t\xe9", bytes(rng.integers(128, 256, 9))])
    i = int(rng.integers(len(d)))
    return d[:i] + bad + d[i:]


def bom(rng, d):
    kind = int(rng.integers(4))
    if kind == 0:
        return b"\xef\xbb\xbf" + d  # UTF-8 BOM
    if kind == 1:
        return b"\xef\xbb\xbf\xef\xbb\xbf" + d  # two of them
    text = d.decode("utf-8", errors="replace")
    return text.encode("utf-16" if kind == 2 else "utf-32")  # with their BOMs


def binary(rng, d):
    if rng.random() < 0.3:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8))
    i = int(rng.integers(len(d)))
    return d[:i] + bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8)) + d[i:]


def deep_nesting(rng, d):
    depth = int(_pick(rng, [33, 40, 200, 1000, 20000, 200000]))
    kind = int(rng.integers(4))
    if kind == 0:
        value = b"[" * depth + b"1" + b"]" * depth
    elif kind == 1:
        value = b"{ a = " * depth + b"1" + b" }" * depth
    elif kind == 2:
        value = b"[" * depth  # never closed
    else:  # dotted keys: tables nested without brackets
        return d + b"\n" + b".".join([b"k"] * depth) + b" = 1\n"
    return _sub_one(rng, NUMBER, d, lambda m: b" " + value)


def hostile_number(rng, d):
    return _sub_one(rng, NUMBER, d, lambda m: b" " + _pick(rng, HOSTILE_NUMBERS))


def wrong_type(rng, d):
    target = NUMBER if rng.random() < 0.5 else STRING_VALUE
    return _sub_one(rng, target, d,
                    lambda m: (b" " if target is NUMBER else b"= ") + _pick(rng, WRONG_TYPES))


def dangling_reference(rng, d):
    name = _pick(rng, [b"nope", b"ghost_buffer", b"", b"..", b"a/b", b"\\u0000", b"x" * 300])
    return _sub_one(rng, STRING_VALUE, d, lambda m: b'= "' + name + b'"')


def self_loop(rng, d):
    """``next`` set to the table's own ``input`` (or a neighbour's input: a cycle)."""
    inputs = re.findall(rb'^input *= *"([^"]+)"', d, re.M)
    nexts = list(re.finditer(rb'^next *= *.*$', d, re.M))
    if not inputs or not nexts:
        return d + b'\n[equipment.loop]\nnode = "n"\ninput = "q"\nnext = "q"\n'
    m = _pick(rng, nexts)
    target = _pick(rng, inputs)
    return d[:m.start()] + b'next = "' + target + b'"' + d[m.end():]


def huge_keys(rng, d):
    n = int(_pick(rng, [20_000, 120_000, 300_000]))
    table = _pick(rng, [b"[bloat]\n", b"[controller.params]\n", b""])
    keys = b"".join(b"k%d = %d\n" % (i, i) for i in range(n))
    return d + b"\n" + table + keys


def huge_file(rng, d):
    pad = _pick(rng, [b"# " + b"x" * 78 + b"\n", b"\n", b" "])
    return d + pad * (5 * 2**20 // len(pad))


def many_entities(rng, d):
    n = int(_pick(rng, [2_000, 30_000]))
    return d + b"".join(b"\n[products.p%d]\n" % i for i in range(n))


def structural(rng, d):
    lines = d.split(b"\n")
    i, j = int(rng.integers(len(lines))), int(rng.integers(len(lines)))
    op = int(rng.integers(4))
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[j])  # duplicate a key or a header
    elif op == 2:
        lines[i], lines[j] = lines[j], lines[i]
    else:
        keys = KEY_LINE.findall(d)
        lines.insert(i, _pick(rng, keys) if keys else b"=")
    return b"\n".join(lines)


def unsafe_name(rng, d):
    name = _pick(rng, [b".", b"..", b"../../etc", b"a/b", b"-rf", b".hidden", b"x" * 500,
                       b"caf\xc3\xa9", b" "])
    return re.sub(rb'(?m)^name *= *"[^"]*"', b'name = "' + name + b'"', d, count=1)


MUTATIONS = [flip_bytes, truncate, non_utf8, bom, binary, deep_nesting, hostile_number,
             wrong_type, dangling_reference, self_loop, structural, unsafe_name]
RARE = [huge_keys, huge_file, many_entities]  # seconds each: a few per run


def generate(seed: int, n: int):
    """``n`` (name, bytes) cases: 1 to 3 stacked mutations of a shipped file each."""
    rng = np.random.default_rng(seed)
    texts = [(f.stem, f.read_bytes()) for f in FILES]
    for i in range(n):
        stem, data = _pick(rng, texts)
        ops = [_pick(rng, RARE)] if i % 80 == 7 else [
            _pick(rng, MUTATIONS) for _ in range(int(rng.integers(1, 4)))]
        for op in ops:
            data = op(rng, data)
        yield f"{i:04d}-{stem}-{'+'.join(op.__name__ for op in ops)}", data


OVERRIDES = [["scenario.horizon_s=nan"], ["scenario.horizon_s=inf"], ["scenario.horizon_s=-1"],
             ["scenario.horizon_s=" + "[" * 5000 + "]" * 5000], ["scenario.seed=" + "9" * 5000],
             ["nodes.ghost.x_m=1e308"], ["scenario.name=.."], ["=1"], ["a..b=1"],
             ["scenario=1"], ["scenario.horizon_s={ a = { b = { c = 1 } } }"]]


# --- the checks -----------------------------------------------------------------------------
def _load(path: Path, overrides=None):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(BUDGET_S)
    try:
        return load_scenario(path, overrides or [])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _assert_located(err: ScenarioError, path: Path, case: str) -> None:
    assert err.file == str(path), case
    assert err.problems, case
    for p in err.problems:
        line = p.format(err.file)
        assert line.startswith(f"{path}:"), (case, line)
        assert p.path and p.message, (case, line)
        assert "\n" not in p.path and "\n" not in p.message, (case, line)
        assert "Traceback" not in p.message, (case, line)


def test_fuzzed_scenario_files_fail_cleanly(tmp_path):
    rejected = total = 0
    for case, data in generate(SEED, N_CASES):
        path = tmp_path / f"{case}.toml"
        path.write_bytes(data)
        total += 1
        try:
            _load(path)
        except ScenarioError as e:
            rejected += 1
            _assert_located(e, path, f"seed {SEED} case {case}")
        except Hang as e:
            pytest.fail(f"seed {SEED} case {case}: {e}")
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"seed {SEED} case {case}: {type(e).__name__}: {e}")
        finally:
            path.unlink()
    assert total >= 500
    assert rejected >= 0.8 * total, f"only {rejected} of {total} mutated files were rejected"


@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda o: o[0][:30])
def test_fuzzed_overrides_fail_cleanly(tmp_path, overrides):
    path = tmp_path / "mm1.toml"
    path.write_bytes(next(f for f in FILES if f.stem == "mm1").read_bytes())
    with pytest.raises(ScenarioError) as info:
        _load(path, overrides)
    _assert_located(info.value, path, str(overrides))


def test_real_check_command_on_hostile_files(tmp_path):
    """A few files through the installed CLI: exit 2, located lines, no traceback."""
    rng = np.random.default_rng(SEED)
    mm1 = next(f for f in FILES if f.stem == "mm1").read_bytes()
    cases = {"utf16": mm1.decode("utf-8").encode("utf-16"),
             "latin1": mm1.replace(b'description = "', b'description = "\xe9'),
             "deep": mm1 + b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
             "nan": mm1.replace(b"x_m = 10.0", b"x_m = nan"),
             "loop": self_loop(rng, mm1)}
    procs = {}
    for name, data in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_bytes(data)
        procs[name] = (path, subprocess.Popen(
            [sys.executable, "-m", "darkfab.scenarios.cli", "check", str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for name, (path, proc) in procs.items():
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"darkfab check {name}: no answer in 120 s")
        assert proc.returncode == 2, (name, out, err)
        assert "Traceback" not in err, (name, err)
        lines = err.strip().splitlines()
        assert lines and all(line.startswith(f"{path}:") for line in lines), (name, err)
