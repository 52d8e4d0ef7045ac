"""prompts -> respond -> cache_logits with a tiny hf teacher: the cache covers every response, a re-run adds
nothing, and the batches train the student with CachedKD."""

from __future__ import annotations

import pytest
import torch

from protege.data.logit_cache import LogitCache
from protege.models.hf import HFTeacher
from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.lm.cache_logits import cache_dir
from protege.train.cached_source import CachedTeacherSource
from protege.train.lm_data import encode_pair


def _recipe(tmp_path, **cache):
    return parse_recipe({
        "name": "t", "run_dir": str(tmp_path), "teacher": {},
        "prompts": {"texts": ["the movie was", "what is two plus three?", "a terrible film"]},
        "respond": {"n": 2, "temperature": 1.0, "max_new_tokens": 12, "drop_truncated": False},
        "cache_logits": {"k": 8, "batch_size": 2, "shard_tokens": 20, "max_length": 64, **cache},
    })


def _summary(run, stage: str) -> dict:
    return next(s["summary"] for s in run.ledger.stages() if s["name"] == stage)


def test_cache_stage_fills_the_cache_and_resumes(tmp_path, tokenizer, teacher_model):
    teacher = HFTeacher(teacher_model, tokenizer, model_id="tiny")
    run = run_recipe(_recipe(tmp_path), teacher=teacher)
    summary = _summary(run, "cache_logits")
    responses = run.records.read("responses")
    assert summary["sequences"] == len(responses) == 6 and summary["cached_now"] == 6
    cache = LogitCache(cache_dir(run))
    assert cache.stamp.k == 8 and cache.stamp.teacher == "tiny" and cache.stamp.ids_dtype == "uint16"
    assert summary["bytes_per_token"] == pytest.approx(cache.bytes_per_token(), abs=0.1)
    # The cached sequence is exactly the student's SFT tokenisation of prompt + response.
    row = responses.iloc[0]
    seq, n_prompt = encode_pair(tokenizer, row["prompt"], row["response"], 64)
    cached = cache.sequence(cache.ids.index(row["id"]))
    assert cached.input_ids.tolist() == seq and cached.prompt_len == n_prompt

    # As if killed before the stage finished: the re-run resumes, keeping every shard already written.
    run.ledger.mark_stage("cache_logits", "running", signature=next(
        s["signature"] for s in run.ledger.stages() if s["name"] == "cache_logits"))
    run = run_recipe(_recipe(tmp_path), teacher=teacher)
    again = _summary(run, "cache_logits")
    assert again["cached_now"] == 0 and again["sequences"] == 6

    source = CachedTeacherSource.open(cache_dir(run), tokenizer, len(tokenizer), temperature=1.0)
    batch = source.batch(list(range(len(source))))
    assert int(batch["loss_mask"].sum()) == cache.num_response_tokens
    assert torch.isfinite(batch["teacher_topk_logprobs"][batch["loss_mask"]]).all()


def test_cache_logits_refuses_a_teacher_without_logits(tmp_path):
    class Remote:
        backend = "openai"
        model_id = "served"

    recipe = parse_recipe({"name": "t", "run_dir": str(tmp_path), "teacher": {"backend": "openai"},
                           "prompts": {"texts": ["hello"]}, "respond": {}, "cache_logits": {}})
    with pytest.raises(ValueError, match="cache_logits.*needs the teacher's weights"):
        run_recipe(recipe, teacher=Remote(), only=("cache_logits",))
