"""Recipes are validated before anything runs; errors name the key, the file and what was expected."""

from __future__ import annotations

import pytest

from protege.pipeline.families import FAMILIES
from protege.pipeline.recipe import RecipeError, dump_recipe, load_recipe, parse_recipe


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_minimal_recipe_resolves_run_dir_next_to_the_file(tmp_path):
    recipe = load_recipe(write(tmp_path, "name: demo\nrun_dir: runs/demo\nfamily: lm\nteacher: {model: smollm2-135m-instruct}\n"))
    assert recipe.run_dir == (tmp_path / "runs/demo").resolve()
    assert recipe.teacher.backend == "hf"
    assert "name: demo" in dump_recipe(recipe)


def test_unknown_key_is_named_with_file_and_suggestion(tmp_path):
    path = write(tmp_path, "name: demo\nrun_dir: r\nfamily: lm\nteacher: {modle: x}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert str(path) in text and "teacher.modle" in text and "Did you mean 'model'" in text


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, "name: demo\nrun_dir: r\nfamily: lm\nseed: many\n"))
    assert "'seed'" in str(err.value) and "integer" in str(err.value) and "'many'" in str(err.value)


def test_missing_required_key_and_bad_literal(tmp_path):
    with pytest.raises(RecipeError) as err:
        parse_recipe({"run_dir": "r", "family": "lm", "teacher": {"backend": "magic"}}, "x.yaml")
    text = str(err.value)
    assert "missing required key 'name'" in text and "teacher.backend" in text and "'magic'" in text


def test_overrides_apply_dotted_keys(tmp_path):
    recipe = load_recipe(write(tmp_path, "name: demo\nrun_dir: r\nfamily: lm\n"), {"teacher.batch_size": 3, "seed": 7})
    assert recipe.seed == 7 and recipe.teacher.batch_size == 3


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="YAML mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(RecipeError, match="not found: .*absent.yaml"):
        load_recipe(tmp_path / "absent.yaml")


def test_the_family_is_named_or_inferred_and_other_families_sections_are_refused(tmp_path):
    inferred = parse_recipe({"name": "d", "run_dir": "r", "prompts": {"texts": ["hi"]}})
    assert inferred.family == "lm" and "family: lm" in dump_recipe(inferred)
    with pytest.raises(RecipeError, match="add 'family: ...'"):
        parse_recipe({"name": "d", "run_dir": "r"})
    with pytest.raises(RecipeError, match="section 'select' belongs to the classification family, not lm"):
        parse_recipe({"name": "d", "run_dir": "r", "family": "lm", "select": {"budget": 3}})
    with pytest.raises(RecipeError, match="Did you mean 'classification'"):
        parse_recipe({"name": "d", "run_dir": "r", "family": "clasification"})
    with pytest.raises(RecipeError, match="belong to no single family"):
        parse_recipe({"name": "d", "run_dir": "r", "prompts": {"texts": ["hi"]}, "select": {"budget": 3}})


def test_every_packaged_recipe_validates_and_says_what_it_does():
    from protege.cli import RECIPES

    for path in RECIPES.glob("*.yaml"):
        recipe = load_recipe(path)
        assert recipe.description and recipe.family in FAMILIES, path


def test_a_key_that_moved_is_pointed_at_its_new_place():
    with pytest.raises(RecipeError) as err:
        parse_recipe({"name": "d", "run_dir": "r", "family": "classification",
                      "augment": {"instruction": "x {text} {label}", "min_improvement": 0.01}}, "old.yaml")
    text = str(err.value)
    assert "unknown key 'augment.instruction'. It moved to 'augment.prompt.instruction'." in text
    assert "It moved to 'augment.early_stop.min_improvement'." in text
