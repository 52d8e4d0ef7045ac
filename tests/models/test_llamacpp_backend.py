"""The in-process llama.cpp backend on the embedded GGUF (loads in about a second)."""

from __future__ import annotations

import sys

import pytest

from protege.models.base import BackendError, SamplingParams, Teacher
from protege.models.llamacpp import gguf_path, import_llama_cpp
from protege.models.resolve import ModelNotFoundError


def test_missing_llama_cpp_names_the_extra_and_portable_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(BackendError, match=r"pip install 'protege\[llamacpp\]'.*GGML_NATIVE=OFF"):
        import_llama_cpp()


def test_only_gguf_models_are_accepted():
    with pytest.raises((BackendError, ModelNotFoundError), match="gguf|not installed"):
        gguf_path("smollm2-135m-half")


@pytest.fixture(scope="module")
def teacher():
    pytest.importorskip("llama_cpp", reason="needs the llamacpp extra")
    from protege.models.llamacpp import LlamaCppTeacher

    try:
        t = LlamaCppTeacher("smollm2-135m-instruct", n_ctx=512, n_threads=1)
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    yield t
    t.close()


def test_score_reusing_the_prompt_equals_scoring_each_sequence_whole(teacher):
    assert isinstance(teacher, Teacher) and teacher.model_id == "smollm2-135m-instruct"
    prompt = [{"role": "user", "content": "Is 'I loved this film' positive or negative?"}]
    cands = ["Positive", "Negative", "It is positive.", ""]
    got = teacher.score([prompt], [cands])[0]
    for cand, value in zip(cands[:3], got):
        whole = teacher.topk_logprobs([prompt], [cand], k=1)[0]  # evaluates prompt + candidate from scratch
        n = len(teacher.encode_continuation(cand))
        assert value == pytest.approx(sum(whole.token_logprobs[-n:]), abs=1e-3)
    assert got[3] == 0.0 and got[0] > got[1]


def test_topk_rows_are_sorted_and_normalised(teacher):
    tk = teacher.topk_logprobs(["The capital of France is"], [" Paris"], k=5)[0]
    assert len(tk.ids) == len(tk.token_ids) - 1
    assert teacher.llm.detokenize([tk.ids[-1][0]]).decode() == " Paris"
    for row, tail in zip(tk.logprobs, tk.tail_logprob):
        assert row == sorted(row, reverse=True)
        assert sum(2.718281828 ** v for v in row) + 2.718281828 ** tail == pytest.approx(1.0, abs=1e-4)


def test_seeded_samples_reproduce(teacher):
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=2, seed=5)
    first = teacher.generate(["Once upon a time"], params)[0]
    assert [g.text for g in first] == [g.text for g in teacher.generate(["Once upon a time"], params)[0]]
    assert all(1 <= g.completion_tokens <= 6 for g in first)
