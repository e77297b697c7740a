"""Load a scenario: TOML → ``--set`` overrides → strict validation → cross-reference checks.

All problems are collected and reported together, one line each, as
``FILE:LINE: path.to.field: message`` (the line where the TOML locator can find the key).
A scenario file is data: it is parsed, never executed; a ``module:Class`` controller in it is
checked for its syntax, never imported (see :mod:`darkfab.control.registry`).

The schema (pydantic, networkx, numpy) is imported on the first load, so that code that only
needs :class:`ScenarioError` or the list of shipped scenarios starts fast.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .inherit import MAX_EXTENDS_DEPTH, LinkSource, MergeError, locate_parent, merge
from .layout import Origin, add_auto_parking, expand_layout
from .line_limits import line_limit_errors
from .schema import (DIST_TAGS, FAULT_MODES, UNION_TAGS, JobShopScenario, LayoutSpec, Scenario,
                     jobshop_errors, reference_errors)
from .toml_input import TomlInputError, check_nesting, check_size, read_toml


__all__ = ["ScenarioError", "Problem", "load_scenario", "shipped_scenarios", "resolve_path",
           "apply_overrides", "parse_override", "Override", "split_controller"]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    """Control characters (newlines above all) escaped: a problem is one line of output."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


@dataclass(frozen=True)
class Problem:
    """One problem: a field path (or ``<file>``, ``<encoding>``, ``<toml>``, ``--set``), a
    message, and the file line when it is known. Path and message are one line each."""

    path: str
    message: str
    line: int | None = None
    file: str | None = None  # another file than the scenario's: a parent, a CSV, a GraphML

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _one_line(self.path))
        object.__setattr__(self, "message", _one_line(self.message))

    def format(self, file: str) -> str:
        file = _one_line(self.file) if self.file else file
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.path}: {self.message}"


class ScenarioError(Exception):
    """One or more problems in a scenario file or its overrides."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.format(file) for p in problems))


def shipped_scenarios() -> dict[str, Path]:
    """Names and paths of the scenarios shipped as package data."""
    root = resources.files("darkfab.scenarios") / "files"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".toml")}


def resolve_path(name_or_path: str) -> Path:
    """A shipped scenario name or a file path; an unknown name lists the shipped ones."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ScenarioError(str(p), [Problem("<file>", "no such scenario file")])
        return p
    shipped = shipped_scenarios()
    if name_or_path in shipped:
        return shipped[name_or_path]
    names = ", ".join(sorted(shipped))
    raise ScenarioError(name_or_path, [Problem(
        "<scenario>", f"unknown scenario {name_or_path!r}; shipped scenarios: {names}")])


# --- overrides ----------------------------------------------------------------------------
Override = str | tuple[str, Any]
"""``"path.to.field=value"`` (value read as TOML) or ``("path.to.field", value)``."""


def parse_override(item: Override) -> tuple[list[str | int], Any]:
    """``a.b[2].c=value`` → (['a', 'b', 2, 'c'], value); the value is read as a TOML value
    (``30``, ``1.5``, ``true``, ``"x"``, ``{dist = "constant", value_s = 1}``), else a string.
    A ``(path, value)`` pair takes the value as it is."""
    if isinstance(item, tuple):
        return _parse_path(item[0], item[0]), item[1]
    text = item
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected path.to.field=value")
    path_s, raw = text.split("=", 1)
    path = _parse_path(path_s, text)
    try:
        check_nesting(raw)
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
        check_size(value if isinstance(value, (dict, list)) else [])
    except TomlInputError as e:
        raise ValueError(f"--set {path_s.strip()}=...: {e.message}") from None
    except (tomllib.TOMLDecodeError, ValueError):  # not a TOML value (or too many digits)
        value = raw.strip()
    return path, value


def _parse_path(path_s: str, text: str) -> list[str | int]:
    path: list[str | int] = []
    for part in path_s.strip().split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise ValueError(f"--set {text!r}: bad path element {part!r}")
        path.append(m.group(1))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return path


def apply_overrides(data: dict, overrides: list[Override]) -> list[Problem]:
    """Apply ``--set`` overrides in place; return problems with paths that cannot be set."""
    problems = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ValueError as e:
            problems.append(Problem("--set", str(e)))
            continue
        node: Any = data
        for i, key in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(key, int):
                if not isinstance(node, list) or key >= len(node):
                    problems.append(Problem(_dotted(path[:i + 1]), "no such list element"))
                    break
                node = node[key]
            else:
                if not isinstance(node, dict):
                    problems.append(Problem(_dotted(path[:i + 1]), "not a table"))
                    break
                node = node.setdefault(key, [] if isinstance(nxt, int) else {})
        else:
            last = path[-1]
            if isinstance(last, int):
                if not isinstance(node, list) or last >= len(node):
                    problems.append(Problem(_dotted(path), "no such list element"))
                    continue
                node[last] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                problems.append(Problem(_dotted(path), "not a table"))
    return problems


def split_controller(arg: str, file: Path | str = "<command line>") -> tuple[str, dict | None]:
    """``"cautious{max_faults = 2}"`` → ``("cautious", {"max_faults": 2})``: a controller name
    (``--controller``), optionally with its parameters as a TOML inline table; ``None`` when
    none are given."""
    name, brace, rest = arg.partition("{")
    if not brace:
        return arg.strip(), None
    try:
        params = tomllib.loads("p = {" + rest)["p"]
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(file), [Problem(f"--controller {arg}",
                                                f"parameters are not a TOML inline table: {e}")]
                            ) from None
    return name.strip(), params


def controller_overrides(arg: str, file_controller: str) -> list[Override]:
    """The overrides that make a scenario use controller ``arg`` (``name`` or
    ``name{params}``): its name, and its parameters (none if not given and the name differs
    from the file's ``file_controller``: the file's params belong to its own controller)."""
    name, params = split_controller(arg)
    ov: list[Override] = [("controller.name", name)]
    if params is not None:
        ov.append(("controller.params", params))
    elif name != file_controller:
        ov.append(("controller.params", {}))
    return ov


# --- loading ------------------------------------------------------------------------------
def load_scenario(source: str | Path,
                  overrides: list[Override] | None = None) -> Scenario | JobShopScenario:
    """Load, override and validate a scenario; raise :class:`ScenarioError` listing every
    problem. A file that ``extends`` another is merged over it first (see
    :mod:`darkfab.scenarios.inherit`); a ``[layout]`` adds nodes and links from files or a
    grid, and ``fleet.auto_parking`` adds homes (see :mod:`darkfab.scenarios.layout`). A file
    with a ``[jobshop]`` table is a :class:`JobShopScenario`; its relative
    ``jobshop.instance`` path is taken relative to the scenario file's folder."""
    path = resolve_path(str(source))
    file = str(path)
    data, loc = _read_chain(path)
    problems = apply_overrides(data, list(overrides or []))
    if problems:
        raise ScenarioError(file, problems)
    set_paths = {tuple(parse_override(o)[0]) for o in overrides or []}
    _absolute_paths(data, path.parent)  # paths set by --set: relative to the scenario file
    try:
        check_size(data)  # the overrides may have added entries
    except TomlInputError as e:
        raise ScenarioError(file, [Problem(e.path, e.message)]) from None
    if isinstance(data.get("jobshop"), dict):
        return _load_jobshop(data, path, loc, set_paths)
    problems = _expand_layout(data, loc, set_paths)
    if problems:
        raise ScenarioError(file, problems)
    try:
        check_size(data)  # the layout may have added entries
    except TomlInputError as e:
        raise ScenarioError(file, [Problem(e.path, e.message)]) from None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(file, [_problem(err, loc, set_paths) for err in e.errors()]) from None
    problems = [_located(p, m, loc, set_paths) for p, m in reference_errors(scenario)]
    if not problems:  # the models are built only from a consistent scenario
        problems = [_located(p, m, loc, set_paths) for p, m in line_limit_errors(scenario)]
    if problems:
        raise ScenarioError(file, problems)
    return scenario


def _read_chain(path: Path) -> tuple[dict, "_Locator"]:
    """The document of ``path`` merged over the chain of files it ``extends``, and a locator
    of field paths in those files. Problems name the file (child or parent) and line."""
    docs: list[tuple[str, _KeyLines, dict]] = []  # child first
    seen = [path.resolve()]
    p = path
    while True:
        file = str(p)
        try:
            text, data = read_toml(p)
        except TomlInputError as e:
            raise ScenarioError(file, [Problem(e.path, e.message, e.line)]) from None
        lines = _KeyLines(text)
        _absolute_paths(data, p.parent)
        ref = data.pop("extends", None)
        docs.append((file, lines, data))
        if ref is None:
            break
        line = lines.find("extends")
        if not isinstance(ref, str) or not ref:
            raise ScenarioError(file, [Problem("extends", "must be a shipped scenario name or "
                                               "the path of a .toml file", line)])
        shipped = shipped_scenarios()
        parent = locate_parent(ref, p.parent, shipped)
        if parent is None:
            raise ScenarioError(file, [Problem("extends", f"no scenario file or shipped "
                                               f"scenario {ref!r} (paths are relative to this "
                                               f"file); shipped: {', '.join(sorted(shipped))}",
                                               line)])
        if parent.resolve() in seen:
            cycle = " -> ".join(str(x) for x in [*seen, parent.resolve()])
            raise ScenarioError(file, [Problem("extends", f"cycle of extends: {cycle}", line)])
        if len(docs) >= MAX_EXTENDS_DEPTH:
            raise ScenarioError(file, [Problem("extends", f"more than {MAX_EXTENDS_DEPTH} "
                                               "levels of extends", line)])
        seen.append(parent.resolve())
        p = parent
    k = len(docs) - 1
    data = docs[k][2]
    links = data.get("links")
    link_src = [(k, i) for i in range(len(links))] if isinstance(links, list) else []
    for k in range(len(docs) - 2, -1, -1):
        try:
            data, links_from = merge(data, docs[k][2])
        except MergeError as e:
            raise ScenarioError(docs[k][0], [Problem(e.path, e.message,
                                                     docs[k][1].find(e.path))]) from None
        link_src = _link_sources(link_src, links_from, k)
    return data, _Locator(str(path), [(f, ln) for f, ln, _ in docs], link_src)


def _link_sources(prev: list[tuple[int, int]], links_from: list[LinkSource], k: int
                  ) -> list[tuple[int, int]]:
    return [(k, j) if side == "child" else prev[j] if j < len(prev) else (k, j)
            for side, j in links_from]


_LAYOUT_FILES = ("nodes_csv", "links_csv", "graphml")


def _absolute_paths(data: dict, folder: Path) -> None:
    """Relative file paths in a document (``[layout]`` files, ``jobshop.instance``) made
    relative to ``folder``, the folder of the file that names them."""
    def absolute(v: str) -> str:
        try:
            return str((folder / v).resolve())
        except (OSError, ValueError):  # a NUL in the name: reported when the file is read
            return v

    lay = data.get("layout")
    if isinstance(lay, dict):
        for key in _LAYOUT_FILES:
            v = lay.get(key)
            if isinstance(v, str) and v and not Path(v).is_absolute():
                lay[key] = absolute(v)
    job = data.get("jobshop")
    if isinstance(job, dict) and isinstance(job.get("instance"), str) and job["instance"] \
            and not Path(job["instance"]).is_absolute():
        from darkfab.control.jobshop import shipped_instances
        if job["instance"] not in shipped_instances():
            job["instance"] = absolute(job["instance"])


def _expand_layout(data: dict, loc: "_Locator", set_paths: set[tuple]) -> list[Problem]:
    """Add the ``[layout]`` nodes and links (then drop the table) and the automatic parking
    to the document; record where each came from."""
    lay = data.pop("layout", None)
    if lay is not None:
        try:
            spec = LayoutSpec.model_validate(lay)
        except ValidationError as e:
            return [_problem({**err, "loc": ("layout", *err["loc"])}, loc, set_paths)
                    for err in e.errors()]
        nodes = data.get("nodes", {})
        links = data.get("links", [])
        if not isinstance(nodes, dict) or not isinstance(links, list):
            return []  # reported by validation
        ex = expand_layout(spec, nodes, loc.origin("layout.grid"))
        if ex.problems:
            return [loc.problem_at(p.origin, p.path, p.message) for p in ex.problems]
        base = len(links)
        data["nodes"] = {**nodes, **ex.nodes}
        data["links"] = [*links, *ex.links]
        loc.origins.update({f"nodes.{n}": o for n, o in ex.node_origins.items()})
        loc.origins.update({f"links[{base + i}]": o for i, o in enumerate(ex.link_origins)})
    links = data.get("links", [])
    base = len(links) if isinstance(links, list) else 0
    added = add_auto_parking(data)
    if added:
        o = loc.origin("fleet.auto_parking")
        loc.origins.update({f"nodes.{n}": o for n in added})
        loc.origins.update({f"links[{i}]": o for i in range(base, len(data["links"]))})
    return []


def _load_jobshop(data: dict, path: Path, lines: "_Locator",
                  set_paths: set[tuple]) -> JobShopScenario:
    from pydantic import ValidationError

    from darkfab.control.jobshop import shipped_instances

    from .schema import JobShopScenario

    file = str(path)
    inst = data["jobshop"].get("instance")
    if isinstance(inst, str) and inst and inst not in shipped_instances() \
            and not Path(inst).is_absolute():
        try:
            data["jobshop"]["instance"] = str((path.parent / inst).resolve())
        except (OSError, ValueError):  # a NUL in the name: reported by jobshop_errors
            pass
    try:
        scenario = JobShopScenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(file, [_problem(err, lines, set_paths) for err in e.errors()]) from None
    problems = [lines.problem(p, m) for p, m in jobshop_errors(scenario)]
    if problems:
        raise ScenarioError(file, problems)
    return scenario


def _problem(err: dict, lines: "_Locator", set_paths: set[tuple]) -> Problem:
    loc = [x for i, x in enumerate(err["loc"]) if not (i > 0 and _is_tag(x))]
    path = _dotted(loc) or "<root>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif "input" in err and err["type"] not in ("union_tag_invalid",):
        inp = err["input"]
        if not isinstance(inp, (dict, list)):
            msg = f"{msg} (got {inp!r})"
    if loc == ["scenario", "warmup_s"] and ("scenario", "horizon_s") in set_paths:
        msg += " [horizon_s from --set, --hours or --days]"
    return _located(path, msg, lines, set_paths)


def _located(path: str, msg: str, lines: "_Locator", set_paths: set[tuple]) -> Problem:
    """A problem at the line that holds ``path``, or tagged ``[from --set]`` if an override
    set it (or a table above it)."""
    try:
        loc = tuple(parse_override((path, None))[0]) if path[:1] not in "<-" else ()
    except ValueError:
        loc = ()
    if any(loc[:len(sp)] == sp for sp in set_paths):
        return Problem(path, msg + " [from --set]")
    return lines.problem(path, msg)


_PYDANTIC_TAG = re.compile(r"^(constrained-str|str|int|float|bool|\[key\]|function-.*|"
                           r"(list|dict|tagged-union|union)\[.*\])$")


def _is_tag(x) -> bool:
    """Union members, discriminator tags and key markers pydantic puts into error locations."""

    return isinstance(x, str) and (x in DIST_TAGS or x in UNION_TAGS or x in FAULT_MODES
                                   or _PYDANTIC_TAG.match(x) is not None)


def _dotted(path: list) -> str:
    out = ""
    for x in path:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out


class _KeyLines:
    """Best-effort map from a dotted field path to the line that defines it in a TOML text."""

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(r"^\s*([A-Za-z0-9_\-\.\"']+)\s*=")

    def __init__(self, text: str) -> None:
        self.paths: dict[str, int] = {}
        table = ""
        counts: dict[str, int] = {}
        for no, line in enumerate(text.splitlines(), start=1):
            h = self._header.match(line)
            if h:
                name = h.group(2).replace('"', "").replace("'", "")
                if h.group(1) == "[[":
                    i = counts.get(name, 0)
                    counts[name] = i + 1
                    table = f"{name}[{i}]"
                else:
                    table = name
                parts = table.split(".")
                for i in range(1, len(parts) + 1):
                    self.paths.setdefault(".".join(parts[:i]), no)
                continue
            k = self._key.match(line)
            if k:
                key = k.group(1).replace('"', "").replace("'", "")
                full = f"{table}.{key}" if table else key
                self.paths.setdefault(full, no)
                # inline tables / arrays: register keys written on the same line
                for sub in re.findall(r"([A-Za-z0-9_]+)\s*=", line[k.end():]):
                    self.paths.setdefault(f"{full}.{sub}", no)

    def find(self, path: str) -> int | None:
        p = path
        while p:
            if p in self.paths:
                return self.paths[p]
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        return None


class _Locator:
    """Where a field path of the merged document was written: the child file or a parent
    (the most derived file that sets it), a CSV line or a GraphML element (``origins``)."""

    def __init__(self, main: str, docs: list[tuple[str, _KeyLines]],
                 link_src: list[tuple[int, int]]) -> None:
        self.main = main
        self.docs = docs  # child first
        self.link_src = link_src  # merged link i -> (document, index of the link in it)
        self.origins: dict[str, Origin] = {}  # entries added by [layout] or auto parking

    def find(self, path: str) -> tuple[str, int | None]:
        p = path
        while p:
            if p in self.origins:
                o = self.origins[p]
                return o.where(), o.line
            m = re.match(r"links\[(\d+)\]", p)
            if m and p == m.group():
                i = int(m.group(1))
                if i < len(self.link_src):
                    k, j = self.link_src[i]
                    file, lines = self.docs[k]
                    return file, lines.find(f"links[{j}]" + path[m.end():])
                return self.main, None
            if not m:
                for file, lines in self.docs:
                    if p in lines.paths:
                        return file, lines.paths[p]
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        return self.main, None

    def origin(self, path: str) -> Origin:
        file, line = self.find(path)
        return Origin(file, line)

    def problem(self, path: str, msg: str) -> Problem:
        file, line = self.find(path)
        return Problem(path, msg, line, None if file == self.main else file)

    def problem_at(self, o: Origin, path: str, msg: str) -> Problem:
        where = o.where()
        return Problem(path, msg, o.line, None if where == self.main else where)
