"""Masked-LM continued pre-training of an encoder on the one loop: a batch source of masked texts, an objective.

:class:`MaskedTextSource` tokenises texts — a string, or a ``(first, second)`` pair encoded as the tokenizer's
sentence pair (a review and what a teacher wrote about it) — and masks ``mask_prob`` of the real tokens
(never special ones or padding) the BERT way: of the chosen tokens 80 % become the mask token, 10 % a random
token, 10 % stay. The choice is drawn from a generator seeded by the source's seed and the batch's indices, so
step ``s`` masks the same tokens after a resume. ``labels`` hold the original ids at chosen positions and -100
elsewhere.

:class:`MaskedLMObjective` returns the *sum* of the cross-entropy over the chosen positions (the loop divides
by the step's count of them). On a single process it runs the encoder, then the masked-LM head on the chosen
positions only, so the (B, T, V) logits never exist; a model wrapped for distributed training goes through its
own forward, which keeps the wrapper's gradient hooks.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

Text = Union[str, tuple[str, str]]
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class MaskedTextSource:
    """The loop's batch source: texts -> ``input_ids`` (masked), ``attention_mask``, ``labels``."""

    texts: Sequence[Text]
    tokenizer: Any
    max_length: int = 256
    mask_prob: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tokenizer.mask_token_id is None:
            raise ValueError("masked-LM pre-training needs a tokenizer with a mask token")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob={self.mask_prob}: give a share strictly between 0 and 1, e.g. 0.15")
        if not self.texts:
            raise ValueError("masked-LM pre-training got no texts")

    def __len__(self) -> int:
        return len(self.texts)

    def _encode(self, text: Text) -> dict:
        first, second = (text, None) if isinstance(text, str) else text
        return self.tokenizer(first, second, truncation=True, max_length=self.max_length,
                              return_special_tokens_mask=True)

    def batch(self, indices: Sequence[int]) -> dict[str, Tensor]:
        enc = self.tokenizer.pad([self._encode(self.texts[i]) for i in indices], return_tensors="pt")
        ids = enc["input_ids"]
        key = zlib.crc32(",".join(map(str, indices)).encode())
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + key)
        real = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
        chosen = (torch.rand(ids.shape, generator=generator) < self.mask_prob) & real
        draw = torch.rand(ids.shape, generator=generator)
        masked = ids.masked_fill(chosen & (draw < 0.8), self.tokenizer.mask_token_id)
        swap = chosen & (draw >= 0.8) & (draw < 0.9)
        random_ids = torch.randint(len(self.tokenizer), ids.shape, generator=generator)
        masked = torch.where(swap, random_ids, masked)
        batch = {k: enc[k] for k in MODEL_INPUTS if k in enc}
        batch["input_ids"] = masked
        batch["labels"] = ids.masked_fill(~chosen, -100)
        return batch


def _head(model: Any) -> Optional[Any]:
    """The masked-LM head applied to hidden states (BERT's ``cls``, RoBERTa's ``lm_head``), when known."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if head is not None:
            return head
    return None


class MaskedLMObjective:
    """Σ over chosen positions of −log p(original token)."""

    def units(self, batch: dict[str, Tensor]) -> int:
        return int((batch["labels"] != -100).sum())

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
        chosen = batch["labels"] != -100
        targets = batch["labels"][chosen]
        head = None if hasattr(model, "module") else _head(model)
        if head is not None:
            hidden = model.base_model(**inputs).last_hidden_state[chosen]
            logits = head(hidden)
        else:
            logits = model(**inputs).logits[chosen]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        hits = (logits.argmax(-1) == targets).sum()
        return loss, {"mlm_accuracy": float(hits)}
