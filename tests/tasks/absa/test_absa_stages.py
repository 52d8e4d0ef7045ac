"""The absa family end to end on a tiny tagger and a scripted teacher, via run_recipe(recipe, teacher=...)."""

from __future__ import annotations

import json
import random

import pytest
from scripted_absa_teacher import ScriptedAbsaTeacher
from tiny_tagger import build_tiny_tagger_base

from protege.pipeline.recipe import RecipeError, parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.absa import tables as t

TERMS = ["screen", "battery life", "keyboard", "fan", "hard drive", "trackpad"]
CUES = {"great": "positive", "good": "positive", "bad": "negative", "slow": "negative", "fine": "neutral"}


def _row(i: int, term: str, cue: str, second: tuple[str, str] | None = None) -> dict:
    sentence = f"the {term} is {cue}"
    aspects = [{"from": 4, "to": 4 + len(term), "target": term, "polarity": CUES[cue]}]
    if second:
        start = len(sentence) + len(" but the ")
        sentence += f" but the {second[0]} is {second[1]}"
        aspects.append(
            {"from": start, "to": start + len(second[0]), "target": second[0], "polarity": CUES[second[1]]}
        )
    return {"ID": str(i), "sentence": sentence + ".", "aspects": aspects}


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        term, cue = rng.choice(TERMS), rng.choice(list(CUES))
        other = rng.choice([t for t in TERMS if t != term])
        out.append(_row(seed * 1000 + i, term, cue, (other, rng.choice(list(CUES))) if i % 3 == 0 else None))
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("absa-files")
    base = build_tiny_tagger_base(root / "tagger")
    paths = {}
    for name, n, seed in (("seed", 12, 1), ("dev", 10, 2), ("test", 16, 3)):
        rows = _rows(n, seed)
        if name == "seed":
            rows.append(
                {
                    "ID": "bad-offsets",
                    "sentence": "the fan is noisy.",
                    "aspects": [
                        {"from": 0, "to": 2, "target": "fan", "polarity": "negative"},
                        {"from": 4, "to": 7, "target": "glass", "polarity": "negative"},
                        {"from": 4, "to": 7, "target": "fan", "polarity": "furious"},
                    ],
                }
            )
            rows.append({"ID": "no-aspects", "sentence": "it is too slow.", "aspects": []})
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(rows))
    paths["dev_sentence"] = json.loads(paths["dev"].read_text())[0]["sentence"]
    return base, paths, root


def _recipe(files, run_dir, **sections) -> dict:
    base, paths, _ = files
    loop = {
        "steps": 12,
        "lr": 3e-3,
        "micro_batch_size": 8,
        "schedule": "constant",
        "eval_every": 6,
        "tracker": None,
        "early_stopping": None,
    }
    recipe = {
        "name": "absa-tiny",
        "family": "absa",
        "run_dir": str(run_dir),
        "seed": 0,
        "teacher": {"backend": "hf", "model": "absa-script"},
        "task": {},
        "data": {
            "seed_file": str(paths["seed"]),
            "dev_file": str(paths["dev"]),
            "test_file": str(paths["test"]),
        },
        "synthesize": {
            "mode": "live",
            "instance": {"per_seed": 1, "combinations": 3},
            "keypoint": {"sentences": 4, "brainstorm_size": 4},
            "chunk_size": 4,
        },
        "annotate": {"mode": "polarity"},
        "refine": {"rounds": 2, "merge": {"threshold": 0.5}},
        "train": {"student": str(base), "max_length": 24, "loop": loop},
        "evaluate": {},
        "report": {},
    }
    recipe.update(sections)
    return recipe


@pytest.fixture(scope="module")
def live_run(files):
    _, paths, root = files
    teacher = ScriptedAbsaTeacher(garbage_every=7, copy_sentence=paths["dev_sentence"])
    run = run_recipe(parse_recipe(_recipe(files, root / "live")), teacher=teacher)
    return run, teacher


def test_live_run_writes_every_table_with_provenance(live_run):
    run, _ = live_run
    synthetic = run.records.read(t.SYNTHETIC)
    assert set(synthetic["stream"]) == {"instance", "keypoint"}
    assert {"paraphrase_one", "aspect_mask", "context_mask", "paraphrase_comb"} <= set(synthetic["method"])
    instance = synthetic[synthetic["stream"] == "instance"]
    assert (
        all(len(p) in (1, 2) for p in instance["parents"])
        and (synthetic["teacher"] == "fake:absa-script").all()
    )
    assert (
        synthetic["prompt_hash"].str.len().eq(16).all() and synthetic["raw_label"].str.startswith("[").all()
    )
    summary = run.read_json(t.SYNTH_SUMMARY)
    assert summary["dropped"]["equals_dev_or_test"] >= 1  # the scripted teacher copied a dev sentence
    assert summary["dropped"]["no_sentence"] >= 1  # garbage answers are counted, never fatal
    assert (
        0 < summary["generation"]["parse_rate"] <= 1 and summary["budget"]["calls"] == summary["requests"] + 5
    )
    assert len(set(synthetic["sentence"])) == len(synthetic)


def test_annotate_refine_train_evaluate_and_report(live_run):
    run, _ = live_run
    annotated = run.records.read(t.ANNOTATED)
    dists = [d for cell in annotated["distributions"] for d in json.loads(cell)]
    assert dists and all(abs(sum(d.values()) - 1) < 1e-6 for d in dists)
    # the scripted teacher puts its mass on the cue word's polarity; mean calibration keeps that the argmax
    labels = [a["polarity"] for cell in annotated["aspects"] for a in json.loads(cell)]
    assert labels == [max(d, key=d.get) for d in dists]
    candidates = [c for cell in annotated["candidates"] for c in json.loads(cell)]
    assert [c[0] for c in candidates] == labels  # the most probable polarity leads each candidate set
    assert run.read_json(t.ANNOTATE_SUMMARY)["aspects_scored"] > 0
    refine = run.read_json(t.REFINE_SUMMARY)
    assert [r["round"] for r in refine["rounds"]] == [1, 2] and refine["labels"] == "annotated"
    assert all(0 <= r["change_rate"] for r in refine["rounds"])
    trained = run.read_json(t.TRAINED)
    assert trained[t.STUDENT]["synthetic"] == "refined" and trained[t.SEED_STUDENT]["synthetic_rows"] == 0
    metrics = run.read_json(t.METRICS)
    scores = metrics["models"][t.STUDENT]["test"]
    assert set(scores) == {"all", "multi_polarity"} and scores["all"]["sentences"] == 16
    assert set(scores["all"]["confusion"]) == {"positive", "negative", "neutral"}
    issues = metrics["data"]["splits"]["seed"]["issues"]
    assert {"offsets_repaired", "offsets_mismatch", "unknown_polarity"} <= set(issues)
    report = (run.artifacts / "report.md").read_text()
    assert "Polarity confusion" in report and "Data issues" in report


def test_exported_student_loads_as_plain_transformers(live_run):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    run, _ = live_run
    model = AutoModelForTokenClassification.from_pretrained(run.artifacts / t.STUDENT)
    AutoTokenizer.from_pretrained(run.artifacts / t.STUDENT)
    assert model.config.id2label[1] == "B-positive"


def test_a_rerun_pays_nothing_twice(files, tmp_path):
    teacher = ScriptedAbsaTeacher()
    recipe = _recipe(files, tmp_path / "run", refine={"rounds": 0}, train=None, evaluate=None, report=None)
    recipe = {k: v for k, v in recipe.items() if v is not None}
    run_recipe(parse_recipe(recipe), teacher=teacher)
    paid = teacher.calls
    assert paid > 0
    run_recipe(parse_recipe(recipe), teacher=teacher)
    run_recipe(parse_recipe(recipe), teacher=teacher, force=("synthesize", "annotate"))
    assert teacher.calls == paid  # skipped, then re-run from the ledger
    bigger = {
        **recipe,
        "synthesize": {**recipe["synthesize"], "keypoint": {"sentences": 6, "brainstorm_size": 4}},
    }
    run_recipe(parse_recipe(bigger), teacher=teacher)
    assert 0 < teacher.calls - paid <= 2 + 20  # only the new key-point sentences (and their polarity scores)


def test_budget_stops_requests_and_is_reported(files, tmp_path):
    teacher = ScriptedAbsaTeacher()
    recipe = _recipe(
        files,
        tmp_path / "run",
        synthesize={"mode": "live", "streams": ["instance"], "max_calls": 5, "chunk_size": 2},
    )
    recipe = {
        k: v for k, v in recipe.items() if k not in ("annotate", "refine", "train", "evaluate", "report")
    }
    run = run_recipe(parse_recipe(recipe), teacher=teacher)
    summary = run.read_json(t.SYNTH_SUMMARY)
    assert (
        summary["budget"]["calls"] == 5 == teacher.calls
        and summary["dropped"]["over_budget"] == summary["requests"] - 5
    )


def test_generate_mode_parses_grounds_and_reports_rates(files, tmp_path):
    teacher = ScriptedAbsaTeacher(garbage_every=4)
    recipe = _recipe(files, tmp_path / "run", annotate={"mode": "generate", "shots": 2})
    recipe = {k: v for k, v in recipe.items() if k not in ("refine", "train", "evaluate", "report")}
    run = run_recipe(parse_recipe(recipe), teacher=teacher)
    gen = run.read_json(t.ANNOTATE_SUMMARY)["generation"]
    assert 0.5 < gen["parse_rate"] < 1 and gen["grounding_rate"] == 1.0
    annotated = run.records.read(t.ANNOTATED)
    assert (annotated["mode"] == "generate").all() and len(annotated) == len(run.records.read(t.SYNTHETIC))


def test_import_mode_reads_a_ds2_shaped_file(files, tmp_path):
    _, paths, _ = files
    dev_sentence = paths["dev_sentence"]
    rows = [
        {
            "ID": "1000_paraphrase_one_0",
            "sentence": "the Screen is great.",
            "label": [["screen", "pos"]],
            "aspects": [{"from": 4, "to": 10, "target": "Screen", "polarity": "positive"}],
        },
        {"ID": "1000_1001_paraphrase_comb_0", "sentence": dev_sentence, "label": [], "aspects": []},
        {
            "ID": "1001_aspect_mask_2_0",
            "sentence": "the glass is bad.",
            "label": [["keyboard", "negative"]],
            "aspects": [],
        },
    ]
    source = tmp_path / "synthetic.json"
    source.write_text(json.dumps(rows))
    recipe = _recipe(files, tmp_path / "run", synthesize={"mode": "import", "import_file": str(source)})
    recipe = {
        k: v
        for k, v in recipe.items()
        if k not in ("teacher", "annotate", "refine", "train", "evaluate", "report")
    }
    run = run_recipe(parse_recipe(recipe))
    synthetic = run.records.read(t.SYNTHETIC)
    assert list(synthetic["id"]) == ["1000_paraphrase_one_0"]
    assert json.loads(synthetic["aspects"][0]) == [
        {"from": 4, "to": 10, "target": "Screen", "polarity": "positive"}
    ]
    assert list(synthetic["parents"][0]) == ["1000"] and synthetic["method"][0] == "paraphrase_one"
    dropped = run.read_json(t.SYNTH_SUMMARY)["dropped"]
    assert dropped == {"equals_dev_or_test": 1, "no_pair_survived_normalisation": 1}


def test_configuration_errors_name_the_key_before_any_spend(files, tmp_path):
    base = _recipe(files, tmp_path / "run")
    with pytest.raises(RecipeError, match="import_file"):
        parse_recipe({**base, "synthesize": {"mode": "import"}})
    with pytest.raises(RecipeError, match="seed_file"):
        parse_recipe({**base, "data": {"dev_file": "x.json"}})
    teacher = ScriptedAbsaTeacher()
    missing = {**base, "data": {**base["data"], "seed_file": str(tmp_path / "missing.json")}}
    with pytest.raises(FileNotFoundError, match="data.seed_file"):
        run_recipe(parse_recipe(missing), teacher=teacher)
    wrong = {
        k: v for k, v in base.items() if k not in ("synthesize", "refine", "train", "evaluate", "report")
    }
    wrong["annotate"] = {"tables": ["nonsense"]}
    with pytest.raises(ValueError, match="annotate.tables"):
        run_recipe(parse_recipe(wrong), teacher=teacher)
    assert teacher.calls == 0
