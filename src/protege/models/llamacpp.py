"""The ``llamacpp`` teacher backend: a GGUF model through llama-cpp-python (optional extra), fast CPU sampling.

Scoring and top-k read the logits llama.cpp leaves after ``eval`` (``Llama.scores``), not the prompt logprobs
of ``create_completion(echo=True)``: llama-cpp-python pairs each echoed token with the distribution that
*follows* it, which is off by one.
"""

from __future__ import annotations

import os
import random
from typing import Any, Sequence

import numpy as np
import torch

from protege.models.base import BackendError, Generation, Prompt, SamplingParams, TopK, is_token_ids
from protege.models.hf import tail_logprob

INSTALL_HINT = (
    "the llamacpp backend needs llama-cpp-python: pip install 'protege[llamacpp]'. On CPUs whose instructions "
    "a VM refuses (SIGILL at load), build it portably: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX=ON "
    "-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\" pip install --no-cache-dir 'llama-cpp-python[server]'"
)


def import_llama_cpp() -> Any:
    """llama_cpp, imported only when this backend is used."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendError(INSTALL_HINT) from exc
    return llama_cpp


def gguf_path(name_or_path: str | os.PathLike[str]) -> str:
    """The .gguf file behind an embedded name or a local path."""
    from protege.models.resolve import resolve

    resolved = resolve(name_or_path)
    if resolved.gguf_file is None or (resolved.embedded and resolved.embedded.name != "smollm2-135m-instruct"):
        raise BackendError(
            f"the llamacpp backend loads .gguf files; {resolved.name!r} is not one. Give a .gguf path or the "
            "embedded teacher 'smollm2-135m-instruct', or use backend 'hf' for other models"
        )
    return os.path.join(resolved.location, resolved.gguf_file)


def _log_softmax(rows: np.ndarray) -> torch.Tensor:
    return torch.log_softmax(torch.from_numpy(np.asarray(rows, dtype=np.float32)), dim=-1)


class LlamaCppTeacher:
    """A GGUF model in this process through llama-cpp-python. Not thread-safe: one call at a time."""

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
    ):
        llama_cpp = import_llama_cpp()
        self._path = gguf_path(name_or_path)
        from protege.models.resolve import resolve

        self._model_id = resolve(name_or_path).model_id
        # logits_all: scoring reads every position's logits, and generation logprobs need them too.
        self._llm = llama_cpp.Llama(
            model_path=self._path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            # The same bound for prompt evaluation: llama.cpp would otherwise take every core for it.
            n_threads_batch=n_threads,
            logits_all=True,
            verbose=False,
        )
        template = self._llm.metadata.get("tokenizer.chat_template")
        self._chat = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            vocab = self._llm
            self._chat = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.detokenize([vocab.token_eos()], special=True).decode(errors="replace"),
                bos_token=vocab.detokenize([vocab.token_bos()], special=True).decode(errors="replace"),
                add_generation_prompt=True,
            )

    @property
    def backend(self) -> str:
        return "llamacpp"

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def llm(self) -> Any:
        return self._llm

    @property
    def context_length(self) -> int:
        return int(self._llm.n_ctx())

    def close(self) -> None:
        """Free the model now rather than at interpreter exit, where llama-cpp-python's finaliser can fail."""
        self._llm.close()

    # ------------------------------------------------------------------------------------------ tokens

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if self._chat is None:
            raise ValueError(f"{self._model_id} has no chat template in its GGUF metadata; pass raw-text prompts")
        return self._chat(messages=list(prompt)).prompt

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt).encode()
        # A rendered chat holds its own special tokens as text; raw text gets the model's usual BOS.
        ids = self._llm.tokenize(text, add_bos=isinstance(prompt, str), special=not isinstance(prompt, str))
        if not ids:
            raise ValueError(f"{self._model_id}: an empty prompt gives no context to condition on")
        return list(ids)

    def encode_continuation(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=False)) if text else []

    def _check_fits(self, n: int) -> None:
        if n > self._llm.n_ctx():
            raise ValueError(f"{n} tokens exceed the llamacpp context of {self._llm.n_ctx()}: raise n_ctx")

    # ------------------------------------------------------------------------------------------ Teacher

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        """``params.n`` samples per prompt; sample ``j`` uses seed ``seed + j`` so each is reproducible."""
        out = []
        for prompt in prompts:
            ids = self.encode_prompt(prompt)
            out.append([self._sample(ids, params, j) for j in range(params.n)])
        return out

    def _sample(self, ids: list[int], params: SamplingParams, j: int) -> Generation:
        seed = params.seed + j if params.seed is not None else random.getrandbits(31)
        answer = self._llm.create_completion(
            prompt=ids,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            # llama.cpp filters with top-k 40 and min-p 0.05 by default; turn both off so sampling means what
            # it means for the other backends (temperature and nucleus only).
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            seed=seed,
            stop=list(params.stop) or None,
            logprobs=params.top_logprobs or None,
        )
        choice = answer["choices"][0]
        usage = answer["usage"]
        lp = choice.get("logprobs")
        return Generation(
            text=choice["text"],
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            tokens=list(lp["tokens"]) if lp else None,
            token_logprobs=[float(v) for v in lp["token_logprobs"]] if lp else None,
            top_logprobs=[{t: float(v) for t, v in (r or {}).items()} for r in lp["top_logprobs"]] if lp else None,
        )

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Summed log-probability per candidate; the prompt is evaluated once and its KV cache kept while each
        candidate is evaluated after it."""
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} candidate lists")
        out = []
        for prompt, cands in zip(prompts, continuations):
            ids = self.encode_prompt(prompt)
            self._llm.reset()
            self._check_fits(len(ids))
            self._llm.eval(ids)
            first = _log_softmax(self._llm.scores[len(ids) - 1])
            row_scores = []
            for cand in cands:
                cont = self.encode_continuation(cand)
                if not cont:
                    row_scores.append(0.0)
                    continue
                self._check_fits(len(ids) + len(cont))
                self._llm.n_tokens = len(ids)  # eval drops cached positions from here on
                self._llm.eval(cont)
                total = float(first[cont[0]])
                if len(cont) > 1:
                    rows = _log_softmax(self._llm.scores[len(ids) : len(ids) + len(cont) - 1])
                    total += float(rows.gather(-1, torch.tensor(cont[1:])[:, None]).sum())
                row_scores.append(total)
            out.append(row_scores)
        return out

    def topk_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str], k: int) -> list[TopK]:
        if len(prompts) != len(completions):
            raise ValueError(f"topk_logprobs: {len(prompts)} prompts but {len(completions)} completions")
        out = []
        for prompt, completion in zip(prompts, completions):
            seq = (list(prompt) + list(completion) if is_token_ids(completion)
                   else self.encode_prompt(prompt) + self.encode_continuation(completion))
            self._check_fits(len(seq))
            self._llm.reset()
            self._llm.eval(seq)
            logp = _log_softmax(self._llm.scores[: len(seq) - 1])
            top = torch.topk(logp, min(k, logp.shape[-1]), dim=-1)
            token_lp = logp.gather(-1, torch.tensor(seq[1:], dtype=torch.long)[:, None]).squeeze(-1)
            out.append(
                TopK(
                    token_ids=seq,
                    ids=top.indices.tolist(),
                    logprobs=top.values.tolist(),
                    token_logprobs=token_lp.tolist(),
                    tail_logprob=tail_logprob(top.values).tolist(),
                )
            )
        return out
