"""The suite fails a hanging test instead of hanging: pytest-timeout is configured with a
default limit in pyproject.toml, and a test that overruns it fails with "Timeout"."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_default_timeout_is_configured():
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < float(opts["timeout"]) <= 3600


def test_a_hanging_test_fails(tmp_path):
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hang():\n"
                                           "    time.sleep(120)\n")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-o", "timeout=2", str(tmp_path / "test_hang.py")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=100)
    assert p.returncode == 1 and "Timeout" in p.stdout + p.stderr
