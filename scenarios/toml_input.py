"""Read a scenario file defensively: bounded size, UTF-8 only, bounded nesting and key count.

A scenario file may come from anywhere (a colleague, a generator, an attacker), so it is read
in bounded time and memory and every way it can be malformed ends as one problem with a
file line, never a traceback:

* at most :data:`MAX_FILE_BYTES` bytes (checked before reading the whole file);
* UTF-8 only (TOML 1.0). A UTF-8 byte-order mark at the start is accepted and ignored (editors
  on Windows write one); a UTF-16 or UTF-32 mark, a NUL byte (binary data) or bytes that are
  not UTF-8 are refused with the line and column of the first bad byte;
* arrays and inline tables nested at most :data:`MAX_NESTING_DEPTH` deep, checked by a cheap
  pre-scan before ``tomllib`` (which is recursive) sees the text; tables nested through dotted
  keys or headers (``a.b.c.d = 1``) are checked on the parsed document;
* at most :data:`MAX_ENTRIES` keys and array items in the whole document.

The checks do not change what a valid file means: they only bound what is read.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_FILE_BYTES", "MAX_NESTING_DEPTH", "MAX_ENTRIES", "TomlInputError", "read_toml",
           "parse_toml", "check_nesting"]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Largest scenario file read (4 MiB; the largest shipped file is under 20 KiB)."""
MAX_NESTING_DEPTH = 32
"""Deepest nesting of tables, arrays and inline tables (shipped files nest at most 4 deep)."""
MAX_ENTRIES = 100_000
"""Most keys plus array items in one document (a plant of ~10,000 units)."""

_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"

# Strings and comments, whose brackets do not nest: multi-line basic and literal strings,
# one-line basic strings (with escapes) and literal strings, comments. Every alternative
# consumes what it matches, so the scan is linear in the text.
_SKIP = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""+|\'\'\'(?:[^\']|\'(?!\'\'))*\'\'\'+'
                   r'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*', re.S)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


class TomlInputError(Exception):
    """A file that cannot be read as a bounded TOML document: ``path`` is a pseudo field
    (``<file>``, ``<encoding>``, ``<toml>``) or the dotted path of the offending table."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.line = line


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The text (BOM removed) and the parsed document of a scenario file, within the limits."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise TomlInputError("<file>", f"cannot read the file: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise TomlInputError("<file>", f"the file is larger than the limit of "
                             f"{MAX_FILE_BYTES:,} bytes ({MAX_FILE_BYTES // 2**20} MiB)")
    text = _decode(raw)
    return text, parse_toml(text)


def _decode(raw: bytes) -> str:
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    elif raw.startswith(_UTF16_32_BOMS):
        raise TomlInputError("<encoding>", "the file starts with a UTF-16 or UTF-32 byte-order "
                             "mark; TOML files are UTF-8: save it as UTF-8", 1)
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, col = _line_col(raw, nul)
        raise TomlInputError("<encoding>", f"binary data (a NUL byte at column {col}): "
                             "not a TOML text file", line)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(raw, e.start)
        raise TomlInputError("<encoding>", f"byte 0x{raw[e.start]:02X} at column {col} is not "
                             "UTF-8; TOML files are UTF-8: save it as UTF-8", line) from None


def _line_col(raw: bytes, pos: int) -> tuple[int, int]:
    return raw.count(b"\n", 0, pos) + 1, pos - (raw.rfind(b"\n", 0, pos) + 1) + 1


def check_nesting(text: str, limit: int = MAX_NESTING_DEPTH) -> None:
    """Raise :class:`TomlInputError` if brackets and braces outside strings and comments nest
    deeper than ``limit`` (a table header ``[[a]]`` counts 2), or a dotted key has more than
    ``limit`` parts (``tomllib`` takes time quadratic in their number)."""
    deep_brackets = text.count("[") + text.count("{") > limit
    if not deep_brackets and text.count(".") < limit:
        return
    code = _SKIP.sub(lambda m: "\n" * m.group().count("\n"), text)
    if deep_brackets:
        b = np.frombuffer(code.encode("utf-8"), dtype=np.uint8)
        depth = np.cumsum(_OPEN[b], dtype=np.int64)
        deep = np.flatnonzero(depth > limit)
        if deep.size:
            line = code.encode("utf-8").count(b"\n", 0, int(deep[0])) + 1
            raise TomlInputError("<toml>", f"arrays or inline tables nested more than {limit} "
                                 "deep", line)
    m = re.search(r"(?:[A-Za-z0-9_\-]*[ \t]*\.[ \t]*){%d,}" % limit, code)
    if m:
        raise TomlInputError("<toml>", f"a dotted key with more than {limit} parts",
                             code.count("\n", 0, m.start()) + 1)


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads`` within the nesting and entry limits, every failure a
    :class:`TomlInputError`."""
    check_nesting(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise TomlInputError("<toml>", f"not valid TOML: {e}",
                             int(m.group(1)) if m else None) from None
    except ValueError as e:  # an integer of more than sys.get_int_max_str_digits() digits
        m = re.search(r"[0-9_]{1000,}", text)
        raise TomlInputError("<toml>", "not valid TOML: a number has too many digits"
                             if "digits" in str(e) else f"not valid TOML: {e}",
                             text.count("\n", 0, m.start()) + 1 if m else None) from None
    except RecursionError:  # not reached when check_nesting holds; a last line of defence
        raise TomlInputError("<toml>", f"nested more than {MAX_NESTING_DEPTH} deep") from None
    check_size(data)
    return data


def check_size(data: Any, max_entries: int = MAX_ENTRIES,
               max_depth: int = MAX_NESTING_DEPTH) -> None:
    """Raise :class:`TomlInputError` if a parsed document has more than ``max_entries`` keys
    and array items or nests deeper than ``max_depth`` (tables through dotted keys included).
    Iterative: a deep document cannot exhaust the stack."""
    entries = 0
    stack: list[tuple[Any, int, tuple]] = [(data, 0, ())]  # the document itself: depth 0
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            raise TomlInputError(_dotted(path), f"tables or arrays nested more than "
                                 f"{max_depth} deep")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        entries += len(node)
        if entries > max_entries:
            raise TomlInputError("<toml>", f"more than {max_entries:,} keys and array items "
                                 "in the file")
        for k, v in items:
            if isinstance(v, (dict, list)):
                stack.append((v, depth + 1, path + (k,) if depth < max_depth else path))


def _dotted(path: tuple) -> str:
    out = ""
    for x in path:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or "<root>"
