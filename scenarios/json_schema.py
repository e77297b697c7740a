"""JSON Schema of scenario files, for editors that check TOML against a JSON Schema (Taplo,
Even Better TOML) and for the scenario reference of the user guide.

The schema is pydantic's ``model_json_schema()`` of :class:`~darkfab.scenarios.schema.Scenario`
(or of the job-shop scenario), with the models' docstrings as descriptions and each field's
trailing comment in ``schema.py`` (or its parts) as its description. It checks types, ranges,
choices and unknown keys as the user types; cross-references (a buffer that does not exist, an
unreachable hop) are checked by ``darkfab check`` only.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import json
import tokenize
from pathlib import Path
from typing import Any

__all__ = ["field_comments", "scenario_json_schema", "write_json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def field_comments() -> dict[str, dict[str, str]]:
    """Model class name -> field name -> the trailing comment of the field's line(s) in
    ``schema.py`` and its parts (``schema.PARTS``; without ``#``), for fields that have one."""
    from . import schema

    out: dict[str, dict[str, str]] = {}
    for module in (schema, *(importlib.import_module(f"{__package__}.{m}")
                             for m in schema.PARTS)):
        _module_comments(inspect.getsource(module), out)
    return out


def _module_comments(source: str, out: dict[str, dict[str, str]]) -> None:
    """Add the field comments of one module's ``source`` to ``out``."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if not text.startswith("type: ignore"):
                comments[tok.start[0]] = text
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                lines = range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
                text = " ".join(comments[i] for i in lines if i in comments)
                if text:
                    out.setdefault(node.name, {})[stmt.target.id] = text


def _describe(schema: dict[str, Any], comments: dict[str, dict[str, str]]) -> None:
    """Add field comments as ``description`` and refuse table keys that are not names."""
    for name, model in schema.get("$defs", {}).items():
        for field, prop in model.get("properties", {}).items():
            text = comments.get(name, {}).get(field)
            if text and "description" not in prop:
                prop["description"] = text

    def names_only(node: Any) -> None:
        if isinstance(node, dict):
            pattern = node.get("patternProperties")
            if pattern and len(pattern) == 1 and "additionalProperties" not in node:
                node["propertyNames"] = {**node.get("propertyNames", {}),
                                         "pattern": next(iter(pattern))}
            for v in node.values():
                names_only(v)
        elif isinstance(node, list):
            for v in node:
                names_only(v)

    names_only(schema)


def scenario_json_schema(jobshop: bool = False) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a plant scenario file, or of a job-shop scenario
    file (a ``[jobshop]`` table)."""
    from .schema import JobShopScenario, Scenario

    model = JobShopScenario if jobshop else Scenario
    schema = model.model_json_schema()
    comments = field_comments()
    _describe(schema, comments)
    for field, prop in schema.get("properties", {}).items():
        text = comments.get(model.__name__, {}).get(field)
        if text and "description" not in prop:
            prop["description"] = text
    schema["title"] = "darkfab job-shop scenario" if jobshop else "darkfab scenario"
    schema.setdefault("description", "A darkfab scenario file (TOML). Units are in the field "
                      "names (_s seconds, _m metres, _kg kilograms, _pct percent, ...). "
                      "'darkfab check FILE' also checks the references between tables.")
    if not jobshop:  # a complete file; a file that `extends` another is partial: darkfab check
        schema.setdefault("properties", {})["extends"] = {
            "type": "string", "description": "a shipped scenario or a .toml file this one "
            "overrides (its fields are checked after the merge, by 'darkfab check')"}
    return {"$schema": SCHEMA_DIALECT, **schema}


def write_json_schema(out: Path, jobshop: bool = False) -> Path:
    """Write the schema as indented JSON to ``out`` (missing folders are created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(scenario_json_schema(jobshop), indent=2, ensure_ascii=False)
                   + "\n", encoding="utf-8")
    return out
