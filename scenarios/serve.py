"""``darkfab serve``: run a plant paced to the wall clock (or in lockstep) behind an OPC UA server.

Paced (``--speed X``, simulated seconds per wall second): every ``tick_s`` of wall time the
:class:`Pacer` advances the simulation to ``X × wall time since the start`` and the server
publishes the plant. When the model cannot keep up, the plant falls behind the wall clock: the
lag (wall seconds) is published (``Plant/Lag_s``), logged (logger ``darkfab.serve``) and
printed when it exceeds ``lag_warn_s``, and summed up at the end; it is never hidden by
skipping simulated time. One tick advances for ``max_chunk_s`` of wall time at most, so that
clients are served while the model catches up.

Lockstep (``--lockstep``): the plant stands still until a client calls
``Plant/Acknowledge()``, which advances it one decision cycle (``cycle_s``) and returns the
plant clock. Commands sent between two acknowledgements apply at the cycle boundary, so a
scripted client gets the same run for the same seed, whatever its speed.

Either way the run ends at the horizon (or on Ctrl-C / SIGTERM: partial results) and writes its
results as ``darkfab run`` does; a client that disconnects changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .simulation import RunResult, Simulation

__all__ = ["Pacer", "PacingStats", "serve_simulation"]

_log = logging.getLogger("darkfab.serve")


@dataclass
class PacingStats:
    """Lag of a paced run, wall seconds behind the wall clock after each tick."""

    ticks: int = 0
    behind_ticks: int = 0  # ticks with a lag above the warning threshold
    max_lag_s: float = 0.0
    lags: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        lags = sorted(self.lags) or [0.0]
        return {"ticks": self.ticks, "behind_ticks": self.behind_ticks,
                "max_lag_s": self.max_lag_s, "mean_lag_s": sum(lags) / len(lags),
                "p95_lag_s": lags[min(len(lags) - 1, int(0.95 * len(lags)))]}


class Pacer:
    """Advances a simulation so that simulated time = ``speed`` × wall time since the first
    tick.

    Args:
        sim: an open :class:`Simulation`.
        speed: simulated seconds per wall second (1: real time; 3600: an hour a second).
        clock: wall clock in seconds (``time.monotonic``; a test passes its own).
        max_chunk_s: wall seconds one tick may spend advancing.
        slice_s: wall seconds' worth of simulated time per advance within a tick.
        lag_warn_s: report a lag above this (wall seconds).
        report: where a lag report goes (default: stderr).
    """

    def __init__(self, sim: Simulation, speed: float, *,
                 clock: Callable[[], float] = time.monotonic, max_chunk_s: float = 0.1,
                 slice_s: float = 0.02, lag_warn_s: float = 1.0,
                 report: Callable[[str], None] | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.sim = sim
        self.speed = float(speed)
        self.clock = clock
        self.max_chunk_s = max_chunk_s
        self.slice_s = slice_s
        self.lag_warn_s = lag_warn_s
        self.report = report or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.stats = PacingStats()
        self.lag_s = 0.0
        self._wall0: float | None = None
        self._t0 = sim.now
        self._behind_since: float | None = None
        self._last_report = -1e18

    def tick(self) -> float:
        """Advance towards the wall clock's simulated time, in slices of ``slice_s`` wall
        seconds' worth of simulated time, for ``max_chunk_s`` of wall time at most (so that
        clients are served while a slow model catches up); returns the lag (wall s)."""
        if self._wall0 is None:
            self._wall0 = self.clock()
        sim = self.sim
        target = self._t0 + self.speed * (self.clock() - self._wall0)
        budget_end = self.clock() + self.max_chunk_s
        piece = self.speed * self.slice_s
        while sim.now < target and not sim.done:
            sim.advance_to(min(target, sim.now + piece))
            if self.clock() >= budget_end:
                break
        wall = self.clock() - self._wall0
        lag = 0.0 if sim.done else max(0.0, wall - (sim.now - self._t0) / self.speed)
        self.lag_s = lag
        st = self.stats
        st.ticks += 1
        st.lags.append(lag)
        st.max_lag_s = max(st.max_lag_s, lag)
        if lag > self.lag_warn_s:
            st.behind_ticks += 1
            if self._behind_since is None:
                self._behind_since = wall
            if wall - self._last_report >= 10.0:
                self._last_report = wall
                self._say(f"serve: the plant is {lag:.1f} s behind the wall clock at simulated "
                          f"t = {sim.now:.0f} s (speed {self.speed:g}: the model is slower "
                          "than that)")
        elif self._behind_since is not None:
            if not sim.done:
                self._say(f"serve: caught up with the wall clock at simulated t = "
                          f"{sim.now:.0f} s after {wall - self._behind_since:.1f} s behind")
            self._behind_since = None
            self._last_report = -1e18
        return lag

    def _say(self, msg: str) -> None:
        if _log.hasHandlers():  # else Python's last-resort handler would print it twice
            _log.warning(msg)
        self.report(msg)

    def wait_s(self, tick_s: float) -> float:
        """Wall seconds to sleep before the next tick (0 while behind)."""
        return 0.0 if self.lag_s > tick_s else tick_s


async def serve_simulation(sim: Simulation, *, speed: float | None = None,
                           lockstep: bool = False, cycle_s: float = 60.0,
                           host: str = "127.0.0.1", port: int = 4840, read_only: bool = False,
                           tick_s: float = 0.1, on_ready: Callable[[str], None] | None = None,
                           stop: asyncio.Event | None = None,
                           linger_s: float = 30.0, remote: Any = None,
                           security: Any = None) -> tuple[RunResult, dict]:
    """Serve ``sim`` over OPC UA until its horizon (or ``stop`` is set), then close it.

    Exactly one of ``speed`` (paced) and ``lockstep`` (advanced by ``Plant/Acknowledge``,
    ``cycle_s`` simulated seconds per call). ``on_ready(endpoint)`` is called once the server
    listens. ``remote``: the run's :class:`~.remote_control.RemoteController` when its
    controller is a client (lockstep only: each cycle then also ends at the controller's next
    decision, whose answer the next ``Acknowledge`` hands to the plant). ``security``: an
    :class:`~.opcua_security.Security` (users, certificate). Once the results are written, the server keeps serving the final values until
    every client has disconnected, ``linger_s`` wall seconds at most. Returns the run result
    and the pacing figures (empty in lockstep)."""
    from .opcua_server import PlantServer  # asyncua: the optional extra "opcua"

    if lockstep == (speed is not None):
        raise ValueError("serve: give either speed or lockstep")
    if remote is not None and not lockstep:
        raise ValueError("serve: a remote controller needs lockstep")
    stop = stop or asyncio.Event()
    finished = asyncio.Event()
    failure: list[BaseException] = []

    async def acknowledge() -> float:
        try:
            if remote is not None:
                answer = remote.take_answer()
                if answer is not None and sim.result is None:
                    sim.dispatch(answer)
            if not sim.done:
                sim.advance_to(sim.now + cycle_s,
                               until=None if remote is None else remote.pending)
        except Exception as e:  # noqa: BLE001 - results written; re-raised by serve below
            failure.append(e)
            finished.set()
            raise
        await server.publish()
        if sim.done:
            finished.set()
        return sim.now

    server = PlantServer(sim, host, port, read_only=read_only,
                         acknowledge=acknowledge if lockstep else None, remote=remote,
                         security=security)
    await server.start()
    if on_ready is not None:
        on_ready(server.endpoint)
    pacer = None
    partial, reason = False, ""
    try:
        if lockstep:
            waiters = [asyncio.ensure_future(finished.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        else:
            pacer = Pacer(sim, speed)  # type: ignore[arg-type]
            server.speed = speed  # type: ignore[assignment]
            while not sim.done and not stop.is_set():
                server.lag_s = pacer.tick()
                await server.publish()
                await asyncio.sleep(pacer.wait_s(tick_s))  # 0 while behind: still serves
        if failure:
            raise failure[0]
        if not sim.done:
            partial, reason = True, "interrupted"
    finally:
        result = sim.close(partial=partial or None, reason=reason) if sim.result is None \
            else sim.result
        await server.publish()
        t_end = time.monotonic()
        while server.clients() and not stop.is_set() and time.monotonic() - t_end < linger_s:
            await asyncio.sleep(0.05)
        await server.stop()
    stats = pacer.stats.summary() if pacer is not None else {}
    if stats:
        _log.info("pacing: %s", stats)
    return result, stats


def install_stop(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` (the run then ends with partial results)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
