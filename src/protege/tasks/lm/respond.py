"""The ``respond`` stage: the teacher answers every prompt, n times, and the answers become the ``responses`` table.

This is the data of sequence-level KD: the student is later fine-tuned on ``prompt -> response`` with the loss
on the response tokens only. Every generation goes through the ledger, and answers are saved a chunk of prompts
at a time, so an interrupted stage resumes with the chunks it has not finished and pays for no answer twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pydantic import Field, model_validator

from protege.core.errors import UserError
from protege.core import console
from protege.models.base import SamplingParams
from protege.core.section import Section
from protege.core.records import record_id
from protege.tasks.lm import tables
from protege.tasks.lm.prompts import chat_prompt

if TYPE_CHECKING:
    import pandas as pd

    from protege.core.run import Run
    from protege.stage import StageContext

CARRIED = ("prompt", "split", "source")  # prompt columns every response row repeats


class RespondConfig(Section):
    """How the teacher answers the prompts."""

    n: int = Field(1, ge=1, description="Responses sampled per prompt.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(256, ge=1, description="Longest response, in teacher tokens.")
    stop: list[str] = Field(default_factory=list, description="Strings that end a response (not kept in it).")
    seed: Optional[int] = Field(None, description="Sampling seed; defaults to the recipe's seed.")
    splits: list[str] = Field(["train"], min_length=1, description="Prompt splits to answer.")
    drop_truncated: bool = Field(
        True, description="Leave out responses cut by max_new_tokens: trained on, they end mid-answer with EOS."
    )
    chunk_size: int = Field(32, ge=1, description="Prompts per teacher request; answers are saved after each.")

    @model_validator(mode="after")
    def _samples_differ(self) -> "RespondConfig":
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n={self.n} with temperature=0: greedy decoding gives the same response every "
                             "time; set temperature > 0 (e.g. 0.7) or n: 1")
        return self


def sampling_params(cfg: RespondConfig, recipe_seed: int) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, n=cfg.n,
        seed=recipe_seed if cfg.seed is None else cfg.seed, stop=tuple(cfg.stop),
    )


def run(ctx: "StageContext") -> dict:
    cfg: RespondConfig = ctx.config
    every = ctx.run.records.read(tables.PROMPTS)
    if every.empty:
        raise UserError("respond needs prompts: add a 'prompts' section to the recipe (a file or inline texts)")
    prompts = every[every["split"].isin(cfg.splits)]
    if prompts.empty:
        raise UserError(f"no prompt is in the splits {cfg.splits}; the prompts table has splits "
                         f"{sorted(every['split'].unique())}")
    params = sampling_params(cfg, ctx.seed)
    teacher = ctx.teacher
    teacher_name = f"{teacher.backend}:{teacher.model_id}"
    answered = set(ctx.run.records.read(tables.RESPONSES)["parent_id"])
    todo = [row for row in prompts.to_dict("records") if row["id"] not in answered]
    written = dropped = 0
    with console.progress("teacher answers prompts", len(prompts)) as advance:
        advance(len(prompts) - len(todo))
        for start in range(0, len(todo), cfg.chunk_size):
            chunk = todo[start : start + cfg.chunk_size]
            answers = teacher.generate([chat_prompt(row["prompt"]) for row in chunk], params)
            rows = []
            for prompt_row, gens in zip(chunk, answers, strict=True):
                for j, gen in enumerate(gens):
                    if cfg.drop_truncated and gen.finish_reason == "length":
                        dropped += 1
                        continue
                    rows.append({
                        "id": record_id(prompt_row["id"], teacher_name, params.to_dict(), j),
                        **{col: prompt_row[col] for col in CARRIED},
                        "response": gen.text,
                        "sample": j,
                        "finish_reason": gen.finish_reason,
                        "prompt_tokens": gen.prompt_tokens,
                        "completion_tokens": gen.completion_tokens,
                        "teacher": teacher_name,
                        "prompt_hash": record_id(chat_prompt(prompt_row["prompt"])),
                        "parent_id": prompt_row["id"],
                    })
            # A prompt whose answers were all dropped is asked again on resume; the ledger answers it for free.
            written += ctx.run.records.append(tables.RESPONSES, rows, stage=ctx.name)
            advance(len(chunk))
    write_messages(ctx.run, ctx.run.records.read(tables.RESPONSES))
    return {
        "prompts": len(prompts), "answered_now": len(todo), "responses_written": written,
        "dropped_truncated": dropped, "teacher_calls": teacher.stats.misses, "ledger_hits": teacher.stats.hits,
    }


def write_messages(run: "Run", responses: "pd.DataFrame") -> int:
    """``artifacts/responses.messages.jsonl``: one ``{"messages": [user, assistant], "split": ...}`` per answer,
    the chat format TRL's SFT trainer and LLaMA-Factory read."""
    import json

    lines = [json.dumps({"messages": [*chat_prompt(row["prompt"]), {"role": "assistant", "content": row["response"]}],
                         "split": row["split"]}, ensure_ascii=False)
             for row in responses.to_dict("records")]
    target = run.artifact(tables.MESSAGES)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(target)
    return len(lines)
