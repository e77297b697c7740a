"""Layouts a planner can build: nodes and links from CSV or GraphML files, a generated grid of
aisles, and parking added for a fleet larger than its list of homes.

Everything here works on the scenario document (plain dicts) before it is validated, so that
the resolved scenario (``summary.json``) holds the plain ``[nodes]`` and ``[[links]]`` it ran
with. Each added node and link remembers where it came from (:class:`Origin`), so that a
validation problem names the CSV file and line, or the GraphML element, that holds it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import GridSpec, LayoutSpec
from .toml_input import MAX_FILE_BYTES

__all__ = ["Origin", "LayoutProblem", "Expansion", "expand_layout", "NODE_COLUMNS",
           "LINK_COLUMNS", "add_auto_parking", "AUTO_PARKING_SPACING_M"]

NODE_COLUMNS: dict[str, type] = {"name": str, "x_m": float, "y_m": float, "role": str,
                                 "capacity_robots": int}
"""Columns of a nodes CSV (``name``, ``x_m``, ``y_m`` required) and GraphML node attributes."""
LINK_COLUMNS: dict[str, type] = {"a": str, "b": str, "directed": bool, "length_m": float,
                                 "speed_limit_m_s": float, "capacity_robots": int,
                                 "conveyor": bool}
"""Columns of a links CSV (``a``, ``b`` required) and GraphML edge attributes."""
GRAPHML_IGNORED = frozenset({"label", "description", "url", "id", "name"})
"""GraphML attributes drawing tools write that are not part of a node or a link."""
AUTO_PARKING_SPACING_M = 2.0
"""Distance between a home and each parking node added beside it (m)."""
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


@dataclass(frozen=True)
class Origin:
    """Where an entry was written: a file, and its line or the element that holds it."""

    file: str
    line: int | None = None
    element: str | None = None

    def where(self) -> str:
        return f"{self.file}: {self.element}" if self.element else self.file


@dataclass(frozen=True)
class LayoutProblem:
    origin: Origin
    path: str
    message: str


@dataclass
class Expansion:
    """Nodes and links a ``[layout]`` adds, with their origins, and the problems found."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_origins: dict[str, Origin] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    link_origins: list[Origin] = field(default_factory=list)
    problems: list[LayoutProblem] = field(default_factory=list)

    def add_node(self, name: str, table: dict, origin: Origin, existing: dict) -> None:
        if name in existing or name in self.nodes:
            first = self.node_origins.get(name)
            where = f" (first in {first.where()}" + (f" line {first.line})" if first.line
                                                      else ")") if first else ""
            self.problems.append(LayoutProblem(origin, f"nodes.{name}",
                                               f"node {name!r} is defined twice{where}"))
            return
        self.nodes[name] = table
        self.node_origins[name] = origin

    def add_link(self, table: dict, origin: Origin) -> None:
        self.links.append(table)
        self.link_origins.append(origin)


def expand_layout(spec: LayoutSpec, existing_nodes: dict, grid_origin: Origin) -> Expansion:
    """The nodes and links of ``spec`` (file paths already absolute), checked for names
    defined twice against ``existing_nodes`` and each other."""
    ex = Expansion()
    if spec.grid is not None:
        _grid(spec.grid, ex, existing_nodes, grid_origin)
    if spec.nodes_csv:
        for line, row in _csv_rows(spec.nodes_csv, NODE_COLUMNS, ("name", "x_m", "y_m"), ex):
            origin = Origin(spec.nodes_csv, line)
            name = row.pop("name", None)
            if name:
                ex.add_node(name, row, origin, existing_nodes)
    if spec.links_csv:
        for line, row in _csv_rows(spec.links_csv, LINK_COLUMNS, ("a", "b"), ex):
            ex.add_link(row, Origin(spec.links_csv, line))
    if spec.graphml:
        _graphml(spec.graphml, ex, existing_nodes)
    return ex


# --- grid ---------------------------------------------------------------------------------
def _grid(g: GridSpec, ex: Expansion, existing: dict, origin: Origin) -> None:
    def name(r: int, c: int) -> str:
        return f"{g.prefix}{r}_{c}"

    lane: dict[str, Any] = {"capacity_robots": g.aisle_capacity_robots}
    if g.speed_limit_m_s is not None:
        lane["speed_limit_m_s"] = g.speed_limit_m_s
    for r in range(g.rows):
        for c in range(g.cols):
            ex.add_node(name(r, c), {"x_m": g.origin_x_m + c * g.spacing_m,
                                     "y_m": g.origin_y_m + r * g.spacing_m, "role": "waypoint",
                                     "capacity_robots": g.aisle_capacity_robots},
                        origin, existing)
    for r in range(g.rows):
        for c in range(g.cols):
            if c + 1 < g.cols:
                ex.add_link({"a": name(r, c), "b": name(r, c + 1), **lane}, origin)
            if r + 1 < g.rows:
                ex.add_link({"a": name(r, c), "b": name(r + 1, c), **lane}, origin)


# --- CSV ----------------------------------------------------------------------------------
def _csv_rows(path: str, columns: dict[str, type], required: tuple[str, ...], ex: Expansion):
    """Yield (line, typed row) of a CSV file; problems go to ``ex``. Empty cells are left out
    (the field takes its default)."""
    try:
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            ex.problems.append(LayoutProblem(Origin(path), "<file>", "the file is larger than "
                                             f"the limit of {MAX_FILE_BYTES:,} bytes"))
            return
        fh = open(path, encoding="utf-8-sig", newline="")
    except (OSError, ValueError) as e:
        ex.problems.append(LayoutProblem(Origin(path), "<file>", f"cannot read the file: "
                                         f"{getattr(e, 'strerror', None) or e}"))
        return
    with fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader, [])]
            unknown = [h for h in header if h not in columns]
            missing = [h for h in required if h not in header]
            if unknown or missing or not header:
                msg = "; ".join(filter(None, [
                    f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown else "",
                    f"missing column(s) {', '.join(missing)}" if missing else ""]))
                ex.problems.append(LayoutProblem(Origin(path, 1), "<header>", (
                    msg or "empty file") + f"; columns are {', '.join(columns)}"))
                return
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                    continue
                if len(cells) != len(header):
                    ex.problems.append(LayoutProblem(Origin(path, line), "<row>", f"{len(cells)}"
                                                     f" cells, the header has {len(header)}"))
                    continue
                row, bad = {}, False
                for col, cell in zip(header, cells):
                    cell = cell.strip()
                    if cell == "":
                        continue
                    try:
                        row[col] = _convert(cell, columns[col])
                    except ValueError as e:
                        ex.problems.append(LayoutProblem(Origin(path, line), col, str(e)))
                        bad = True
                if not bad:
                    yield line, row
        except (csv.Error, UnicodeDecodeError) as e:
            ex.problems.append(LayoutProblem(Origin(path, reader.line_num or None), "<csv>",
                                             f"not a readable UTF-8 CSV file: {e}"))


def _convert(value: Any, kind: type) -> Any:
    """A CSV cell or GraphML attribute as the field's type; ``ValueError`` names the type."""
    if kind is str:
        return str(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        v = str(value).strip().lower()
        if v in _TRUE or v in _FALSE:
            return v in _TRUE
        raise ValueError(f"not a boolean (true/false): {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            f = math.nan
        if not math.isfinite(f) or f != int(f):
            raise ValueError(f"not an integer: {value!r}")
        return int(f)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None


# --- GraphML ------------------------------------------------------------------------------
def _graphml(path: str, ex: Expansion, existing: dict) -> None:
    """Nodes (their ids are the names) and edges of a GraphML file, read by networkx."""
    import networkx as nx
    from xml.etree.ElementTree import ParseError

    try:
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            ex.problems.append(LayoutProblem(Origin(path), "<file>", "the file is larger than "
                                             f"the limit of {MAX_FILE_BYTES:,} bytes"))
            return
        g = nx.read_graphml(path)
    except (OSError, ValueError, ParseError, nx.NetworkXError, KeyError, TypeError) as e:
        ex.problems.append(LayoutProblem(Origin(path), "<graphml>",
                                         f"not a readable GraphML file: {e}"))
        return
    for n, attrs in g.nodes(data=True):
        origin = Origin(path, element=f"node {str(n)!r}")
        row = _attrs(attrs, NODE_COLUMNS, origin, ex)
        for req in ("x_m", "y_m"):
            if req not in attrs:
                ex.problems.append(LayoutProblem(origin, f"nodes.{n}.{req}",
                                                 "required attribute is missing"))
                row = None
        if row is not None:
            ex.add_node(str(n), row, origin, existing)
    for a, b, attrs in g.edges(data=True):
        eid = attrs.get("id")
        origin = Origin(path, element=f"edge {eid!r}" if eid else f"edge {a!r} -> {b!r}")
        row = _attrs(attrs, LINK_COLUMNS, origin, ex)
        if row is not None:
            row = {"a": str(a), "b": str(b), **row}
            row.setdefault("directed", g.is_directed())
            ex.add_link(row, origin)


def _attrs(attrs: dict, columns: dict[str, type], origin: Origin, ex: Expansion) -> dict | None:
    row, ok = {}, True
    for k, v in attrs.items():
        if k in GRAPHML_IGNORED:
            continue
        if k not in columns or k in ("name", "a", "b"):
            known = ", ".join(c for c in columns if c not in ("name", "a", "b"))
            ex.problems.append(LayoutProblem(origin, k, f"unknown attribute; known: {known}"))
            ok = False
            continue
        try:
            row[k] = _convert(v, columns[k])
        except ValueError as e:
            ex.problems.append(LayoutProblem(origin, k, str(e)))
            ok = False
    return row if ok else None


# --- parking ------------------------------------------------------------------------------
def add_auto_parking(data: dict[str, Any]) -> list[str]:
    """With ``fleet.auto_parking = true`` and ``fleet.count`` above the number of
    ``fleet.homes``, add the missing homes: parking nodes ``{home}_p{k}`` beside the listed
    homes in turn (the first extra robot beside the first home, ...), each
    :data:`AUTO_PARKING_SPACING_M` further out, perpendicular to the home's first lane, and
    joined by lanes to the same neighbours as that home (a sibling spur, so a parked robot
    never blocks the way to another). Returns the names added (appended to ``fleet.homes``).
    A malformed document is left as it is (validation reports it)."""
    fleet, nodes, links = data.get("fleet"), data.get("nodes"), data.get("links", [])
    if not (isinstance(fleet, dict) and fleet.get("auto_parking") is True
            and isinstance(nodes, dict) and isinstance(links, list)):
        return []
    count, homes = fleet.get("count"), fleet.get("homes")
    if not (isinstance(count, int) and isinstance(homes, list) and homes
            and all(isinstance(h, str) and isinstance(nodes.get(h), dict) for h in homes)):
        return []
    added: list[str] = []
    new_links = []
    for k in range(max(0, count - len(homes))):
        home = homes[k % len(homes)]
        j = k // len(homes) + 1
        hx, hy = nodes[home].get("x_m"), nodes[home].get("y_m")
        if not all(isinstance(v, (int, float)) for v in (hx, hy)):
            return added
        lanes = [lk for lk in links if isinstance(lk, dict) and not lk.get("conveyor")
                 and home in (lk.get("a"), lk.get("b"))]
        dx, dy = 1.0, 0.0  # no lane: beside the home along x
        if lanes:
            other = lanes[0]["b"] if lanes[0].get("a") == home else lanes[0].get("a")
            o = nodes.get(other)
            if isinstance(o, dict) and isinstance(o.get("x_m"), (int, float)) \
                    and isinstance(o.get("y_m"), (int, float)):
                ux, uy = hx - o["x_m"], hy - o["y_m"]
                norm = math.hypot(ux, uy)
                if norm > 0:
                    dx, dy = -uy / norm, ux / norm
        name = f"{home}_p{j}"
        while name in nodes:
            name += "_"
        nodes[name] = {"x_m": hx + dx * AUTO_PARKING_SPACING_M * j,
                       "y_m": hy + dy * AUTO_PARKING_SPACING_M * j, "role": "parking"}
        for lk in lanes:
            copy = {f: v for f, v in lk.items() if f != "length_m"}
            copy["a" if lk.get("a") == home else "b"] = name
            new_links.append(copy)
        added.append(name)
    data["links"] = list(links) + new_links
    fleet["homes"] = list(homes) + added
    return added

