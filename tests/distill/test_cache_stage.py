"""prompts -> respond -> cache_logits with a tiny hf teacher: the cache covers every response, a re-run adds
nothing, and the batches train the student with CachedKD."""

from __future__ import annotations

import pytest
import torch

from protege.data.logit_cache import LogitCache
from protege.models.hf import HFTeacher
from protege.models.ledgered import LedgeredTeacher
from protege.pipeline import StageContext
from protege.recipe import Recipe
from protege.run import Run
from protege.synth import prompts as prompts_stage
from protege.synth import respond as respond_stage
from protege.synth.prompts import PromptsConfig
from protege.synth.respond import RespondConfig
from protege.train import cache_logits
from protege.train.cache_logits import CacheLogitsConfig, cache_dir
from protege.train.cached_source import CachedTeacherSource
from protege.train.lm_data import encode_pair


def _ctx(run, recipe, name, teacher) -> StageContext:
    ctx = StageContext(recipe=recipe, run=run, name=name)
    ctx.__dict__["teacher"] = teacher
    return ctx


def test_cache_stage_fills_the_cache_and_resumes(tmp_path, tokenizer, teacher_model):
    recipe = Recipe(
        name="t", run_dir=tmp_path, prompts=PromptsConfig(texts=["the movie was", "what is two plus three?",
                                                                  "a terrible film"]),
        respond=RespondConfig(n=2, temperature=1.0, max_new_tokens=12, drop_truncated=False),
        cache_logits=CacheLogitsConfig(k=8, batch_size=2, shard_tokens=20, max_length=64),
    )
    run = Run(tmp_path)
    teacher = LedgeredTeacher(HFTeacher(teacher_model, tokenizer, model_id="tiny"), run.ledger)
    prompts_stage.run(_ctx(run, recipe, "prompts", teacher))
    respond_stage.run(_ctx(run, recipe, "respond", teacher))
    summary = cache_logits.run(_ctx(run, recipe, "cache_logits", teacher))
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

    again = cache_logits.run(_ctx(run, recipe, "cache_logits", teacher))
    assert again["cached_now"] == 0 and again["sequences"] == 6

    source = CachedTeacherSource.open(cache_dir(run), tokenizer, len(tokenizer), temperature=1.0)
    batch = source.batch(list(range(len(source))))
    assert int(batch["loss_mask"].sum()) == cache.num_response_tokens
    assert torch.isfinite(batch["teacher_topk_logprobs"][batch["loss_mask"]]).all()


def test_cache_logits_refuses_a_teacher_without_logits(tmp_path):
    class Remote:
        backend = "openai"
        model_id = "served"

    recipe = Recipe(name="t", run_dir=tmp_path, cache_logits=CacheLogitsConfig())
    with pytest.raises(ValueError, match="only the hf backend"):
        cache_logits.run(_ctx(Run(tmp_path), recipe, "cache_logits", Remote()))
