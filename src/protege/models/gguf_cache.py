"""The conversion cache: plain safetensors copies of GGUF models (and the half-depth student built from them).

The embedded teacher ships as a quantised GGUF file. transformers can dequantise it, but that takes ~15 s, so the
first load writes a plain safetensors copy (plus tokenizer) to the user cache and later loads read that copy.
Cache entries are written to a temporary directory and renamed into place, so a crash or two processes racing
never leave a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from protege.core import console
from protege.models.prune import prune_layers
from protege.models.resolve import ResolvedModel

CACHE_FORMAT = 1  # bump when the layout of a cache entry changes, so stale entries are rebuilt
_STAMP = "protege-cache.json"


def cache_root() -> Path:
    """``$PROTEGE_CACHE`` or ``~/.cache/protege``."""
    env = os.environ.get("PROTEGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "protege"


def _source_stamp(source: Path) -> dict[str, Any]:
    stat = source.stat()
    return {"format": CACHE_FORMAT, "source": str(source), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def cache_valid(entry: Path, source: Path) -> bool:
    stamp = entry / _STAMP
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()) == _source_stamp(source)
    except (OSError, ValueError):
        return False


def write_cache_entry(entry: Path, source: Path, build: Callable[[Path], None]) -> None:
    """Build into a sibling temp dir, then rename: readers see either no entry or a complete one."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        build(tmp)
        (tmp / _STAMP).write_text(json.dumps(_source_stamp(source)))
        if entry.exists():  # a stale entry (or another process won the race): replace it
            stale = entry.with_name(f".{entry.name}.stale-{os.getpid()}")
            os.replace(entry, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:
        if entry.exists() and cache_valid(entry, source):
            return  # another process finished first
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save_plain(model: nn.Module, tokenizer: Any, out: Path) -> None:
    # A model loaded from GGUF remembers it was "quantised"; save_pretrained then refuses or writes a
    # quantization_config that makes the reload look for the GGUF again. The weights are already plain floats.
    for attr in ("hf_quantizer", "is_quantized"):
        if hasattr(model, attr):
            setattr(model, attr, None if attr == "hf_quantizer" else False)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def gguf_entry_name(resolved: ResolvedModel) -> str:
    if resolved.embedded is not None:
        return "smollm2-135m-instruct"  # the half student derives from the same converted teacher
    digest = hashlib.sha256(os.path.join(resolved.location, resolved.gguf_file or "").encode()).hexdigest()
    return f"gguf-{Path(resolved.gguf_file or 'model').stem}-{digest[:12]}"


def converted_gguf_dir(resolved: ResolvedModel) -> Path:
    """A safetensors copy of a GGUF model, converting it on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert resolved.gguf_file is not None
    source = Path(resolved.location) / resolved.gguf_file
    entry = cache_root() / gguf_entry_name(resolved)
    if cache_valid(entry, source):
        return entry

    def build(out: Path) -> None:
        console.info(f"converting {source.name} to safetensors once (about 15 s); later loads read {entry}")
        tok = AutoTokenizer.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(
            resolved.location, gguf_file=resolved.gguf_file, dtype=torch.float32
        )
        _save_plain(model, tok, out)

    write_cache_entry(entry, source, build)
    return entry


def half_student_dir(resolved: ResolvedModel) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    teacher_dir = converted_gguf_dir(resolved)
    source = Path(resolved.location) / (resolved.gguf_file or "")
    entry = cache_root() / "smollm2-135m-half"
    if cache_valid(entry, source):
        return entry

    def build(out: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
        console.info(f"building the half-depth student once into {entry}")
        keep = list(range(0, model.config.num_hidden_layers, 2))
        _save_plain(prune_layers(model, keep), AutoTokenizer.from_pretrained(teacher_dir), out)

    write_cache_entry(entry, source, build)
    return entry
