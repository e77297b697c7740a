"""HTML pages from Jinja2 templates shipped with the package.

``darkfab view`` (:mod:`darkfab.scenarios.view`, templates in ``view_assets/``) and ``darkfab
report`` (:mod:`darkfab.scenarios.report`, templates in ``report_assets/``) build their pages
from template files: the page skeleton is HTML in a file, what the code computes is passed in.
Templates are read through the package loader (:class:`jinja2.PackageLoader`), so they are found
in an installed wheel as in a source checkout. Autoescaping is on: every value is HTML-escaped
unless the template marks it ``|safe`` (the inlined stylesheets, scripts and JSON, and the HTML
fragments the report builds). jinja2 is imported on the first page rendered, never at start-up.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["render", "asset"]


@lru_cache(maxsize=None)
def _environment(folder: str):
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("darkfab.scenarios", folder),
                       autoescape=True, keep_trailing_newline=True,
                       undefined=StrictUndefined)  # a name the code forgot to pass is an error


def render(folder: str, template: str, **context: Any) -> str:
    """Render ``template`` from the package folder ``folder`` (e.g. ``"view_assets"``)."""
    return _environment(folder).get_template(template).render(**context)


def asset(folder: str, name: str) -> str:
    """The text of a file shipped in the package folder ``folder`` (a stylesheet or script to
    inline)."""
    from importlib.resources import files

    return files("darkfab.scenarios").joinpath(folder, name).read_text(encoding="utf-8")
