"""Shared fixtures: a SimPy ``env`` and a ``streams`` factory; helpers to run shipped scenarios
briefly into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import simpy

from darkfab.factory.random_streams import RandomStreams
from darkfab.scenarios import load_scenario, run_scenario


@pytest.fixture
def env() -> simpy.Environment:
    return simpy.Environment()


@pytest.fixture
def streams() -> RandomStreams:
    return RandomStreams(seed=12345, replication=0)


@pytest.fixture
def run(tmp_path: Path):
    """``run(name, overrides=[...], seed=None, replication=0)`` → RunResult in a temp folder."""
    counter = iter(range(10**6))

    def _run(name: str, overrides: list[str] | None = None, seed: int | None = None,
             replication: int = 0, **kw):
        s = load_scenario(name, overrides or [])
        kw.setdefault("check_invariants", True)  # the fleet invariant monitor is on in tests
        return run_scenario(s, seed=seed, replication=replication,
                            out_dir=tmp_path / f"run{next(counter)}", **kw)

    return _run


@pytest.fixture
def controller_module(tmp_path: Path, monkeypatch):
    """``controller_module("name", code)`` writes a user controller module and puts its folder
    on the module path (for ``controller.name = "name:Class"``)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def _write(name: str, code: str) -> None:
        (tmp_path / f"{name}.py").write_text(code)

    return _write
