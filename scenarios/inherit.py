"""Scenario inheritance: a file ``extends`` a shipped scenario or another file and overrides
parts of it.

The rules (see docs/layouts.md):

* tables merge recursively: a key the child sets replaces the parent's, keys it does not set
  are inherited;
* a key set to an empty table (``[nodes.park_6]`` with nothing under it, or ``x = {}``)
  removes the parent's key;
* arrays and scalars replace the parent's value whole, except the top-level ``[[links]]``:
  a child link with the same ends as a parent link (``a``/``b``, in either order unless one
  of them is ``directed``) updates that link field by field, ``remove = true`` deletes it,
  and a link with new ends is added after the parent's links.

The functions here are pure (dicts in, dicts out); reading files, cycles and error
locations are the loader's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["MAX_EXTENDS_DEPTH", "MergeError", "merge", "locate_parent", "LinkSource"]

MAX_EXTENDS_DEPTH = 16
"""Longest chain of ``extends`` (a file, its parent, its grandparent, ...)."""


class MergeError(Exception):
    """A child entry that cannot be merged: ``path`` is the field path in the child."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def locate_parent(ref: str, folder: Path, shipped: dict[str, Path]) -> Path | None:
    """The file ``extends = ref`` names: a path (relative to the child's ``folder``) when it
    ends in ``.toml`` or exists, else a shipped scenario name; ``None`` if neither."""
    p = Path(ref)
    if not p.is_absolute():
        p = folder / p
    try:
        if ref.endswith(".toml") or p.exists():
            return p if p.is_file() else None
    except (OSError, ValueError):  # a NUL in the name, a name too long
        return None
    return shipped.get(ref)


LinkSource = tuple[str, int]
"""Where a merged link comes from: ``("parent", i)`` or ``("child", j)``, the index in that
document's ``links``."""


def merge(parent: dict[str, Any], child: dict[str, Any]
          ) -> tuple[dict[str, Any], list[LinkSource]]:
    """The child merged over the parent (neither is changed), and for each merged link where
    it comes from: the child's ``[[links]]`` entry that set or updated it, else the parent's."""
    out = _merge_tables(parent, child, top=True)
    links = out.get("links")
    links_from: list[LinkSource] = [("parent", i) for i in range(len(links))] \
        if isinstance(links, list) else []
    if isinstance(child.get("links"), list) and isinstance(parent.get("links"), list):
        out["links"], links_from = _merge_links(parent["links"], child["links"])
    elif isinstance(child.get("links"), list):
        links_from = [("child", j) for j in range(len(child["links"]))]
    return out, links_from


def _merge_tables(parent: dict, child: dict, top: bool = False) -> dict:
    out = dict(parent)
    for k, v in child.items():
        if top and k == "links" and isinstance(v, list) and isinstance(parent.get(k), list):
            continue  # merged by ends in merge()
        if isinstance(v, dict) and not v:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(parent.get(k), dict):
            out[k] = _merge_tables(parent[k], v)
        else:
            out[k] = v
    return out


def _ends(link: Any) -> tuple | None:
    if not isinstance(link, dict) or not isinstance(link.get("a"), str) \
            or not isinstance(link.get("b"), str):
        return None
    return (link["a"], link["b"])


def _same(p: dict, c: dict) -> bool:
    pe, ce = _ends(p), _ends(c)
    if pe is None or ce is None:
        return False
    if pe == ce:
        return True
    directed = p.get("directed") is True or c.get("directed") is True
    return not directed and pe == ce[::-1]


def _merge_links(parent: list, child: list) -> tuple[list, list[LinkSource]]:
    out = list(parent)
    origin: list[LinkSource] = [("parent", i) for i in range(len(out))]
    for j, c in enumerate(child):
        remove = isinstance(c, dict) and c.get("remove") is True
        hit = next((i for i, p in enumerate(out) if _same(p, c)), None)
        if remove:
            if hit is None:
                raise MergeError(f"links[{j}]", f"remove = true: the parent has no link "
                                 f"{c.get('a')!r} - {c.get('b')!r}")
            del out[hit], origin[hit]
        elif hit is not None:
            fields = {k: v for k, v in c.items() if k not in ("a", "b")}  # keep the parent's
            out[hit] = _merge_tables(out[hit], fields)
            origin[hit] = ("child", j)
        else:
            out.append(c)
            origin.append(("child", j))
    return out, origin
