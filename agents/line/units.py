"""The unit operations of a continuous line as PackML units: their names, place in the material
chain, PackML state (ISA-TR88.00.02) and set-points with ranges.

A line ``cdc`` has the units ``cdc.<feeder>`` (one per feeder), ``cdc.blender``, ``cdc.press``,
``cdc.pat`` and ``cdc.gate``, and the line itself, ``cdc``, which stands for the press (the
line's master: a command to ``cdc`` is a command to ``cdc.press``). Powder flows feeders →
blender → press with no buffer in between, so the units flow together: a unit out of Execute
stops the flow of all of them (the interlock chain). A unit's state is

* its **commanded** state, when a controller took it out of Execute (Held, Stopped, Idle,
  Aborted; acting states complete at once);
* else, while the line stands for a cause of its own (a failure or maintenance of the press:
  Held; a feeder empty, or the output full: Suspended), the state of the **cause unit** for
  that unit and for every unit upstream of it or in parallel with it (the feeders), and
  Suspended (starved of material) for the units downstream;
* else Execute.

PackML commands are checked against that state (the standard's command table,
:data:`darkfab.factory.packml.COMMAND_TRANSITIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from darkfab.factory.packml import COMMAND_TRANSITIONS, SC_TRANSITIONS, Command, State
from darkfab.factory.unit_operations import CORE_CHAIN, chain_order

__all__ = ["LineUnit", "SetPointRange", "unit_states", "commanded_after", "leader"]

#: place in the core chain: feeders 0, blender 1, press 2, PAT 3, gate 4 (the PAT and the gate
#: sit on the press's output: they stop with it, and taking them out of service stops the line);
#: registered unit operations (:mod:`darkfab.factory.unit_operations`) take their place in
#: it by what they declare (:func:`~darkfab.factory.unit_operations.chain_order`)
CHAIN = {k: i for i, k in enumerate(CORE_CHAIN)}


@dataclass(frozen=True, slots=True)
class SetPointRange:
    """A set-point a controller may change: engineering unit and allowed range."""

    name: str
    unit: str
    low: float
    high: float


@dataclass(slots=True)
class LineUnit:
    """One unit operation of a line.

    Args:
        name: ``<line>.<unit>``.
        kind: ``feeder``, ``blender``, ``press``, ``pat``, ``gate`` or a registered unit
            operation's kind.
        setpoints: the set-points it takes (name → range).
    """

    name: str
    kind: str
    setpoints: dict[str, SetPointRange]
    commanded: State | None = None  # None: left to the line (Execute or its own stop)
    state: State = State.EXECUTE  # as last published
    faults: int = 0
    rank: int = -1  # place in the material chain (-1: from the kind, at construction)

    def __post_init__(self) -> None:
        if self.rank < 0:
            self.rank = chain_order()[self.kind]  # core and registered kinds, one order


def unit_states(units: list[LineUnit], running: bool, cause: LineUnit | None,
                cause_state: State) -> dict[str, State]:
    """Every unit's state (module docstring). ``cause`` / ``cause_state``: the unit and state of
    the line's own stop (``None`` when no cause of its own holds it)."""
    lead = leader(units)
    if lead is None and (running or cause is None):
        return {u.name: State.EXECUTE for u in units}
    if lead is not None:
        src, state = lead, lead.commanded
    else:
        src, state = cause, cause_state
    assert src is not None and state is not None
    out = {}
    for u in units:
        if u.commanded is not None:
            out[u.name] = u.commanded
        elif u.rank <= src.rank:
            out[u.name] = state
        else:
            out[u.name] = State.SUSPENDED
    return out


_SEVERITY = {State.ABORTED: 4, State.STOPPED: 3, State.IDLE: 2, State.HELD: 1}


def leader(units: list[LineUnit]) -> LineUnit | None:
    """The commanded unit that sets the others' state: the most severe command (Aborted >
    Stopped > Idle > Held), the most downstream among equals."""
    best = None
    for u in units:
        if u.commanded is None:
            continue
        key = (_SEVERITY.get(u.commanded, 0), u.rank)
        if best is None or key > best[0]:
            best = (key, u)
    return None if best is None else best[1]


def commanded_after(state: State, command: Command) -> State | None:
    """The wait state ``command`` leads to from ``state`` (acting states complete at once), or
    ``None`` when PackML does not allow the command in that state."""
    nxt = COMMAND_TRANSITIONS[command].get(state)
    if nxt is None:
        return None
    while nxt in SC_TRANSITIONS and nxt is not State.EXECUTE:
        nxt = SC_TRANSITIONS[nxt]
    return nxt
