"""KDRL's sampled-token estimators with the teacher behind a backend's prompt-logprob path (ServedTeacher)."""

from __future__ import annotations

import random
from typing import Iterator

import pytest
import torch

from protege.losses.kdrl import KDRLConfig
from protege.models.hf import HFTeacher
from protege.train.grpo import GRPOConfig, GRPOSource, PolicyConfig, PolicyObjective
from protege.train.lm_data import collate, encode_prompt
from protege.train.preflight import TokenizerMismatchError
from protege.train.served_teacher import ServedTeacher

from tiny import build_llama, build_tokenizer
from tiny_lm import VOCAB

EOS = 2


class Recording:
    """A backend that records every sequence it is asked to score, and can corrupt the ids of some answers."""

    def __init__(self, inner, corrupt=()):
        self.inner, self.asked, self.corrupt = inner, [], set(corrupt)

    def topk_logprobs(self, prompts, completions, k):
        answers = self.inner.topk_logprobs(prompts, completions, k)
        for p, c, a in zip(prompts, completions, answers):
            self.asked.append(p + c)
            if len(self.asked) - 1 in self.corrupt:  # the server read another tokenization
                a.token_ids[-1] += 1
        return answers


def _setup(seed=0):
    tok = build_tokenizer()
    student = build_llama(len(tok), layers=2, seed=0, hidden=32).double().train()
    teacher = build_llama(len(tok), layers=2, seed=1, hidden=32).double()
    rng = random.Random(seed)
    prompts = [[rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 5))] for _ in range(4)]
    calls = iter(range(10**9))
    torch.manual_seed(seed)
    source = GRPOSource(prompts, student, lambda i, text: next(calls) % 2,
                        GRPOConfig(group_size=4, max_new_tokens=6, generation_dtype=None),
                        decode=lambda ids: " ".join(map(str, ids)), eos_id=EOS, pad_id=EOS)
    return tok, student, teacher, source.batch([0, 1])


def _loss_and_grad(objective, student, batch):
    loss, metrics = objective(student, batch)
    (grad,) = torch.autograd.grad(loss, student.model.layers[0].mlp.up_proj.weight)
    return float(loss.detach()), grad, metrics


@pytest.mark.parametrize("estimator", ["k2", "k1_reward", "k3"])
def test_a_served_teacher_gives_the_in_memory_loss_and_asks_only_open_rows(estimator):
    tok, student, teacher, batch = _setup()
    kd = KDRLConfig(estimator=estimator, beta=0.3, gate="response")
    memory = PolicyObjective(PolicyConfig(kd=kd), teacher=teacher, student_tokenizer=tok, teacher_tokenizer=tok)
    backend = Recording(HFTeacher(teacher, tok, model_id="tiny"))
    served = PolicyObjective(PolicyConfig(kd=kd), teacher=ServedTeacher(backend, tok), student_tokenizer=tok)
    want, want_grad, _ = _loss_and_grad(memory, student, batch)
    got, got_grad, metrics = _loss_and_grad(served, student, batch)
    assert got == pytest.approx(want, rel=1e-5)
    assert torch.allclose(got_grad, want_grad, rtol=1e-4, atol=1e-8)
    # Only the incorrect responses were sent, as the student's own token ids.
    incorrect = (batch["rewards"] == 0).nonzero().flatten().tolist()
    sent = [batch["input_ids"][i, : int(batch["attention_mask"][i].sum())].tolist() for i in incorrect]
    assert backend.asked == sent and served.teacher_tokens == memory.teacher_tokens > 0
    assert served.teacher.mismatched == 0


def test_a_sequence_the_teacher_did_not_score_as_given_is_left_out_and_counted():
    tok, student, teacher, batch = _setup(seed=1)
    kd = KDRLConfig(estimator="k2", beta=0.3, gate="response")
    backend = Recording(HFTeacher(teacher, tok, model_id="tiny"), corrupt={0})
    served = PolicyObjective(PolicyConfig(kd=kd), teacher=ServedTeacher(backend, tok), student_tokenizer=tok)
    got, _, _ = _loss_and_grad(served, student, batch)
    first_open = int((batch["rewards"] == 0).nonzero()[0])
    closed = {**batch, "rewards": batch["rewards"].clone()}
    closed["rewards"][first_open] = 1.0  # the gate reads rewards; the advantages travel with the batch unchanged
    memory = PolicyObjective(PolicyConfig(kd=kd), teacher=teacher, student_tokenizer=tok, teacher_tokenizer=tok)
    want, _, _ = _loss_and_grad(memory, student, closed)
    assert got == pytest.approx(want, rel=1e-5)
    assert served.teacher.mismatched == 1 and served.teacher_tokens == memory.teacher_tokens


def test_exact_and_a_missing_tokenizer_are_refused_with_a_served_teacher():
    tok, _, teacher, _ = _setup()
    backend = HFTeacher(teacher, tok, model_id="tiny")
    with pytest.raises(ValueError, match="'exact' needs the teacher's whole distribution"):
        PolicyObjective(PolicyConfig(kd=KDRLConfig(estimator="exact")), teacher=ServedTeacher(backend, tok),
                        student_tokenizer=tok)
    with pytest.raises(ValueError, match="tokenizer"):
        ServedTeacher(backend, None)
    # The served teacher reads the student's ids as given: another chat template is fine, another id map is not.
    templated = build_tokenizer()
    templated.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    PolicyObjective(PolicyConfig(kd=KDRLConfig()), teacher=ServedTeacher(backend, templated), student_tokenizer=tok)
    with pytest.raises(TokenizerMismatchError, match="different ids"):
        PolicyObjective(PolicyConfig(kd=KDRLConfig()), teacher=ServedTeacher(backend, build_tokenizer(vocab_size=200)),
                        student_tokenizer=tok)


# ---------------------------------------------------------------------------------------------- llama.cpp


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Iterator[tuple[str, str]]:
    pytest.importorskip("llama_cpp.server", reason="needs the llamacpp extra: pip install 'protege[llamacpp]'")
    from llama_server import llama_server, smollm2_gguf

    gguf = smollm2_gguf()
    with llama_server(gguf, tmp_path_factory.mktemp("llama-server")) as url:
        yield url, gguf


@pytest.mark.server
def test_the_llamacpp_server_scores_the_students_tokens_like_llamacpp_in_process(llama):
    from protege.models.llamacpp import LlamaCppTeacher
    from protege.models.openai_compat import OpenAICompatTeacher
    from protege.models.zoo import load_tokenizer

    url, gguf = llama
    tok = load_tokenizer("smollm2-135m-instruct")
    prompt = encode_prompt(tok, "Compute 1 + 2.")
    canonical = tok("1 + 2 = 3", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    the = tok(" the", add_special_tokens=False)["input_ids"]
    split = tok(" t", add_special_tokens=False)["input_ids"] + tok("he", add_special_tokens=False)["input_ids"]
    assert len(the) == 1 and len(split) == 2  # " t" + "he" is a tokenization the text " the" never gives back
    odd = split + [tok.eos_token_id]
    batch = collate([prompt + canonical, prompt + odd], [len(prompt)] * 2, tok.eos_token_id)
    rows = torch.tensor([True, True])
    server = OpenAICompatTeacher(url, "smollm2", tokenizer=tok, max_retries=1)
    local = LlamaCppTeacher(gguf, n_ctx=1024, n_threads=1)
    try:
        served = ServedTeacher(server, tok)
        values, ok = served.token_logprobs(batch, rows)
        assert server._accepts_ids is False  # llama-cpp-python takes text only: decoded, checked piece by piece
        assert ok.tolist() == [True, False] and served.mismatched == 1
        in_process = ServedTeacher(local, tok)  # the in-process backend takes the ids themselves
        reference, both = in_process.token_logprobs(batch, rows)
        assert both.tolist() == [True, True]
        n = len(canonical)
        assert torch.allclose(values[:n], reference[:n], atol=0.05), (values[:n], reference[:n])
        assert bool((values[:n] < 0).all()) and bool((values[n:] == 0).all())
    finally:
        server.close()
        local.close()
