"""Generate the scenario reference (``reference.md``) from the pydantic models of
``darkfab.scenarios.schema``: every field with its type, unit, default and allowed range,
grouped by section of the scenario file.

The MkDocs hook (``docs/hooks.py``) adds the page at build time; run this script to write it
to a file: ``python docs/gen_reference.py [OUT.md]`` (default: standard output).
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# unit of a field from its name's suffix, longest suffix first
UNITS = [("_kwh_per_m", "kWh/m"), ("_s_per_unit", "s/unit"), ("_k_per_mpa", "1/MPa"),
         ("_b_per_mpa", "1/MPa"), ("_per_kg", "1/kg"), ("_per_h", "1/h"), ("_kg_rev", "kg/rev"),
         ("_kg_m3", "kg/m³"), ("_kg_h", "kg/h"), ("_kg_s", "kg/s"), ("_m_s", "m/s"),
         ("_kwh", "kWh"), ("_kw", "kW"), ("_kg", "kg"), ("_mpa", "MPa"), ("_mm", "mm"),
         ("_kn", "kN"), ("_rpm", "rpm"), ("_pct", "%"), ("_soc", "fraction of capacity"),
         ("_units", "units"), ("_robots", "robots"), ("_hours", "h"), ("_h", "h"),
         ("_s", "s"), ("_m", "m")]


def unit_of(field: str) -> str:
    """The unit a field's name announces (``horizon_s`` -> s), or '' for none."""
    for suffix, unit in UNITS:
        if field.endswith(suffix):
            return unit
    return ""


def _strip(tp: Any) -> tuple[Any, list]:
    """``Annotated[T, m...]`` -> (T, [m...]), recursively."""
    meta: list = []
    while typing.get_origin(tp) is Annotated:
        meta.extend(tp.__metadata__)
        tp = typing.get_args(tp)[0]
    return tp, meta


def _union_args(tp: Any) -> list | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return list(typing.get_args(tp))
    return None


def _models(tp: Any) -> list[type[BaseModel]]:
    """Every pydantic model a type refers to."""
    tp, _ = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models(a)]


class Reference:
    """Markdown of the reference; one section per model, in the order of the scenario file."""

    def __init__(self) -> None:
        from darkfab.scenarios.schema import Distribution

        self.dist_models = set(_models(Distribution))
        self.paths: dict[type[BaseModel], str] = {}  # model -> its TOML path (first seen)
        self.order: list[type[BaseModel]] = []
        from darkfab.scenarios.json_schema import field_comments
        self.comments = field_comments()

    # --- walking ----------------------------------------------------------------------
    def visit(self, model: type[BaseModel], path: str) -> None:
        if model in self.paths:
            return
        self.paths[model] = path
        self.order.append(model)
        for name, info in model.model_fields.items():
            sub = self._child_path(path, name, info.annotation)
            for m in _models(info.annotation):
                if m in self.dist_models:
                    continue
                mode = m.model_fields.get("mode")
                suffix = ""
                if mode is not None and typing.get_origin(_strip(mode.annotation)[0]) is Literal:
                    suffix = f" (mode = \"{typing.get_args(_strip(mode.annotation)[0])[0]}\")"
                self.visit(m, sub + suffix)
        if model in self.dist_models:
            return

    def _child_path(self, path: str, name: str, tp: Any) -> str:
        p = f"{path}.{name}" if path else name
        tp, _ = _strip(tp)
        args = _union_args(tp)
        if args:  # a union: the arm that holds tables, else the first
            arms = [_strip(a)[0] for a in args if a is not type(None)]
            tp = next((a for a in arms if _models(a)), arms[0] if arms else tp)
        origin = typing.get_origin(tp)
        if origin is dict:
            return f"{p}.NAME"
        if origin is list:
            return f"{p}[]"
        return p

    # --- rendering --------------------------------------------------------------------
    def type_text(self, tp: Any) -> str:
        tp, _ = _strip(tp)
        args = _union_args(tp)
        if args:
            models = set(_models(tp))
            if models and models <= self.dist_models:
                return "[distribution](#distributions)"
            if len(models) > 2 and all("mode" in m.model_fields for m in models):
                return "table, by `mode` (below)"
            parts = [self.type_text(a) for a in args if a is not type(None)]
            return " or ".join(dict.fromkeys(parts))
        origin = typing.get_origin(tp)
        if origin is Literal:
            return "string" if all(isinstance(a, str) for a in typing.get_args(tp)) else "choice"
        if origin is list:
            return f"list of {self.type_text(typing.get_args(tp)[0])}"
        if origin is dict:
            inner = typing.get_args(tp)[1]
            if _models(inner):
                return f"named {self.type_text(inner)}"
            return f"table of `key = {self.type_text(inner)}`"
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in self.dist_models:
                return "[distribution](#distributions)"
            return f"[table `[{self.paths.get(tp, tp.__name__)}]`](#{self.anchor(tp)})"
        return {float: "number", int: "integer", str: "string", bool: "boolean",
                Any: "any"}.get(tp, getattr(tp, "__name__", str(tp)))

    def range_text(self, tp: Any, meta: list) -> str:
        tp, inner = _strip(tp)
        meta = list(meta) + inner
        args = _union_args(tp)
        if args:
            for a in args:
                if a is not type(None):
                    t, m = _strip(a)
                    meta += m
                    if typing.get_origin(t) is Literal:
                        tp = t
        flat: list = []
        for m in meta:  # Field(...) inside Annotated carries its constraints in .metadata
            flat += getattr(m, "metadata", None) or [m] if hasattr(m, "metadata") else [m]
        meta = flat
        out = []
        if tp is str and any(getattr(m, "pattern", None) for m in meta):
            out.append("a name")
        if typing.get_origin(tp) is Literal:
            out.append(", ".join(f"`{a!r}`".replace("'", '"') for a in typing.get_args(tp)))
        if typing.get_origin(tp) is list:
            t, _ = _strip(typing.get_args(tp)[0])
            if typing.get_origin(t) is Literal:
                out.append("each one of " + ", ".join(f'`"{a}"`' for a in typing.get_args(t)))
        for m in meta:
            for cls, attr, sign in ((at.Gt, "gt", ">"), (at.Ge, "ge", "≥"), (at.Lt, "lt", "<"),
                                    (at.Le, "le", "≤")):
                if isinstance(m, cls):
                    out.append(f"{sign} {getattr(m, attr):g}")
            if isinstance(m, at.MinLen) and m.min_length and tp is str:
                out.append("non-empty")
            elif isinstance(m, at.MinLen) and m.min_length:
                out.append(f"at least {m.min_length} {'entry' if m.min_length == 1 else 'entries'}")
            if isinstance(m, at.MaxLen):
                out.append(f"at most {m.max_length}")
            for attr in ("gt", "ge", "lt", "le"):  # pydantic's own metadata classes
                v = getattr(m, attr, None)
                if v is not None and not isinstance(m, (at.Gt, at.Ge, at.Lt, at.Le)):
                    out.append(f"{dict(gt='>', ge='≥', lt='<', le='≤')[attr]} {v:g}")
        return "; ".join(dict.fromkeys(out))

    @staticmethod
    def anchor(model: type[BaseModel]) -> str:
        return f"model-{model.__name__.lower()}"

    def default_text(self, info) -> str:
        if info.is_required():
            return "required"
        d = info.default
        if d is PydanticUndefined and info.default_factory is not None:
            d = info.default_factory()
        if isinstance(d, BaseModel):
            return "(defaults below)"
        if d is None:
            return "none"
        if isinstance(d, bool):
            return f"`{str(d).lower()}`"
        if isinstance(d, str):
            return f'`"{d}"`'
        if d in ({}, []):
            return "empty"
        return f"`{d}`"

    def section(self, model: type[BaseModel], level: str = "##") -> list[str]:
        doc = " ".join((model.__doc__ or "").split()) if model.__doc__ and \
            model.__doc__ is not BaseModel.__doc__ else ""
        path = self.paths[model]
        title = f"`[{path}]`" if path else "Scenario file (top level)"
        lines = [f'<a id="{self.anchor(model)}"></a>', "", f"{level} {title}", ""]
        if doc:
            lines += [doc.replace("``", "`"), ""]
        lines += ["| field | type | unit | default | allowed | notes |",
                  "|---|---|---|---|---|---|"]
        notes = self.comments.get(model.__name__, {})
        for name, info in model.model_fields.items():
            note = notes.get(name, "").replace("|", "\\|")
            cells = [f"`{name}`", self.type_text(info.annotation), unit_of(name),
                     self.default_text(info), self.range_text(info.annotation, info.metadata),
                     note]
            lines.append("| " + " | ".join(c.replace("|", "\\|") if i < 5 and "`" not in c
                                           else c for i, c in enumerate(cells)) + " |")
        return lines + [""]

    def markdown(self) -> str:
        from darkfab.scenarios.schema import JobShopScenario, Scenario

        self.visit(Scenario, "")
        plant = list(self.order)
        self.visit(JobShopScenario, "")
        out = ["# Scenario reference", "",
               "Generated from the schema (`darkfab.scenarios.schema`) when the guide is "
               "built: every field of a scenario file with its type, unit (from the field "
               "name's suffix), default and allowed range. `NAME` stands for a name you "
               "choose (letters, digits, `_`, `.`, `-`); `[]` marks an array of tables "
               "(`[[links]]`). A field marked *required* must be given. `darkfab check FILE` "
               "validates a file against all of this and the references between tables; "
               "`darkfab schema` writes the same rules as a JSON Schema for editors "
               "([Command line](cli.md#editor-support-darkfab-schema)).", "",
               "## Plant scenarios", ""]
        for m in plant:
            if m not in self.dist_models:
                out += self.section(m, "###")
        out += ["## Distributions", "",
                "A field of type *distribution* is an inline table with `dist` and that "
                "distribution's parameters, e.g. `{ dist = \"lognormal\", mean_s = 600, "
                "cv = 0.5 }`.", ""]
        for m in sorted(self.dist_models, key=lambda m: m.__name__):
            self.paths[m] = f"dist = \"{_strip(m.model_fields['dist'].annotation)[0].__args__[0]}\""
            out += self.section(m, "###")
        out += ["## Job-shop scenarios", "",
                "A file with a `[jobshop]` table ([Job shops](jobshops.md)) has only these "
                "two tables.", ""]
        for m in self.order[len(plant):]:
            out += self.section(m, "###")
        return "\n".join(out).rstrip() + "\n"


def reference_markdown() -> str:
    """The scenario reference page as Markdown."""
    return Reference().markdown()


if __name__ == "__main__":
    text = reference_markdown()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
