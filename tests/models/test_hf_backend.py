"""The in-process transformers teacher, on a tiny random llama so every number can be checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from protege.models.base import SamplingParams, Teacher
from protege.models.hf import HFTeacher


@pytest.fixture
def teacher(tiny_llama, tiny_tokenizer) -> HFTeacher:
    return HFTeacher(tiny_llama, tiny_tokenizer, model_id="tiny", batch_size=3)


def naive_score(model, prompt_ids: list[int], cont_ids: list[int]) -> float:
    """Score a continuation by running the full sequence, no cache: the reference the fast path must match."""
    ids = torch.tensor([prompt_ids + cont_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    start = len(prompt_ids)
    return sum(float(logp[start + j - 1, t]) for j, t in enumerate(cont_ids))


def test_is_a_teacher(teacher):
    assert isinstance(teacher, Teacher)
    assert teacher.backend == "hf" and teacher.model_id == "tiny"


def test_score_with_shared_prompt_cache_equals_naive_scoring(teacher, tiny_llama):
    prompts = ["the movie was great. sentiment:", [{"role": "user", "content": "a boring film. label?"}]]
    cands = [[" positive", " negative", " neutral sentiment label", ""], [" positive", "x"]]
    got = teacher.score(prompts, cands)
    for prompt, row_cands, row in zip(prompts, cands, got):
        p_ids = teacher.encode_prompt(prompt)
        for cand, value in zip(row_cands, row):
            want = naive_score(tiny_llama, p_ids, teacher.encode_continuation(cand))
            assert value == pytest.approx(want, abs=1e-4), (prompt, cand)
    assert got[0][3] == 0.0  # empty continuation


def test_score_chunks_candidates_beyond_batch_size(teacher, tiny_llama):
    cands = [" a", " bb", " the answer is five", " review", " movie", " terrible film"]  # 6 > batch_size 3
    got = teacher.score(["what is two plus three?"], [cands])[0]
    p_ids = teacher.encode_prompt("what is two plus three?")
    want = [naive_score(tiny_llama, p_ids, teacher.encode_continuation(c)) for c in cands]
    assert got == pytest.approx(want, abs=1e-4)


def test_chat_prompt_uses_chat_template(teacher):
    text = teacher.render([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_topk_logprobs_shapes_and_normalisation(teacher, tiny_llama, tiny_tokenizer):
    prompts = ["the movie", [{"role": "user", "content": "what is two plus three?"}], "a"]
    comps = [" was great", " five", " terrible film, boring and far too long"]
    k = 5
    out = teacher.topk_logprobs(prompts, comps, k)
    assert len(out) == 3
    for prompt, comp, tk in zip(prompts, comps, out):
        seq = teacher.encode_prompt(prompt) + teacher.encode_continuation(comp)
        assert tk.token_ids == seq
        rows = len(seq) - 1
        assert len(tk.ids) == len(tk.logprobs) == len(tk.token_logprobs) == len(tk.tail_logprob) == rows
        with torch.no_grad():
            ref = torch.log_softmax(tiny_llama(input_ids=torch.tensor([seq])).logits[0].double(), -1)
        for i in range(rows):
            assert len(tk.ids[i]) == k
            assert tk.logprobs[i] == sorted(tk.logprobs[i], reverse=True)
            assert tk.ids[i] == ref[i].topk(k).indices.tolist()
            assert tk.logprobs[i] == pytest.approx(ref[i].topk(k).values.tolist(), abs=1e-5)
            assert tk.token_logprobs[i] == pytest.approx(float(ref[i, seq[i + 1]]), abs=1e-5)
            total = sum(math.exp(v) for v in tk.logprobs[i]) + math.exp(tk.tail_logprob[i])
            assert total == pytest.approx(1.0, abs=1e-5)


def test_topk_with_whole_vocabulary_has_no_tail(teacher, tiny_tokenizer):
    tk = teacher.topk_logprobs(["the movie"], [" was"], k=10_000)[0]
    assert len(tk.ids[0]) == len(tiny_tokenizer)
    assert all(t == float("-inf") or t < -10 for t in tk.tail_logprob)


def test_generate_n_samples_seeded_and_reproducible(teacher):
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=7)
    prompts = ["the movie", [{"role": "user", "content": "hi"}], "a terrible", "review:"]  # 2 batches
    first = teacher.generate(prompts, params)
    again = teacher.generate(prompts, params)
    assert [[g.text for g in row] for row in first] == [[g.text for g in row] for row in again]
    assert all(len(row) == 3 for row in first)
    assert len({g.text for row in first for g in row}) > 3  # sampling actually varies
    for row in first:
        for g in row:
            assert 1 <= g.completion_tokens <= 6 and g.prompt_tokens > 0
            assert g.finish_reason in {"stop", "length"}
    other = teacher.generate(prompts, SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=8))
    assert [[g.text for g in r] for r in other] != [[g.text for g in r] for r in first]


def test_generate_leaves_global_rng_alone(teacher):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    teacher.generate(["the movie"], SamplingParams(max_new_tokens=3, temperature=1.0, seed=1))
    assert torch.equal(torch.rand(1), expected)


def test_greedy_generation_matches_argmax_and_left_padding(teacher, tiny_llama):
    params = SamplingParams(max_new_tokens=4, temperature=0.0, n=2)
    prompts = ["a", "the movie was great and the acting"]  # very different lengths: left padding matters
    out = teacher.generate(prompts, params)
    for prompt, row in zip(prompts, out):
        assert row[0].text == row[1].text
        ids = teacher.encode_prompt(prompt)
        for _ in range(row[0].completion_tokens):
            with torch.no_grad():
                nxt = int(tiny_llama(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(nxt)
            if nxt == 2:
                break
        assert row[0].text == teacher.tokenizer.decode(ids[len(teacher.encode_prompt(prompt)) :],
                                                       skip_special_tokens=True)


def test_stop_strings_cut_the_text(teacher):
    params = SamplingParams(max_new_tokens=8, temperature=0.0)
    full = teacher.generate(["the movie"], params)[0][0].text
    assert len(full) > 2
    stop = full[1:3]
    cut = teacher.generate(["the movie"], SamplingParams(max_new_tokens=8, temperature=0.0, stop=(stop,)))[0][0]
    assert cut.text == full[: full.find(stop)] and cut.finish_reason == "stop"


def test_forward_logits_and_hidden_states(teacher, tiny_llama):
    ids = torch.tensor([[5, 6, 7, 8]])
    logits = teacher.forward_logits(ids)
    assert logits.shape == (1, 4, tiny_llama.config.vocab_size)
    hidden = teacher.forward_hidden_states(ids)
    assert len(hidden) == tiny_llama.config.num_hidden_layers + 1
    assert hidden[-1].shape == (1, 4, 32)


def test_mismatched_lengths_are_rejected(teacher):
    with pytest.raises(ValueError, match="2 prompts but 1"):
        teacher.score(["a", "b"], [[" x"]])


def test_generation_logprobs_match_a_forward_pass(teacher, tiny_llama):
    params = SamplingParams(max_new_tokens=5, temperature=0.8, n=2, seed=3, top_logprobs=4)
    gens = teacher.generate(["the movie"], params)[0]
    # The same draw made directly, to know the token ids behind the (often byte-fragment) pieces.
    prompt = torch.tensor([teacher.encode_prompt("the movie")])
    torch.manual_seed(3)
    drawn = tiny_llama.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5,
                                do_sample=True, temperature=0.8, top_k=0, top_p=1.0, num_return_sequences=2,
                                pad_token_id=2)
    for gen, seq in zip(gens, drawn):
        n = len(gen.tokens)
        assert n == len(gen.token_logprobs) == len(gen.top_logprobs) >= 1
        assert gen.tokens == [teacher.tokenizer.decode([t]) for t in seq[prompt.shape[1] :][:n].tolist()]
        with torch.no_grad():
            ref = torch.log_softmax(tiny_llama(input_ids=seq[None]).logits[0].double(), -1)
        for j, (lp, row) in enumerate(zip(gen.token_logprobs, gen.top_logprobs)):
            dist = ref[prompt.shape[1] - 1 + j]
            assert lp == pytest.approx(float(dist[seq[prompt.shape[1] + j]]), abs=1e-4)
            top = dist.topk(4).values.tolist()
            assert max(row.values()) == pytest.approx(top[0], abs=1e-4)
            assert all(min(abs(v - t) for t in top) < 1e-4 for v in row.values())  # pieces may collide


def test_single_token_candidates_of_many_prompts_score_in_one_padded_batch(teacher, tiny_llama):
    prompts = ["a", "the movie was long and the ending made no sense at all. sentiment:",
               [{"role": "user", "content": "a boring film. label?"}], "what is two plus three?"]
    cands = [" a", " the", "x"]
    assert all(len(teacher.encode_continuation(c)) == 1 for c in cands)  # the batched path applies
    calls = []
    hook = tiny_llama.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape),
                                                with_kwargs=True)
    got = teacher.score(prompts, [cands] * len(prompts))
    hook.remove()
    assert [shape[0] for shape in calls] == [3, 1]  # batch_size 3: two padded passes, no per-candidate pass
    for prompt, row in zip(prompts, got):
        p_ids = teacher.encode_prompt(prompt)
        want = [naive_score(tiny_llama, p_ids, teacher.encode_continuation(c)) for c in cands]
        assert row == pytest.approx(want, abs=1e-4), prompt


def test_multi_token_candidates_of_many_prompts_score_in_two_batched_passes(teacher, tiny_llama):
    prompts = ["a", "the movie was long and the ending made no sense at all. sentiment:",
               [{"role": "user", "content": "a boring film. label?"}]]
    cands = [" positive", " terrible film", "x", " the answer is five", ""]
    calls = []
    hook = tiny_llama.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape),
                                                with_kwargs=True)
    got = teacher.score(prompts, [cands] * len(prompts))
    hook.remove()
    longer = sum(len(teacher.encode_continuation(c)) > 1 for c in cands)
    assert longer >= 2
    # one padded pass over the 3 prompts, one over every longer candidate of every prompt: not one per prompt
    assert [shape[0] for shape in calls] == [3, 3 * longer]
    for prompt, row in zip(prompts, got):
        p_ids = teacher.encode_prompt(prompt)
        want = [naive_score(tiny_llama, p_ids, teacher.encode_continuation(c)) for c in cands]
        assert row == pytest.approx(want, abs=1e-4), prompt
