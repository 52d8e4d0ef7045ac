"""The teacher-logit cache: the teacher's top-k next-token log-probabilities over response tokens, kept on disk.

Logit KD from the cache trains the student without the teacher in memory. Per response position the cache keeps
the k most likely token ids, their log-probabilities (float16) and the log of the mass outside them (the tail
bucket of :class:`~protege.losses.TopKTeacher`), all at the distillation temperature. Prompt positions are not
stored: the loss never applies there.

Layout of a cache directory::

    manifest.json            the stamp and the list of finished shards (with the ids they hold)
    shard-00000.safetensors  input_ids, offsets, prompt_lens, topk_ids, topk_logprobs, tail_logprob

A shard and then the manifest are each written to a temporary file and renamed, so a crash leaves either the
old manifest or the new one, never a torn shard; a shard written but not yet listed is overwritten on resume.

The stamp names the teacher, its tokenizer (fingerprint, vocabulary size, chat-template hash, special tokens),
the temperature and k. A student whose tokenizer differs is refused: its token ids would not mean the same
tokens as the cached ones, and the loss would silently teach it the wrong distribution.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from protege.losses.teachers import TopKTeacher, topk_from_logits
from protege.models.compat import tokenizer_fingerprint

FORMAT = 1
MANIFEST = "manifest.json"


class CacheMismatchError(ValueError):
    """A cache that does not belong to this teacher/student/setting; the message says what differs."""


def chat_template_hash(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None) or ""
    return hashlib.sha256(template.encode()).hexdigest()[:16] if template else ""


def _special_tokens(tokenizer: Any) -> dict[str, str]:
    return {name: str(value) for name, value in sorted(tokenizer.special_tokens_map.items())}


@dataclass(frozen=True)
class CacheStamp:
    """What a cache was made from; two caches (or a cache and a student) are compatible when these agree."""

    teacher: str
    tokenizer: str  # protege.models.compat.tokenizer_fingerprint: vocabulary, special tokens, chat template
    vocab_size: int  # width of the teacher's logits (may exceed len(tokenizer) in padded vocabularies)
    chat_template: str  # hash of the chat template, "" when the tokenizer has none
    special_tokens: dict[str, str]
    temperature: float
    k: int
    ids_dtype: str  # uint16 when every id fits, halving the id bytes; else int32
    logprobs_dtype: str = "float16"
    format: int = FORMAT

    @classmethod
    def make(cls, teacher: str, tokenizer: Any, *, vocab_size: int, temperature: float, k: int) -> "CacheStamp":
        if not 1 <= k < vocab_size:
            raise ValueError(f"k={k}: keep between 1 and vocab_size - 1 = {vocab_size - 1} tokens per position")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: the distillation temperature must be positive")
        return cls(
            teacher=teacher, tokenizer=tokenizer_fingerprint(tokenizer), vocab_size=vocab_size,
            chat_template=chat_template_hash(tokenizer), special_tokens=_special_tokens(tokenizer),
            temperature=float(temperature), k=k, ids_dtype="uint16" if vocab_size <= 2**16 else "int32",
        )

    def differences(self, other: "CacheStamp") -> list[str]:
        """One line per field that differs, ``name: this != other``."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{name}: {mine[name]!r} != {theirs[name]!r}" for name in mine if mine[name] != theirs[name]]


def check_student(stamp: CacheStamp, tokenizer: Any, vocab_size: int, *, where: str = "the cache") -> None:
    """Refuse a student whose tokenizer or vocabulary is not the one the cache's token ids refer to."""
    problems = []
    if vocab_size != stamp.vocab_size:
        problems.append(f"vocabulary size: the teacher's logits have {stamp.vocab_size} entries, the student's "
                        f"{vocab_size}")
    specials = _special_tokens(tokenizer)
    for name in sorted(set(specials) | set(stamp.special_tokens)):
        if specials.get(name) != stamp.special_tokens.get(name):
            problems.append(f"special token {name}: teacher {stamp.special_tokens.get(name)!r}, "
                            f"student {specials.get(name)!r}")
    if chat_template_hash(tokenizer) != stamp.chat_template:
        problems.append("chat template: the student's differs from the teacher's")
    if tokenizer_fingerprint(tokenizer) != stamp.tokenizer and not problems:
        problems.append("vocabulary: the same size, but some token strings or ids differ")
    if problems:
        raise CacheMismatchError(
            f"{where} was made by teacher {stamp.teacher!r} with a tokenizer the student does not share:\n  - "
            + "\n  - ".join(problems)
            + "\nCached token ids would name other tokens for this student. Use a student with the teacher's "
            "tokenizer, or distil at the sequence level instead (a 'respond' stage, then SFT on 'responses')."
        )


@dataclass
class _Pending:
    ids: list[str] = field(default_factory=list)
    input_ids: list[Tensor] = field(default_factory=list)
    prompt_lens: list[int] = field(default_factory=list)
    topk_ids: list[Tensor] = field(default_factory=list)
    topk_logprobs: list[Tensor] = field(default_factory=list)
    tail: list[Tensor] = field(default_factory=list)
    positions: int = 0


def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


class LogitCacheWriter:
    """Adds sequences to a cache directory, a shard at a time; reopening an existing cache resumes it.

    Use as a context manager (or call :meth:`close`) so the last, partial shard is written.
    """

    def __init__(self, root: str | Path, stamp: CacheStamp, *, shard_positions: int = 65536):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stamp = stamp
        self.shard_positions = shard_positions
        manifest = _read_manifest(self.root)
        if manifest is None:
            manifest = {"stamp": asdict(stamp), "shards": []}
        else:
            found = CacheStamp(**manifest["stamp"])
            if found != stamp:
                raise CacheMismatchError(
                    f"{self.root} holds a cache made with other settings; resuming it would mix two teachers' "
                    "outputs:\n  - " + "\n  - ".join(found.differences(stamp))
                    + f"\nDelete {self.root} to rebuild it, or write the new cache to another directory."
                )
        self._manifest = manifest
        self._done = {i for shard in manifest["shards"] for i in shard["ids"]}
        self._pending = _Pending()

    def done(self) -> set[str]:
        """Ids already stored (in written shards or waiting in the current one)."""
        return self._done | set(self._pending.ids)

    def add(self, seq_id: str, input_ids: Sequence[int], prompt_len: int, topk: TopKTeacher) -> None:
        """Store one sequence; ``topk`` holds one row per response token, row r predicting token prompt_len + r.

        ``topk`` must come from the teacher at the stamp's temperature with the stamp's k.
        """
        if seq_id in self.done():
            return
        length = len(input_ids)
        rows = length - prompt_len
        if prompt_len < 1 or rows < 1:
            raise ValueError(f"sequence {seq_id}: prompt_len={prompt_len} of {length} tokens; need at least one "
                             "prompt token and one response token")
        if tuple(topk.ids.shape) != (rows, self.stamp.k):
            raise ValueError(f"sequence {seq_id}: top-k ids of shape {tuple(topk.ids.shape)}; expected "
                             f"({rows}, {self.stamp.k}), one row of k={self.stamp.k} per response token")
        tail = topk.buckets()[:, -1]  # the given tail, or the mass the top k leave when none is given
        p = self._pending
        p.ids.append(seq_id)
        p.input_ids.append(torch.as_tensor(list(input_ids), dtype=torch.int32))
        p.prompt_lens.append(prompt_len)
        p.topk_ids.append(topk.ids.to(getattr(torch, self.stamp.ids_dtype)))
        p.topk_logprobs.append(topk.logprobs.to(torch.float16))
        p.tail.append(tail.to(torch.float16))
        p.positions += rows
        if p.positions >= self.shard_positions:
            self.flush()

    def add_logits(self, seq_id: str, input_ids: Sequence[int], prompt_len: int, logits: Tensor) -> None:
        """Store one sequence from full teacher logits over its response: ``logits[r]`` predicts token prompt_len + r."""
        self.add(seq_id, input_ids, prompt_len, topk_from_logits(logits, self.stamp.k, temperature=self.stamp.temperature))

    def flush(self) -> None:
        p = self._pending
        if not p.ids:
            return
        name = f"shard-{len(self._manifest['shards']):05d}.safetensors"
        lengths = torch.tensor([len(x) for x in p.input_ids], dtype=torch.int64)
        tensors = {
            "input_ids": torch.cat(p.input_ids),
            "offsets": torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]),
            "prompt_lens": torch.tensor(p.prompt_lens, dtype=torch.int32),
            "topk_ids": torch.cat(p.topk_ids),
            "topk_logprobs": torch.cat(p.topk_logprobs),
            "tail_logprob": torch.cat(p.tail),
        }
        _write_atomic(self.root / name, lambda tmp: save_file(tensors, str(tmp)))
        self._manifest["shards"].append({
            "file": name, "ids": p.ids, "sequences": len(p.ids), "tokens": int(lengths.sum()),
            "response_tokens": p.positions, "bytes": (self.root / name).stat().st_size,
        })
        _write_atomic(self.root / MANIFEST, lambda tmp: tmp.write_text(json.dumps(self._manifest)))
        self._done.update(p.ids)
        self._pending = _Pending()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "LogitCacheWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        # Even on an error the finished sequences are worth keeping: the next run resumes after them.
        self.close()


@dataclass(frozen=True)
class CachedSequence:
    id: str
    input_ids: Tensor  # (L,) int64
    prompt_len: int
    teacher: TopKTeacher  # (L - prompt_len, k) rows, float32 log-probabilities


class LogitCache:
    """Read access to a finished (or partly written) cache directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = _read_manifest(self.root)
        if manifest is None:
            raise FileNotFoundError(f"{self.root} holds no teacher-logit cache ({MANIFEST} missing); run the "
                                    "'cache_logits' stage first")
        self.stamp = CacheStamp(**manifest["stamp"])
        self._shards = manifest["shards"]
        self._ids: list[str] = [i for shard in self._shards for i in shard["ids"]]
        self._loaded: list[dict[str, Tensor]] | None = None
        self._index: list[tuple[int, int]] = [(s, j) for s, shard in enumerate(self._shards)
                                              for j in range(shard["sequences"])]

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def num_response_tokens(self) -> int:
        return sum(shard["response_tokens"] for shard in self._shards)

    @property
    def num_bytes(self) -> int:
        return sum(shard["bytes"] for shard in self._shards)

    def bytes_per_token(self) -> float:
        """Bytes on disk per distilled (response) token, everything included (ids, offsets, headers)."""
        return self.num_bytes / max(self.num_response_tokens, 1)

    def check_student(self, tokenizer: Any, vocab_size: int) -> None:
        check_student(self.stamp, tokenizer, vocab_size, where=f"the teacher-logit cache at {self.root}")

    def _shard(self, s: int) -> dict[str, Tensor]:
        if self._loaded is None:
            self._loaded = [self._load(shard["file"]) for shard in self._shards]
        return self._loaded[s]

    def _load(self, name: str) -> dict[str, Tensor]:
        t = load_file(str(self.root / name))
        responses = (t["offsets"][1:] - t["offsets"][:-1]) - t["prompt_lens"].long()
        # Where each sequence's rows start among the shard's top-k rows (only response tokens have rows).
        t["row_offsets"] = torch.cat([torch.zeros(1, dtype=torch.int64), responses.cumsum(0)])
        return t

    def sequence(self, i: int) -> CachedSequence:
        s, j = self._index[i]
        t = self._shard(s)
        start, end = int(t["offsets"][j]), int(t["offsets"][j + 1])
        rows = slice(int(t["row_offsets"][j]), int(t["row_offsets"][j + 1]))
        teacher = TopKTeacher(t["topk_ids"][rows].long(), t["topk_logprobs"][rows].float(),
                              t["tail_logprob"][rows].float())
        return CachedSequence(self._ids[i], t["input_ids"][start:end].long(), int(t["prompt_lens"][j]), teacher)
