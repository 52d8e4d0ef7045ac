"""Recipes are validated before anything runs; errors name the key, the file and what was expected."""

from __future__ import annotations

import pytest

from protege.recipe import RecipeError, dump_recipe, load_recipe, parse_recipe


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_minimal_recipe_resolves_run_dir_next_to_the_file(tmp_path):
    recipe = load_recipe(write(tmp_path, "name: demo\nrun_dir: runs/demo\nteacher: {model: smollm2-135m-instruct}\n"))
    assert recipe.run_dir == (tmp_path / "runs/demo").resolve()
    assert recipe.teacher.backend == "hf"
    assert "name: demo" in dump_recipe(recipe)


def test_unknown_key_is_named_with_file_and_suggestion(tmp_path):
    path = write(tmp_path, "name: demo\nrun_dir: r\nteacher: {modle: x}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert str(path) in text and "teacher.modle" in text and "Did you mean 'model'" in text


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, "name: demo\nrun_dir: r\nseed: many\n"))
    assert "'seed'" in str(err.value) and "integer" in str(err.value) and "'many'" in str(err.value)


def test_missing_required_key_and_bad_literal(tmp_path):
    with pytest.raises(RecipeError) as err:
        parse_recipe({"run_dir": "r", "teacher": {"backend": "magic"}}, "x.yaml")
    text = str(err.value)
    assert "missing required key 'name'" in text and "teacher.backend" in text and "'magic'" in text


def test_overrides_apply_dotted_keys(tmp_path):
    recipe = load_recipe(write(tmp_path, "name: demo\nrun_dir: r\n"), {"teacher.batch_size": 3, "seed": 7})
    assert recipe.seed == 7 and recipe.teacher.batch_size == 3


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="YAML mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe(tmp_path / "absent.yaml")
