"""Installation checks behind ``protege doctor``: each returns a status and a line saying what to do about it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    detail = f"{platform.python_version()} ({sys.executable})"
    return Check("python", "ok" if ok else "fail", detail if ok else f"{detail}; protege needs Python >= 3.10")


def check_torch() -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", "fail", "not installed: run `python3 dev.py setup` or `pip install torch`")
    devices = "cuda" if torch.cuda.is_available() else "cpu only"
    return Check("torch", "ok", f"{torch.__version__}, {devices}, {torch.get_num_threads()} threads")


def check_libraries() -> Check:
    wanted = ["transformers", "accelerate", "peft", "datasets", "pyarrow", "pydantic"]
    versions = {name: _version(name) for name in wanted}
    missing = [n for n, v in versions.items() if v is None]
    detail = ", ".join(f"{n} {v}" for n, v in versions.items() if v)
    if missing:
        return Check("libraries", "fail", f"missing {', '.join(missing)}: reinstall with `pip install -e .`")
    return Check("libraries", "ok", detail)


def check_embedded_models() -> list[Check]:
    from protege.models.zoo import embedded_models

    checks = []
    for status in embedded_models():
        name = f"model {status.model.name}"
        if not status.present:
            checks.append(Check(name, "fail", f"not installed: {status.install_hint}"))
        else:
            note = "" if status.cached else " (first load converts and caches it)"
            checks.append(Check(name, "ok", f"{status.model.role}: {status.path}{note}"))
    return checks


def check_llamacpp() -> Check:
    if importlib.util.find_spec("llama_cpp") is None:
        return Check(
            "backend llamacpp", "warn",
            "llama-cpp-python not installed (optional): CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'protege[llamacpp]'",
        )
    return Check("backend llamacpp", "ok", f"llama-cpp-python {_version('llama-cpp-python')}")


def check_server(base_url: str, api_key_env: str = "OPENAI_API_KEY") -> Check:
    """The server answers ``/models`` with the key the teacher would send; what it says is shown scrubbed."""
    import httpx

    from protege.core.errors import ProtegeError
    from protege.core.secrets import scrub
    from protege.models.remote import read_api_key

    try:
        key = read_api_key(api_key_env)
    except ProtegeError as err:
        return Check("backend openai", "fail", str(err))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = base_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as err:
        return Check("backend openai", "fail", f"{url} unreachable ({type(err).__name__}); is the server running?")
    if response.status_code != 200:
        hint = f" (is the API key in ${api_key_env} right?)" if response.status_code in (401, 403) else ""
        return Check("backend openai", "fail",
                     f"{url} answered HTTP {response.status_code}{hint}: {scrub(response.text[:200])}")
    models = [m.get("id", "?") for m in response.json().get("data", [])]
    return Check("backend openai", "ok", f"{base_url} serves {', '.join(models) or 'no models'}")


def check_tokenizer_pair(teacher: str, student: str) -> Check:
    from protege.models.compat import compare_tokenizers
    from protege.models.zoo import load_tokenizer

    report = compare_tokenizers(load_tokenizer(teacher), load_tokenizer(student))
    name = f"tokenizers {teacher} -> {student}"
    if report.ok:
        return Check(name, "ok", "identical vocabulary, special tokens and chat template: token-level KD works")
    return Check(
        name, "warn",
        "; ".join(report.differences) + ". Token-level (logit) KD is not possible; use sequence-level KD (SFT on teacher outputs).",
    )


def run_checks(teacher: str | None = None, student: str | None = None, base_url: str | None = None) -> list[Check]:
    checks = [check_python(), check_torch(), check_libraries(), *check_embedded_models(), check_llamacpp()]
    if base_url:
        checks.append(check_server(base_url))
    if teacher and student:
        checks.append(check_tokenizer_pair(teacher, student))
    elif teacher or student:
        checks.append(Check("tokenizers", "warn", "give both --teacher and --student to compare tokenizers"))
    return checks
