"""Problem sources: the chain_sum generator, GSM8K and user JSONL files, reasoning-gym as an optional extra."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from protege.tasks.reasoning.answers import extract, numeric
from protege.tasks.reasoning.process import arithmetic_score, arithmetic_steps
from protege.tasks.reasoning.sources import chain_sum, load_problems, read_gsm8k, read_jsonl, split_of

GSM8K = Path("/work/shared/data/gsm8k/train.jsonl")


def test_chain_sum_is_reproducible_and_its_solutions_check_out():
    problems = chain_sum(40, terms=4, digits=2, split="train", seed=3)
    assert [p.question for p in problems] == [p.question for p in chain_sum(40, terms=4, digits=2, seed=3)]
    assert len({p.id for p in problems}) == 40
    for p in problems:
        expression = p.question.removeprefix("Compute ").removesuffix(".")
        assert int(p.answer) == eval(expression)  # the gold answer is the expression's value
        assert len(arithmetic_steps(p.solution)) == 3 and arithmetic_score(p.solution) == 1.0
        assert extract(p.solution).rule == "answer_tag" and numeric(extract(p.solution).answer, p.answer) == 1.0
        numbers = [int(t) for t in expression.split() if t.isdigit()]
        assert len(numbers) == 4 and all(10 <= n <= 99 for n in numbers)
        assert p.meta == {"source": "chain_sum", "terms": 4, "digits": 2}


def test_chain_sum_splits_are_disjoint_whatever_the_seed():
    train = {p.question for seed in (0, 1) for p in chain_sum(150, terms=2, digits=2, split="train", seed=seed)}
    test = {p.question for seed in (0, 1) for p in chain_sum(60, terms=2, digits=2, split="test", seed=seed)}
    dev = {p.question for p in chain_sum(60, terms=2, digits=2, split="dev")}
    assert not train & test and not train & dev and not dev & test
    assert all(split_of(q.removeprefix("Compute ").removesuffix(".")) == "test" for q in test)


def test_chain_sum_one_digit_numbers_exclude_zero_and_a_small_space_runs_out_with_a_clear_error():
    problems = chain_sum(10, terms=2, digits=1, split="test")
    assert all(1 <= int(t) <= 9 for p in problems for t in p.question[8:-1].split() if t.isdigit())
    with pytest.raises(ValueError, match=r"only \d+ distinct test problems at terms=2, digits=1; lower count=500"):
        chain_sum(500, terms=2, digits=1, split="test")
    every = chain_sum(500, terms=2, digits=1, split="test", at_most=True)  # the whole split, for the boundary grid
    assert 10 < len(every) < 500 and len({p.question for p in every}) == len(every)
    assert every[:10] == problems and all(p.id in {q.id for q in every} for p in chain_sum(len(every), terms=2,
                                                                                           digits=1, split="test"))


@pytest.mark.parametrize("knobs, message", [
    ({"terms": 1}, r"chain_sum terms=1 is out of range: use an integer from 2 to 10"),
    ({"digits": 7}, r"chain_sum digits=7 is out of range: use an integer from 1 to 6"),
    ({"terms": 2.5}, r"chain_sum terms=2.5 is out of range"),
    ({"split": "val"}, r"split='val' is unknown: use one of 'train', 'dev', 'test'"),
])
def test_chain_sum_knob_errors_name_the_key_and_range(knobs, message):
    with pytest.raises(ValueError, match=message):
        chain_sum(5, **knobs)


def test_load_problems_dispatches_and_rejects_bad_specs(tmp_path):
    assert load_problems("chain_sum", split="dev", count=3, terms=2, digits=1) == chain_sum(3, terms=2, digits=1,
                                                                                        split="dev")
    with pytest.raises(ValueError, match="give count"):
        load_problems("chain_sum")
    with pytest.raises(ValueError, match="chain_sum has no knob width: its knobs are terms, digits"):
        load_problems("chain_sum", count=3, width=2)
    with pytest.raises(ValueError, match="source='mystery' is unknown"):
        load_problems("mystery")


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_gsm8k_format_strips_calculator_marks_and_reads_the_final_answer(tmp_path):
    path = _write(tmp_path / "g.jsonl", [
        {"question": "Q1?", "answer": "She sold 48/2 = <<48/2=24>>24.\nIn all 48+24 = <<48+24=72>>72.\n#### 72"},
        {"question": "Q2?", "answer": "Big.\n#### 1,200"},
    ])
    first, second = read_gsm8k(path)
    assert first.answer == "72" and "<<" not in first.solution and ">>" not in first.solution
    assert first.solution == "She sold 48/2 = 24.\nIn all 48+24 = 72.\n<answer>72</answer>"
    assert arithmetic_score(first.solution) == 1.0 and first.meta["steps"] == 2
    assert second.answer == "1200"
    assert load_problems(f"gsm8k:{path}", count=1) == [first]


def test_gsm8k_without_final_line_names_file_row_and_fix(tmp_path):
    path = _write(tmp_path / "g.jsonl", [{"question": "Q?", "answer": "42"}])
    with pytest.raises(ValueError, match=r"g.jsonl row 1: 'answer' has no final '#### N' line"):
        read_gsm8k(path)


@pytest.mark.skipif(not GSM8K.exists(), reason="the shared GSM8K file is not on this machine")
def test_the_shared_gsm8k_file_reads_with_correct_worked_solutions():
    problems = read_gsm8k(GSM8K, limit=200)
    assert len(problems) == 200 and problems[0].answer == "72"
    assert all("<<" not in p.solution for p in problems)
    assert all(numeric(extract(p.solution).answer, p.answer) == 1.0 for p in problems)
    scored = [arithmetic_score(p.solution) for p in problems]
    assert sum(s == 1.0 for s in scored) > 0.9 * sum(s is not None for s in scored)


def test_user_jsonl_with_optional_columns(tmp_path):
    path = _write(tmp_path / "mine.jsonl", [
        {"question": "2+2?", "answer": 4, "difficulty": "easy"},
        "",
        {"question": "3*3?", "answer": "9", "solution": "3 * 3 = 9", "id": "sq"},
    ])
    a, b = read_jsonl(path)
    assert (a.id, a.answer, a.solution, a.meta) == ("mine-1", "4", None, {"source": "mine.jsonl",
                                                                          "difficulty": "easy"})
    assert (b.id, b.solution) == ("sq", "3 * 3 = 9\n<answer>9</answer>")


@pytest.mark.parametrize("rows, message", [
    ([{"question": "q", "answer": "1"}, {"question": "q2"}], r"bad.jsonl row 2 has no 'answer' column"),
    ([{"answer": "1"}], r"bad.jsonl row 1 has no 'question' column"),
    ([{"question": "q", "answer": "  "}], r"row 1 has no 'answer' column"),
    (["{not json"], r"bad.jsonl row 1 is not valid JSON"),
    (["[1, 2]"], r"bad.jsonl row 1 is not a JSON object"),
])
def test_user_jsonl_errors_name_file_row_and_column(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        read_jsonl(_write(tmp_path / "bad.jsonl", rows))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl does not exist"):
        load_problems(str(tmp_path / "nowhere.jsonl"))


def test_reasoning_gym_absent_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import fails as when it is not installed
    with pytest.raises(ModuleNotFoundError, match="pip install reasoning-gym"):
        load_problems("rg:chain_sum", count=2)


def test_reasoning_gym_items_become_problems_split_by_hash(monkeypatch):
    calls = []

    def create_dataset(name, size, seed, **config):
        calls.append((name, size, seed, config))
        return [{"question": f"What is {i} + 1?", "answer": str(i + 1), "metadata": {}} for i in range(size)]

    monkeypatch.setitem(sys.modules, "reasoning_gym", types.SimpleNamespace(create_dataset=create_dataset))
    test = load_problems("rg:basic_arithmetic", split="test", count=5, seed=7, max_terms=3)
    train = load_problems("rg:basic_arithmetic", split="train", count=20, seed=7, max_terms=3)
    assert len(test) == 5 and not {p.question for p in test} & {p.question for p in train}
    assert calls[0][0] == "basic_arithmetic" and calls[0][2] == 7 and calls[0][3] == {"max_terms": 3}
    assert test[0].meta == {"source": "rg:basic_arithmetic", "max_terms": 3}
    assert all(int(p.answer) == int(p.question.split()[2]) + 1 for p in test)
