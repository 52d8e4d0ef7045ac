"""The ``hf`` teacher backend: a transformers causal LM in this process, with full logits.

Token conventions shared by ``score`` and ``topk_logprobs``: a prompt is tokenised as a whole (chat prompts are
rendered by the tokenizer's chat template with the generation prompt appended and are not given extra special
tokens); a continuation is tokenised on its own without special tokens and appended. So a verbalizer written as
``" positive"`` is scored as the tokens of ``" positive"``, whatever the prompt ends with.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Iterator, Sequence, TypeVar

import torch

from protege.models.base import Generation, Prompt, SamplingParams, TopK, is_token_ids

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def render_prompt(tokenizer: Any, prompt: Prompt, model_id: str = "model") -> str:
    """Raw text as is; a chat through the tokenizer's chat template, ready for the assistant's answer."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{model_id} has no chat template, so chat prompts (lists of messages) cannot be rendered; "
            "pass raw-text prompts or use an instruct/chat model"
        )
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def pad_batch(seqs: Sequence[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows padded with ``pad_id`` to the longest, and their attention mask.

    Left padding makes every row end at the last position, where generation or next-token scoring reads.
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def last_position_logits(model: Any, seqs: Sequence[list[int]], pad_id: int) -> torch.Tensor:
    """``(batch, vocab)`` next-token logits after each sequence, in one left-padded pass.

    ``logits_to_keep=1``: only the last position goes through the output projection; the full-vocabulary head
    over every position would cost a quarter of the forward pass and most of its memory.
    """
    ids, mask = pad_batch(seqs, pad_id, side="left")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                use_cache=False, logits_to_keep=1)
    return out.logits[:, -1]


def cache_argument(model: Any) -> str:
    """The name the model's forward takes a KV cache under: ``cache`` in transformers 5.x (where the old
    ``past_key_values`` warns on every call), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def tail_logprob(top_logprobs: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(top))) over the last dim: the mass outside the top k, ``-inf`` when there is none."""
    covered = torch.logsumexp(top_logprobs.double(), dim=-1).clamp(max=0.0)
    return torch.log(-torch.expm1(covered))


class HFTeacher:
    """A transformers causal LM behind the :class:`~protege.models.base.Teacher` interface."""

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, batch_size: int = 8):
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._model_id = model_id
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, name_or_path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, batch_size: int = 8
    ) -> "HFTeacher":
        """Load through the model zoo: an embedded name, a local folder or .gguf file, or a hub id."""
        from protege.models.zoo import load_causal_lm, resolve

        model, tokenizer = load_causal_lm(name_or_path, dtype=dtype)
        return cls(model, tokenizer, model_id=resolve(name_or_path).model_id, batch_size=batch_size)

    @property
    def backend(self) -> str:
        return "hf"

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model(self) -> Any:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def device(self) -> torch.device:
        return next(self._model.parameters()).device

    @property
    def context_length(self) -> int | None:
        """Positions the model was trained on; past them its answers mean nothing, so callers fit prompts in."""
        return getattr(self._model.config, "max_position_embeddings", None)

    # ------------------------------------------------------------------------------------------ tokens

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self._tokenizer, prompt, self._model_id)

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        # A rendered chat already holds its special tokens; raw text gets the tokenizer's usual ones (e.g. BOS).
        ids = self._tokenizer(self.render(prompt), add_special_tokens=isinstance(prompt, str))["input_ids"]
        if not ids:
            raise ValueError(f"{self._model_id}: an empty prompt gives no context to condition on")
        return list(ids)

    def encode_continuation(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _pad(self, seqs: Sequence[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = pad_batch(seqs, self._tokenizer.pad_token_id, side)
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------------------------------ raw access

    @torch.no_grad()
    def forward_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``(batch, length, vocab)`` for trainers that distil on full distributions."""
        return self._model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    @torch.no_grad()
    def forward_hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Hidden states of the embeddings and of every layer, each ``(batch, length, hidden)``."""
        out = self._model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, output_hidden_states=True
        )
        return tuple(out.hidden_states)

    # ------------------------------------------------------------------------------------------ Teacher

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        """``params.n`` continuations per prompt, prompts batched with left padding.

        With a seed, sampling is reproducible for the same prompts, batch size and seed; the global torch RNG
        is left untouched.
        """
        out: list[list[Generation]] = []
        for batch in _chunks(list(prompts), self.batch_size):
            out.extend(self._generate_batch(batch, params))
        return out

    def _generate_batch(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        encoded = [self.encode_prompt(p) for p in prompts]
        input_ids, mask = self._pad(encoded, side="left")
        sample = params.temperature > 0
        # Greedy decoding gives one answer however often it is asked, so decode once and repeat it.
        copies = params.n if sample else 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": copies,
            "pad_token_id": self._tokenizer.pad_token_id,
        }
        if sample:
            # top_k=0 disables the top-50 filter transformers applies by default: sampling here means
            # temperature and nucleus only, as in the OpenAI API.
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self._tokenizer)
        if params.top_logprobs:
            # Raw logits: log-probabilities of the model itself, before temperature/top-p, as servers report.
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        devices = [] if self.device.type == "cpu" else [self.device]
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            output = self._model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        sequences = output.sequences if params.top_logprobs else output
        new_tokens = sequences[:, input_ids.shape[1] :].tolist()
        step_logits = torch.stack(output.logits, dim=1) if params.top_logprobs else None
        results = []
        for i, prompt_ids in enumerate(encoded):
            gens = []
            for row in range(i * copies, (i + 1) * copies):
                gen = self._finish(new_tokens[row], len(prompt_ids), params)
                if step_logits is not None:
                    self._attach_logprobs(gen, new_tokens[row], step_logits[row], params.top_logprobs)
                gens.append(gen)
            results.append(gens * params.n if not sample else gens)
        return results

    def _attach_logprobs(self, gen: Generation, tokens: list[int], logits: torch.Tensor, k: int) -> None:
        """Fill the per-token logprob fields for the text tokens of one answer (the end token excluded)."""
        eos = self._eos_ids()
        n = next((i for i, t in enumerate(tokens) if t in eos), len(tokens))
        logp = torch.log_softmax(logits[:n].float(), dim=-1)
        top = torch.topk(logp, min(k, logp.shape[-1]), dim=-1)
        piece = lambda token_id: self._tokenizer.decode([token_id])  # noqa: E731
        gen.tokens = [piece(t) for t in tokens[:n]]
        gen.token_logprobs = [float(logp[j, t]) for j, t in enumerate(tokens[:n])]
        gen.top_logprobs = []
        for ids, vals in zip(top.indices.tolist(), top.values.tolist()):
            row: dict[str, float] = {}
            for token_id, value in zip(ids, vals):
                # Different ids can decode to the same piece (byte fragments); keep the likelier one.
                row.setdefault(piece(token_id), value)
            gen.top_logprobs.append(row)

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tokenizer.eos_token_id is not None:
            ids.add(self._tokenizer.eos_token_id)
        return ids

    def _finish(self, tokens: list[int], prompt_tokens: int, params: SamplingParams) -> Generation:
        eos = self._eos_ids()
        end = next((i for i, t in enumerate(tokens) if t in eos), None)
        finish = "stop" if end is not None else "length"
        kept = tokens[: end if end is not None else len(tokens)]
        text = self._tokenizer.decode(kept, skip_special_tokens=True)
        cuts = [text.find(s) for s in params.stop if s and s in text]
        if cuts:
            # The stop string ends the answer and is not part of it, as in the OpenAI API.
            text, finish = text[: min(cuts)], "stop"
        used = len(kept) + (1 if end is not None else 0)
        return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=used, finish_reason=finish)

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Summed log-probability of each candidate given its prompt.

        Prompts run ``batch_size`` at a time, left padded, keeping only the last position's logits: that scores
        every one-token candidate (label words, usually) at once. When some candidates are longer, the same pass
        keeps the prompts' KV cache, and every longer candidate of the chunk runs as one right-padded batch on
        top of its own prompt's cache (positions continuing from its prompt): the shared prefix is computed once
        per prompt, the continuations together, whatever mix of lengths the label set has.
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} candidate lists")
        cand_ids = [[self.encode_continuation(c) for c in row] for row in continuations]
        scores: list[list[float]] = [[] for _ in prompts]
        for chunk in _chunks(list(range(len(prompts))), max(self.batch_size, 1)):
            for i, row in zip(chunk, self._score_chunk([self.encode_prompt(prompts[i]) for i in chunk],
                                                        [cand_ids[i] for i in chunk])):
                scores[i] = row
        return scores

    def _score_chunk(self, prompt_ids: list[list[int]], cand_ids: list[list[list[int]]]) -> list[list[float]]:
        longer = [(b, j) for b, row in enumerate(cand_ids) for j, ids in enumerate(row) if len(ids) > 1]
        ids, mask = self._pad(prompt_ids, side="left")
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=bool(longer),
                          logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        # An empty continuation has probability 1; every other starts with the token the prompt predicts.
        scores = [[float(first[b, c[0]]) if c else 0.0 for c in row] for b, row in enumerate(cand_ids)]
        if not longer:
            return scores
        owner = torch.tensor([b for b, _ in longer], device=self.device)
        tails = [cand_ids[b][j][:-1] for b, j in longer]  # the tokens whose logits predict the rest
        tail_ids, tail_mask = self._pad(tails, side="right")
        cache = out.past_key_values
        cache.reorder_cache(owner)  # one cache row per longer candidate: its own prompt's
        start = mask.sum(-1)[owner]
        logits = self._model(
            input_ids=tail_ids, attention_mask=torch.cat([mask[owner], tail_mask], dim=1),
            position_ids=start[:, None] + torch.arange(tail_ids.shape[1], device=self.device)[None],
            use_cache=True, **{cache_argument(self._model): cache},
        ).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for row, (b, j) in enumerate(longer):
            rest = torch.tensor(cand_ids[b][j][1:], device=self.device)
            scores[b][j] += float(logp[row, torch.arange(rest.numel(), device=self.device), rest].sum())
        return scores

    @torch.no_grad()
    def topk_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str], k: int) -> list[TopK]:
        if len(prompts) != len(completions):
            raise ValueError(f"topk_logprobs: {len(prompts)} prompts but {len(completions)} completions")
        if k < 1:
            raise ValueError(f"topk_logprobs: k must be at least 1, got {k}")
        seqs = [list(p) + list(c) if is_token_ids(c) else self.encode_prompt(p) + self.encode_continuation(c)
                for p, c in zip(prompts, completions)]
        out: list[TopK] = []
        for batch in _chunks(seqs, self.batch_size):
            ids, mask = self._pad(batch, side="right")
            logits = self.forward_logits(ids, mask)
            for row, seq in enumerate(batch):
                out.append(self._topk_row(logits[row, : len(seq) - 1].float(), seq, k))
        return out

    @staticmethod
    def _topk_row(logits: torch.Tensor, seq: list[int], k: int) -> TopK:
        norm = torch.logsumexp(logits, dim=-1, keepdim=True)
        top = torch.topk(logits, min(k, logits.shape[-1]), dim=-1)
        top_lp = top.values - norm
        nxt = torch.tensor(seq[1:], dtype=torch.long, device=logits.device)
        token_lp = logits.gather(-1, nxt[:, None]).squeeze(-1) - norm.squeeze(-1)
        return TopK(
            token_ids=list(seq),
            ids=top.indices.tolist(),
            logprobs=top_lp.tolist(),
            token_logprobs=token_lp.tolist(),
            tail_logprob=tail_logprob(top_lp).tolist(),
        )
