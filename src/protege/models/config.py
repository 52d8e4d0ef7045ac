"""Typed configuration of a teacher, as it appears in a recipe's ``teacher:`` section."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from protege.core.section import PATH


class TeacherConfig(BaseModel):
    """Which teacher model to use and how to reach it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    backend: Literal["hf", "openai", "llamacpp"] = Field(
        "hf", description="hf: in-process transformers (full logits); openai: any OpenAI-compatible server; "
        "llamacpp: a GGUF file through llama-cpp-python."
    )
    model: str = Field(
        "smollm2-135m-instruct",
        description="Embedded model name, local path, hub id, GGUF path, or the served model name for openai.",
        json_schema_extra=PATH,
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="hf: weights dtype.")
    batch_size: int = Field(8, ge=1, description="Prompts per backend call; also how often answers are saved.")
    base_url: Optional[str] = Field(None, description="openai: server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: name of the environment variable holding the API key (never stored)."
    )
    max_concurrency: int = Field(4, ge=1, description="openai: requests in flight at once.")
    max_retries: int = Field(5, ge=0, description="openai: retries on 429, 5xx, timeouts, with exponential backoff.")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds before a request is abandoned and retried.")
    n_ctx: int = Field(2048, ge=128, description="llamacpp: context window.")
    n_threads: Optional[int] = Field(
        None, ge=1, description="llamacpp: CPU threads for sampling and prompt evaluation (default: llama.cpp's "
        "choice). On a CPU shared with other work, 1 can be far faster than spinning threads competing for cores.",
    )
    tokenizer: Optional[str] = Field(
        None,
        description="openai: the served model's tokenizer (embedded name, path or hub id), needed to score chat "
        "prompts (rendered locally for /completions) and to map returned token text to ids for top-k.",
        json_schema_extra=PATH,
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="openai: extra JSON fields sent with every request, for server-specific options "
        "(e.g. vLLM's {return_tokens_as_token_ids: true}).",
    )
    price_input_per_million: float = Field(0.0, ge=0, description="Cost per million prompt tokens (for reports).")
    price_output_per_million: float = Field(0.0, ge=0, description="Cost per million generated tokens.")

    def named_models(self) -> dict[str, str]:
        """Models this section names, by key, that must exist before anything is spent (the preflight checks
        them); a served model's name is the server's business."""
        named = {"model": self.model} if self.backend != "openai" else {}
        if self.tokenizer:
            named["tokenizer"] = self.tokenizer
        return named
