"""MkDocs hook: adds the scenario reference, generated from the schema, as ``reference.md``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.structure.files import File, Files


def _generator():
    spec = importlib.util.spec_from_file_location(
        "darkfab_gen_reference", Path(__file__).with_name("gen_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "reference.md",
                                content=_generator().reference_markdown()))
    return files
