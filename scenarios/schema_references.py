"""Checks across a scenario's tables, after the fields: dangling references (buffers, sinks,
nodes, products, fault targets), the reachability of every material hop on the plant graph,
routing loops and the fleet's lanes. Each problem is yielded as ``(field path, message)``.

Part of :mod:`darkfab.scenarios.schema` (which exports every name); see there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx

from .schema_layout import ROBOT_HOME_ROLES

if TYPE_CHECKING:
    from .schema import Scenario

__all__ = ["reference_errors", "routing_errors", "transport_hops"]


def reference_errors(s: Scenario):
    """Yield ``(path, message)`` for every dangling reference and unreachable material hop."""
    kinds = {"buffer": s.buffers, "sink": s.sinks, "equipment": s.equipment,
             "source": s.sources, "continuous line": s.continuous_lines,
             "order book": s.order_books}
    seen: dict[str, str] = {}
    for kind, table in kinds.items():
        for name in table:
            if name in seen:
                yield (f"{_plural(kind)}.{name}",
                       f"name {name!r} is already used by a {seen[name]}")
            seen[name] = kind
    from darkfab.control import controller_problems
    for msg in controller_problems(s.controller.name, s.controller.params):
        yield ("controller.params" if msg.startswith("bad parameters") else "controller.name",
               msg)
    for i, link in enumerate(s.links):
        for end in ("a", "b"):
            if getattr(link, end) not in s.nodes:
                yield (f"links[{i}].{end}", f"unknown node {getattr(link, end)!r}")

    def node_of(path: str, node: str):
        if node not in s.nodes:
            return [(path, f"unknown node {node!r}")]
        return []

    for kind, table in kinds.items():
        for name, spec in table.items():
            yield from node_of(f"{_plural(kind)}.{name}.node", spec.node)

    g = s.graph()

    def hop(path: str, a: str, b: str, what: str):
        if a in g and b in g and not nx.has_path(g, a, b):
            yield (path, f"{what}: node {b!r} is unreachable from node {a!r} on the plant graph")

    for name, src in s.sources.items():
        p = f"sources.{name}"
        if src.to not in s.buffers:
            yield (f"{p}.to", f"unknown buffer {src.to!r}")
        else:
            yield from hop(f"{p}.to", src.node, s.buffers[src.to].node, f"buffer {src.to!r}")
        prods = [src.product] if src.product else list(src.product_mix or {})
        for prod in prods:
            if prod not in s.products:
                field = "product" if src.product else f"product_mix.{prod}"
                yield (f"{p}.{field}", f"unknown product {prod!r}")
    if not s.sources and not s.order_books:
        yield ("sources", "give at least one source or order book")
    for name, book in s.order_books.items():
        p = f"order_books.{name}"
        if book.to not in s.buffers:
            yield (f"{p}.to", f"unknown buffer {book.to!r}")
        else:
            yield from hop(f"{p}.to", book.node, s.buffers[book.to].node, f"buffer {book.to!r}")
            if book.work_s_per_unit is None and not any(
                    e.input == book.to for e in s.equipment.values()):
                yield (f"{p}.work_s_per_unit", f"no equipment takes from {book.to!r} to "
                       "estimate it from: give it")
        for i, o in enumerate(book.orders):
            if o.product not in s.products:
                yield (f"{p}.orders[{i}].product", f"unknown product {o.product!r}")
        a = book.arrivals
        if a is not None:
            for prod in [a.product] if a.product else list(a.product_mix or {}):
                if prod not in s.products:
                    field = "product" if a.product else f"product_mix.{prod}"
                    yield (f"{p}.arrivals.{field}", f"unknown product {prod!r}")
    fed = {}
    for name, eq in s.equipment.items():
        p = f"equipment.{name}"
        if eq.input not in s.buffers:
            yield (f"{p}.input", f"unknown buffer {eq.input!r}")
        else:
            if eq.input in fed:
                yield (f"{p}.input", f"buffer {eq.input!r} already feeds {fed[eq.input]!r}")
            fed[eq.input] = name
            yield from hop(f"{p}.input", s.buffers[eq.input].node, eq.node,
                           f"buffer {eq.input!r}")
        targets = eq.branches()
        for i, (to, _) in enumerate(targets):
            tp = f"{p}.next" if isinstance(eq.next, str) else f"{p}.next[{i}].to"
            yield from _target(s, g, tp, eq.node, to, hop)
        if eq.reject_to is not None:
            if eq.reject_to not in s.sinks:
                yield (f"{p}.reject_to", f"unknown sink {eq.reject_to!r}")
            else:
                yield from hop(f"{p}.reject_to", eq.node, s.sinks[eq.reject_to].node,
                               f"sink {eq.reject_to!r}")
        if eq.output is not None and eq.output.product not in s.products:
            yield (f"{p}.output.product", f"unknown product {eq.output.product!r}")
    for name, line in s.continuous_lines.items():
        p = f"continuous_lines.{name}"
        if line.output not in s.buffers:
            yield (f"{p}.output", f"unknown buffer {line.output!r}")
        else:
            yield from hop(f"{p}.output", line.node, s.buffers[line.output].node,
                           f"buffer {line.output!r}")
        if line.product not in s.products:
            yield (f"{p}.product", f"unknown product {line.product!r}")
        flow = line.mass_flow_kg_s()
        for fname, f in line.feeders.items():
            fp = f"{p}.feeders.{fname}"
            if f.refill_from not in s.buffers:
                yield (f"{fp}.refill_from", f"unknown buffer {f.refill_from!r}")
                continue
            if f.refill_from in fed:
                yield (f"{fp}.refill_from",
                       f"buffer {f.refill_from!r} already feeds {fed[f.refill_from]!r}")
            fed[f.refill_from] = f"{name}.{fname}"
            yield from hop(f"{fp}.refill_from", s.buffers[f.refill_from].node, line.node,
                           f"buffer {f.refill_from!r}")
            if f.refill_request == "controller" and (s.fleet is None or not any(
                    dest == f.refill_from for _, _, dest in transport_hops(s))):
                yield (f"{fp}.refill_request", "controller-requested refills need robots "
                       f"carrying containers to {f.refill_from!r} (a fleet and a store at "
                       "another node)")
            if f.refill_rate_kg_s <= f.mass_fraction * flow:
                yield (f"{fp}.refill_rate_kg_s", f"must exceed the feed rate "
                       f"{f.mass_fraction * flow:.6g} kg/s (press draw × mass_fraction)")
            for src_name, src in s.sources.items():
                if src.to == f.refill_from:
                    for prod in [src.product] if src.product else list(src.product_mix or {}):
                        if prod in s.products and s.products[prod].mass_kg <= 0:
                            yield (f"products.{prod}.mass_kg", "a refill container needs a "
                                   f"mass (it is emptied into feeder {fname!r})")
    yield from _fleet_errors(s)
    for name, arm in s.arms.items():
        yield from node_of(f"arms.{name}.node", arm.node)
        for i, e in enumerate(arm.equipment):
            if e not in s.equipment:
                yield (f"arms.{name}.equipment[{i}]", f"unknown equipment {e!r}")
    yield from _fault_errors(s)
    feeding = ({src.to for src in s.sources.values()}
               | {to for eq in s.equipment.values() for to, _ in eq.branches()}
               | {line.output for line in s.continuous_lines.values()}
               | {book.to for book in s.order_books.values()})
    for b in s.buffers:
        if b not in fed:
            yield (f"buffers.{b}", "no equipment takes from this buffer (set it as an input)")
        if b not in feeding:
            yield (f"buffers.{b}", "nothing feeds this buffer (no source or equipment sends to it)")
    yield from routing_errors(s)


def routing_errors(s: Scenario):
    """Yield ``(path, message)`` for equipment whose units can never leave the plant: every
    buffer a unit can be sent to must lead, by routes of positive probability, to a sink or to
    a continuous line's feeder (which consumes it). Otherwise units circulate for ever (a
    ``next`` that is the equipment's own input, or a cycle of buffers with no way out)."""
    taken = {eq.input for eq in s.equipment.values()}
    exits = set(s.sinks) | {f.refill_from for line in s.continuous_lines.values()
                            for f in line.feeders.values()}
    exits |= set(s.buffers) - taken  # a dead end, reported as "no equipment takes from" it
    g = nx.DiGraph()  # buffer or sink -> where the equipment taking from it sends units
    for eq in s.equipment.values():
        g.add_node(eq.input)
        for to, prob in eq.branches():
            if prob > 0:
                g.add_edge(eq.input, to)
        if eq.reject_to is not None and eq.reject_probability > 0:
            g.add_edge(eq.input, eq.reject_to)
    out = set()
    for x in exits & set(g):
        out |= nx.ancestors(g, x) | {x}
    for name, eq in s.equipment.items():
        if eq.input not in s.buffers or eq.input in out:
            continue
        if any(to not in s.buffers and to not in s.sinks for to, _ in eq.branches()):
            continue  # a dangling name, reported above
        field = f"equipment.{name}.next"
        if [to for to, _ in eq.branches()] == [eq.input]:
            yield (field, f"{eq.next!r} is this equipment's own input: its units can never "
                   "leave (routing loop)")
        else:
            yield (field, f"units taken from buffer {eq.input!r} can never reach a sink: every "
                   "route leads back into the same buffers (routing loop with no way out)")


def _fault_errors(s: Scenario):
    """Each scripted fault's target exists and fits its mode."""
    robots = [f"amr-{i + 1}" for i in range(s.fleet.count)] if s.fleet else []
    chargers = sorted(n for n, spec in s.nodes.items() if spec.role == "charger")
    for i, f in enumerate(s.faults):
        p = f"faults[{i}].target"
        t, mode = f.target, f.mode
        if mode == "breakdown":
            if t not in s.equipment and t not in s.continuous_lines:
                yield (p, f"breakdown: unknown equipment or continuous line {t!r}")
            elif t in s.continuous_lines and f.reaction == "abort":
                yield (f"faults[{i}].reaction", "a continuous line breaks down with "
                       "reaction = \"hold\" only")
        elif mode in ("robot_stall", "battery_fade"):
            if t not in robots:
                yield (p, f"{mode}: unknown robot {t!r}" + (f"; robots: {', '.join(robots)}"
                                                            if robots else "; no [fleet]"))
        elif mode == "charger_outage":
            if t not in chargers:
                yield (p, f"charger_outage: {t!r} is not a node with role = \"charger\""
                       + (f" (chargers: {', '.join(chargers)})" if chargers else ""))
        elif mode in ("sensor_dropout", "sensor_drift"):
            if t not in s.continuous_lines:
                yield (p, f"{mode}: unknown continuous line {t!r}")
            elif s.continuous_lines[t].pat is None:
                yield (p, f"{mode}: continuous line {t!r} has no [pat] sensor")
        elif mode in ("feeder_refill_failure", "oos_raw_material_lot"):
            line, _, feeder = t.partition(".")
            if line not in s.continuous_lines or feeder not in s.continuous_lines[line].feeders:
                yield (p, f"{mode}: target must be <continuous line>.<feeder>, got {t!r}")
            elif mode == "oos_raw_material_lot" and \
                    s.continuous_lines[line].feeders[feeder].component != "api":
                yield (p, f"{mode}: feeder {feeder!r} does not feed the API")
        elif t != "controller":
            yield (p, f"{mode}: the target is \"controller\"")


def transport_hops(s: Scenario) -> list[tuple[str, str, str]]:
    """(origin entity, origin node, destination buffer) for every hop a robot must carry."""
    hops = []
    for name, src in s.sources.items():
        if src.to in s.buffers and not s.conveyor_joined(src.node, s.buffers[src.to].node):
            hops.append((name, src.node, src.to))
    for name, eq in s.equipment.items():
        for to, _ in eq.branches():
            if to in s.buffers and not s.conveyor_joined(eq.node, s.buffers[to].node):
                hops.append((name, eq.node, to))
    for name, line in s.continuous_lines.items():
        to = line.output
        if to in s.buffers and not s.conveyor_joined(line.node, s.buffers[to].node):
            hops.append((name, line.node, to))
    return hops


def _fleet_errors(s: Scenario):
    f = s.fleet
    if f is None:
        return
    lanes = s.graph(lanes_only=True)
    for i, h in enumerate(f.homes):
        if h not in s.nodes:
            yield (f"fleet.homes[{i}]", f"unknown node {h!r}")
        elif s.nodes[h].role not in ROBOT_HOME_ROLES:
            yield (f"fleet.homes[{i}]", f"node {h!r} has role {s.nodes[h].role!r}; a home must "
                   f"be one of {', '.join(ROBOT_HOME_ROLES)}")
    if f.payload_kg is not None:
        for name, prod in s.products.items():
            if prod.mass_kg > f.payload_kg:
                yield (f"products.{name}.mass_kg", f"{prod.mass_kg:g} kg is more than a robot "
                       f"carries (fleet.payload_kg = {f.payload_kg:g})")
    chargers = [n for n, spec in s.nodes.items() if spec.role == "charger"]
    if not chargers:
        yield ("fleet", "a fleet needs at least one node with role = \"charger\"")
    ports = sorted({n for _, n, _ in transport_hops(s)} |
                   {s.buffers[b].node for _, _, b in transport_hops(s)})
    ports = [n for n in ports if n in s.nodes]  # unknown nodes are reported elsewhere
    homes = [h for h in f.homes[: f.count] if h in s.nodes]
    must = sorted(set(ports) | set(homes) | set(chargers))
    if not must:
        return
    root = ports[0] if ports else must[0]
    unreachable = [n for n in must if not (nx.has_path(lanes, root, n)
                                           and nx.has_path(lanes, n, root))]
    if unreachable:
        yield ("fleet", f"robots cannot drive both ways between {root!r} and node(s) "
               f"{', '.join(repr(n) for n in unreachable)} (ports, homes and chargers must all "
               "be reachable from each other over lanes)")


def _target(s: Scenario, g, path: str, origin: str, to: str, hop):
    if to in s.buffers:
        yield from hop(path, origin, s.buffers[to].node, f"buffer {to!r}")
    elif to in s.sinks:
        yield from hop(path, origin, s.sinks[to].node, f"sink {to!r}")
    else:
        yield (path, f"unknown buffer or sink {to!r}")


def _plural(kind: str) -> str:
    return {"buffer": "buffers", "sink": "sinks", "equipment": "equipment",
            "source": "sources", "continuous line": "continuous_lines",
            "order book": "order_books"}[kind]
