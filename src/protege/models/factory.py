"""Build the teacher a recipe names: one place that maps a :class:`TeacherConfig` to a backend."""

from __future__ import annotations

import torch

from protege.core.errors import UserError
from protege.models.base import Teacher
from protege.models.config import TeacherConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_teacher(config: TeacherConfig) -> Teacher:
    """A ready teacher for ``config.backend``; heavy libraries are imported only for the backend chosen."""
    if config.backend == "hf":
        from protege.models.hf import HFTeacher

        return HFTeacher.load(config.model, dtype=_DTYPES[config.dtype], batch_size=config.batch_size)
    if config.backend == "llamacpp":
        from protege.models.llamacpp import LlamaCppTeacher

        return LlamaCppTeacher(config.model, n_ctx=config.n_ctx, n_threads=config.n_threads)
    if config.backend == "openai":
        from protege.models.openai_compat import OpenAICompatTeacher

        if not config.base_url:
            raise UserError(
                "teacher.backend 'openai' needs teacher.base_url, e.g. http://127.0.0.1:8000/v1 for a local "
                "vLLM or llama.cpp server, or https://api.openai.com/v1"
            )
        tokenizer = None
        if config.tokenizer:
            from protege.models.zoo import load_tokenizer

            tokenizer = load_tokenizer(config.tokenizer)
        return OpenAICompatTeacher(
            config.base_url,
            config.model,
            api_key_env=config.api_key_env,
            max_concurrency=config.max_concurrency,
            max_retries=config.max_retries,
            timeout_s=config.timeout_s,
            tokenizer=tokenizer,
            extra_body=config.extra_body,
        )
    raise UserError(f"unknown teacher backend {config.backend!r}; choose hf, llamacpp or openai")
