"""Fast start, checked by what is imported (not by timing: the figures are in
``tests/benchmarks/bench_startup.py`` and results/BENCHMARKS.md).

The CLI module imports no heavy library at import time; ``check`` validates a scenario without
the simulator (no mesa, pandas, matplotlib; scipy only to build a continuous line's models) nor
the terminal and template libraries (rich, jinja2); the top-level help lists every verb; and
``--version`` prints the installed version.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from darkfab.scenarios import engines
from darkfab.scenarios.cli import ENGINES, VERBS, _parser, verb_function

HEAVY = ("mesa", "pandas", "matplotlib", "scipy", "scipy.stats", "simpy", "pyarrow", "ortools",
         "rich", "jinja2")


def imported_after(code: str) -> set[str]:
    """The HEAVY modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} " \
            "if m in sys.modules]))"
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return set(json.loads(p.stdout.strip().splitlines()[-1]))


def test_cli_module_imports_nothing_heavy():
    assert imported_after("import darkfab.scenarios.cli") == set()


def _check(name: str) -> str:
    return ("from darkfab.scenarios.cli import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['check', {name!r}]) == 0")


def test_check_needs_no_simulator():
    assert imported_after(_check("packaging-line")) == set()
    # a continuous line's press and RTD models are built (check rejects what run would):
    # scipy, still no simulator
    assert imported_after(_check("fault-campaign")) <= {"scipy", "scipy.stats"}


def test_piped_run_draws_with_no_terminal_library(tmp_path):
    """rich is imported only to draw on a terminal: a run whose output is piped (here to
    StringIO) does without it."""
    code = ("from darkfab.scenarios.cli import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['run', 'mm1', '--hours', '2', '--out', {str(tmp_path)!r}]) == 0")
    assert "rich" not in imported_after(code)


def _verbs(p) -> list[str]:
    """The verbs the parser's help lists (each at the start of a line, indented 4)."""
    return re.findall(r"^    (\S+)", p.format_help(), re.M)


def test_help_lists_every_verb(capsys):
    p = _parser()
    verbs = _verbs(p)
    assert set(verbs) == {"run", "check", "list", "experiment", "report", "plot", "compare",
                          "funnel", "jobshop-bench", "view", "verify-records", "recover",
                          "schema", "serve", "supervise", "calibrate"}
    text = p.format_help()
    for v in verbs:
        assert f"\n    {v}" in text
    assert "--version" in text


def test_every_verb_has_its_function():
    """``main`` imports a verb's module only when the verb runs: every verb of the parser names
    a module with its ``cmd_<verb>`` function, and those modules import nothing heavy."""
    p = _parser()
    verbs = _verbs(p)
    assert set(VERBS) == set(verbs) and len(verbs) == len(VERBS)
    for v in verbs:  # each is a verb the parser takes: its own help exits 0
        with pytest.raises(SystemExit) as e:
            p.parse_args([v, "--help"])
        assert e.value.code == 0
    for v in verbs:
        fn = verb_function(v)
        assert callable(fn) and fn.__name__ == "cmd_" + v.replace("-", "_")
    modules = "\n".join(f"import darkfab.scenarios.{m}" for m in sorted(set(VERBS.values())))
    assert imported_after(modules) == set()


def test_version_is_the_installed_one():
    p = subprocess.run([sys.executable, "-m", "darkfab.scenarios.cli", "--version"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"darkfab {version('darkfab')}"


def test_cli_engine_choices_are_the_engines():
    assert ENGINES == engines.ENGINES
