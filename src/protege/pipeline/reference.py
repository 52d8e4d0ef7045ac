"""The recipe reference and JSON schemas, generated from the typed config so they cannot drift from it.

``docs/recipe-reference.md`` lists every section of every family with each key's type, default and
description; ``docs/schema/<family>.schema.json`` is the JSON schema of that family's recipe (point an editor's
YAML language server at it for completion). ``python -m protege.pipeline.reference`` rewrites both;
``tests/pipeline/test_reference.py`` fails when the committed files are not what this module generates.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from protege.pipeline.families import FAMILIES
from protege.pipeline.recipe import BASE_KEYS, schema

PIPE = "\\|"  # a literal | inside a Markdown table cell
DOCS = Path(__file__).resolve().parents[3] / "docs"

INTRO = """# Recipe reference

Generated from the typed configuration by `python -m protege.pipeline.reference`; do not edit by hand.
JSON schemas for editors: `docs/schema/<family>.schema.json` (e.g. add
`# yaml-language-server: $schema=../docs/schema/classification.schema.json` at the top of a recipe).

**Paths.** Every path in a recipe — `run_dir`, `data.source`, `data.test_source`, `data.data_dir`, model folders in
`teacher.model` and `train.student`, `prompts.source` — is taken from the folder of the recipe file, wherever
protege is run from (a recipe given as a mapping to `protege.run` takes them from the working directory).
A name that is not a path (an embedded model, a packaged dataset, a hub id) is left as it is. Without `run_dir`
a run goes to `runs/<name>` under the directory protege is run from.
"""


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return f" {PIPE} ".join(repr(a).replace("'", "") for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = f" {PIPE} ".join(_type(a) for a in args)
        return inner + (" (optional)" if len(args) < len(typing.get_args(annotation)) else "")
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type(a) for a in typing.get_args(annotation))}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: Any) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value, default=str)}`"


def _section(model: type[BaseModel], title: str, seen: set) -> list[str]:
    lines = [f"### `{title}`", "", (model.__doc__ or "").strip().split("\n")[0], "",
             "| key | type | default | description |", "|---|---|---|---|"]
    nested = []
    for name, info in model.model_fields.items():
        description = (info.description or "").replace("|", PIPE)
        lines.append(f"| `{name}` | {_type(info.annotation)} | {_default(info)} | {description} |")
        models = [a for a in (info.annotation, *typing.get_args(info.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        for arg in models:
            if arg not in seen:
                seen.add(arg)
                # Variants of one key (a union told apart by `kind`) are titled by their kind.
                kind = arg.model_fields.get("kind")
                variant = f" (kind: {kind.default})" if len(models) > 1 and kind is not None else ""
                nested.append((arg, f"{title}.{name}{variant}"))
    lines.append("")
    for sub, sub_title in nested:
        lines += _section(sub, sub_title, seen)
    return lines


def markdown() -> str:
    lines = [INTRO]
    for fam in FAMILIES.values():
        model = schema(fam)
        lines += [f"## Family `{fam.name}`", "", fam.description, ""]
        base = [n for n in model.model_fields if n in BASE_KEYS]
        lines += ["| top-level key | type | default | description |", "|---|---|---|---|"]
        lines += [f"| `{n}` | {_type(model.model_fields[n].annotation)} | {_default(model.model_fields[n])} | "
                  f"{model.model_fields[n].description} |" for n in base]
        lines.append("")
        seen: set = set()
        for name, info in model.model_fields.items():
            if name in BASE_KEYS and name != "teacher":
                continue
            for arg in typing.get_args(info.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    lines += _section(arg, name, seen)
    return "\n".join(lines).rstrip() + "\n"


def json_schemas() -> dict[str, str]:
    return {fam.name: json.dumps(schema(fam).model_json_schema(), indent=2, sort_keys=True, default=str) + "\n"
            for fam in FAMILIES.values()}


def generated(docs: Path = DOCS) -> dict[Path, str]:
    """Every generated file and its content."""
    files = {docs / "recipe-reference.md": markdown()}
    files.update({docs / "schema" / f"{name}.schema.json": text for name, text in json_schemas().items()})
    return files


def main() -> int:
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
