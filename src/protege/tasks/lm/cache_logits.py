"""The ``cache_logits`` stage: run the hf teacher over every ``prompt + response`` and fill the logit cache.

The teacher runs once, without gradients, in the dtype its recipe section gives; its output projection is
applied only at response positions, a few hundred rows at a time, so the full (batch, length, vocabulary)
logits never exist. The cache itself is the resumable store here (logits are too large for the ledger): a
re-run skips every sequence already in a written shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import Field

from protege.core.errors import UserError
from protege.core.section import Section
from protege.tasks.lm import tables
from protege.losses.teachers import TopKTeacher, topk_from_logits
from protege.core import console
from protege.data.logit_cache import CacheStamp, LogitCache, LogitCacheWriter
from protege.train.lm_data import encode_pair

if TYPE_CHECKING:
    from protege.losses.teachers import TopKTeacher
    from protege.stage import StageContext
    from protege.core.run import Run


class CacheLogitsConfig(Section):
    """Which responses to cache and how much of each teacher distribution to keep."""

    k: int = Field(32, ge=1, description="Most likely tokens kept per position (the rest is one tail bucket).")
    temperature: float = Field(
        1.0, gt=0, description="Distillation temperature; the cache holds the teacher's distribution at it."
    )
    max_length: int = Field(512, ge=2, description="Longest prompt + response, in tokens; longer ones are cut.")
    batch_size: int = Field(8, ge=1, description="Sequences per teacher forward pass.")
    splits: list[str] = Field(["train"], min_length=1, description="Splits of the responses table to cache.")
    shard_tokens: int = Field(65536, ge=1, description="Response tokens per shard file (the unit of resumption).")


def cache_dir(run: "Run") -> Path:
    """Where a run keeps its teacher-logit cache."""
    return run.artifacts / tables.LOGIT_CACHE


def response_topk(
    model: Any, pairs: Sequence[tuple[list[int], int]], *, k: int, temperature: float, pad_token_id: int,
    chunk_rows: int = 256,
) -> list["TopKTeacher"]:
    """The teacher's top-k at every response position of each ``(input_ids, prompt_len)`` pair: row r predicts
    token prompt_len + r."""
    import torch


    device = next(model.parameters()).device
    width = max(len(seq) for seq, _ in pairs)
    ids = torch.full((len(pairs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (seq, _) in enumerate(pairs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    with torch.inference_mode():
        hidden = model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        # Position t predicts token t + 1, so a response starting at prompt_len is predicted from prompt_len - 1.
        spans = [hidden[row, n_prompt - 1 : len(seq) - 1] for row, (seq, n_prompt) in enumerate(pairs)]
        rows = torch.cat(spans)
        head = model.get_output_embeddings()
        parts = [topk_from_logits(head(rows[s : s + chunk_rows]).float(), k, temperature=temperature)
                 for s in range(0, rows.shape[0], chunk_rows)]
    top_ids = torch.cat([p.ids for p in parts]).cpu()
    top_lp = torch.cat([p.logprobs for p in parts]).cpu()
    tail = torch.cat([p.tail_logprob for p in parts]).cpu()
    out, start = [], 0
    for span in spans:
        end = start + span.shape[0]
        out.append(TopKTeacher(top_ids[start:end], top_lp[start:end], tail[start:end]))
        start = end
    return out


def run(ctx: "StageContext") -> dict:
    cfg: CacheLogitsConfig = ctx.config
    model, tokenizer = ctx.teacher_weights()
    responses = ctx.run.records.read(tables.RESPONSES)
    if responses.empty:
        raise UserError("cache_logits needs teacher responses: add a 'respond' stage before it")
    responses = responses[responses["split"].isin(cfg.splits)]
    stamp = CacheStamp.make(ctx.teacher.model_id, tokenizer, vocab_size=model.get_output_embeddings().weight.shape[0],
                            temperature=cfg.temperature, k=cfg.k)
    skipped = 0
    with LogitCacheWriter(cache_dir(ctx.run), stamp, shard_positions=cfg.shard_tokens) as writer:
        done = writer.done()
        todo = []
        for row in responses.to_dict("records"):
            if row["id"] in done:
                continue
            seq, n_prompt = encode_pair(tokenizer, row["prompt"], row["response"], cfg.max_length)
            if len(seq) <= n_prompt:
                skipped += 1
                continue
            todo.append((row["id"], (seq, n_prompt)))
        todo.sort(key=lambda item: len(item[1][0]))  # similar lengths together: less padding
        with console.progress("teacher logits to cache", len(todo)) as advance:
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                tops = response_topk(model, [p for _, p in batch], k=cfg.k, temperature=cfg.temperature,
                                     pad_token_id=tokenizer.pad_token_id)
                for (rid, (seq, n_prompt)), top in zip(batch, tops, strict=True):
                    writer.add(rid, seq, n_prompt, top)
                advance(len(batch))
    cache = LogitCache(cache_dir(ctx.run))
    return {
        "sequences": len(cache), "cached_now": len(todo), "response_tokens": cache.num_response_tokens,
        "skipped_no_response_token": skipped, "bytes": cache.num_bytes,
        "bytes_per_token": round(cache.bytes_per_token(), 1),
    }
