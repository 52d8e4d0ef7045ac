"""The teacher-logit cache: exact round trip at fp16 precision, the tail mass, shards, resumption, refusals."""

from __future__ import annotations

import math

import pytest
import torch

from protege.data.logit_cache import CacheMismatchError, CacheStamp, LogitCache, LogitCacheWriter
from protege.losses import topk_divergence
from protege.tasks.lm.cache_logits import response_topk
from protege.train.cached_source import CachedTeacherSource
from protege.train.lm_objectives import CachedKD, DistillConfig

from tiny import build_llama

K = 8


def _stamp(tokenizer, k: int = K, temperature: float = 2.0) -> CacheStamp:
    return CacheStamp.make("tiny-teacher", tokenizer, vocab_size=len(tokenizer), temperature=temperature, k=k)


def _sequences(n: int, vocab: int, seed: int = 0) -> list[tuple[str, list[int], int, torch.Tensor]]:
    """(id, input_ids, prompt_len, logits over the response positions) with uneven lengths."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(4, 20, (1,), generator=gen))
        prompt = int(torch.randint(1, length - 1, (1,), generator=gen))
        ids = torch.randint(0, vocab, (length,), generator=gen).tolist()
        logits = torch.randn(length - prompt, vocab, generator=gen) * 3
        out.append((f"seq{i}", ids, prompt, logits))
    return out


def test_round_trip_keeps_topk_within_fp16_and_the_exact_tail(tmp_path, tokenizer):
    vocab = len(tokenizer)
    seqs = _sequences(7, vocab)
    with LogitCacheWriter(tmp_path, _stamp(tokenizer), shard_positions=20) as writer:
        for sid, ids, prompt, logits in seqs:
            writer.add_logits(sid, ids, prompt, logits)
    cache = LogitCache(tmp_path)
    assert len(cache) == 7 and len(list(tmp_path.glob("shard-*.safetensors"))) > 1
    for i, (sid, ids, prompt, logits) in enumerate(seqs):
        got = cache.sequence(i)
        assert got.id == sid and got.input_ids.tolist() == ids and got.prompt_len == prompt
        logp = torch.log_softmax(logits.double() / 2.0, dim=-1)
        top, top_ids = logp.topk(K, dim=-1)
        assert torch.equal(got.teacher.ids, top_ids)
        torch.testing.assert_close(got.teacher.logprobs.double(), top, atol=2e-2, rtol=2e-3)
        exact_tail = torch.log1p(-top.exp().sum(-1))
        torch.testing.assert_close(got.teacher.tail_logprob.double(), exact_tail, atol=2e-2, rtol=2e-3)
        total = got.teacher.logprobs.double().exp().sum(-1) + got.teacher.tail_logprob.double().exp()
        torch.testing.assert_close(total, torch.ones_like(total), atol=5e-3, rtol=0)
    stored = sum(len(s[1]) - s[2] for s in seqs)
    assert cache.num_response_tokens == stored
    # uint16 ids + fp16 log-probs: 4 bytes per kept token and 2 for the tail, plus ids/offsets/headers.
    assert 4 * K + 2 <= cache.bytes_per_token() < 4 * K + 2 + 200


def test_writer_resumes_after_a_crash_without_duplicates(tmp_path, tokenizer):
    seqs = _sequences(6, len(tokenizer), seed=1)
    writer = LogitCacheWriter(tmp_path, _stamp(tokenizer), shard_positions=10**6)
    for sid, ids, prompt, logits in seqs[:3]:
        writer.add_logits(sid, ids, prompt, logits)
    writer.flush()
    for sid, ids, prompt, logits in seqs[3:5]:
        writer.add_logits(sid, ids, prompt, logits)
    del writer  # killed before the second shard was written: its sequences are lost, the first shard is not

    resumed = LogitCacheWriter(tmp_path, _stamp(tokenizer), shard_positions=10**6)
    assert resumed.done() == {"seq0", "seq1", "seq2"}
    with resumed:
        for sid, ids, prompt, logits in seqs:
            if sid not in resumed.done():
                resumed.add_logits(sid, ids, prompt, logits)
    cache = LogitCache(tmp_path)
    assert sorted(cache.ids) == [f"seq{i}" for i in range(6)]
    assert cache.sequence(cache.ids.index("seq4")).input_ids.tolist() == seqs[4][1]


def test_reopening_with_other_settings_is_refused(tmp_path, tokenizer):
    sid, ids, prompt, logits = _sequences(1, len(tokenizer))[0]
    with LogitCacheWriter(tmp_path, _stamp(tokenizer)) as writer:
        writer.add_logits(sid, ids, prompt, logits)
    with pytest.raises(CacheMismatchError, match=r"k: 8 != 16"):
        LogitCacheWriter(tmp_path, _stamp(tokenizer, k=16))


def test_a_student_with_one_token_changed_is_refused(tmp_path, tokenizer, renamed_tokenizer):
    sid, ids, prompt, logits = _sequences(1, len(tokenizer))[0]
    with LogitCacheWriter(tmp_path, _stamp(tokenizer)) as writer:
        writer.add_logits(sid, ids, prompt, logits)
    cache = LogitCache(tmp_path)
    cache.check_student(tokenizer, len(tokenizer))  # the teacher's own tokenizer passes
    student = renamed_tokenizer
    assert len(student) == len(tokenizer)
    with pytest.raises(CacheMismatchError, match="vocabulary") as err:
        cache.check_student(student, len(student))
    assert "sequence level" in str(err.value)
    student.chat_template = "{{ messages[0]['content'] }}"
    with pytest.raises(CacheMismatchError, match="chat template"):
        cache.check_student(student, len(student))
    with pytest.raises(CacheMismatchError, match="vocabulary size"):
        cache.check_student(tokenizer, len(tokenizer) + 64)


def test_response_topk_matches_the_full_forward(tokenizer, teacher_model):
    pairs = [([5, 6, 7, 8, 9, 10], 3), ([11, 12, 13, 14, 15, 16, 17, 18, 19], 2)]
    tops = response_topk(teacher_model, pairs, k=K, temperature=1.5, pad_token_id=0, chunk_rows=4)
    for (seq, n_prompt), top in zip(pairs, tops):
        with torch.no_grad():
            logits = teacher_model(torch.tensor([seq])).logits[0, n_prompt - 1 : len(seq) - 1]
        logp = torch.log_softmax(logits.double() / 1.5, dim=-1)
        ref, ref_ids = logp.topk(K, dim=-1)
        assert torch.equal(top.ids, ref_ids)
        torch.testing.assert_close(top.logprobs.double(), ref, atol=1e-5, rtol=1e-5)


def test_batches_align_with_the_student_and_train_cached_kd(tmp_path, tokenizer, teacher_model):
    pairs = [(list(range(3, 3 + n)), p) for n, p in ((9, 4), (14, 6), (6, 1))]
    stamp = _stamp(tokenizer, temperature=1.0)
    with LogitCacheWriter(tmp_path, stamp) as writer:
        for i, ((seq, p), top) in enumerate(zip(pairs, response_topk(teacher_model, pairs, k=K, temperature=1.0,
                                                                          pad_token_id=0))):
            writer.add(f"s{i}", seq, p, top)
    with pytest.raises(CacheMismatchError, match="temperature"):
        CachedTeacherSource.open(tmp_path, tokenizer, len(tokenizer), temperature=2.0)
    source = CachedTeacherSource.open(tmp_path, tokenizer, len(tokenizer), temperature=1.0)
    batch = source.batch([0, 1, 2])
    mask = batch["loss_mask"]
    assert int(mask.sum()) == sum(len(s) - p for s, p in pairs)
    # Every scored position carries the teacher's distribution of the *next* token.
    with torch.no_grad():
        logits = teacher_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(batch["teacher_topk_ids"][mask], logits.topk(K, dim=-1).indices[mask])
    # The teacher distilled into itself is already at the optimum: the top-k + tail divergence is ~0 ...
    objective = CachedKD(DistillConfig(kind="forward_kl"))
    self_loss, _ = objective(teacher_model, batch)
    # ... and the loss the objective computes is topk_divergence on the same positions.
    other = build_llama(len(tokenizer), layers=2, seed=7)
    loss, _ = objective(other, batch)
    with torch.no_grad():
        other_logits = other(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ref = topk_divergence(other_logits, batch["teacher_topk_ids"], batch["teacher_topk_logprobs"], mask,
                          tail_logprob=batch["teacher_tail_logprob"], kind="forward_kl", num_tokens=1)
    assert float(self_loss.detach()) < float(ref) / 100
    assert math.isclose(float(loss.detach()), float(ref), rel_tol=1e-4)
