"""The recipe reference and the JSON schemas in docs/ are what the typed config generates (CI's check)."""

from __future__ import annotations

import json
from pathlib import Path

from protege.pipeline.reference import generated

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_generated_reference_and_schemas_are_current():
    stale = [str(path) for path, text in generated(DOCS).items() if not path.exists() or path.read_text() != text]
    assert not stale, f"regenerate with `python -m protege.pipeline.reference`: {stale}"


def test_the_schema_knows_every_section_and_describes_every_key():
    schema = json.loads((DOCS / "schema" / "classification.schema.json").read_text())
    assert {"data", "annotate", "train", "evaluate", "teacher", "run_dir"} <= set(schema["properties"])
    data = schema["$defs"]["DataConfig"]["properties"]
    assert all(field.get("description") for field in data.values())
    text = (DOCS / "recipe-reference.md").read_text()
    assert "### `data`" in text and "`test_size`" in text and "taken from the folder of the recipe file" in text
