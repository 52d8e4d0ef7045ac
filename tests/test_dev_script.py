"""dev.py: the quickstart installs no llama.cpp build; test installs every extra its tests need, on top."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dev(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STAMP", tmp_path / "stamp")
    monkeypatch.setattr(module, "PY", tmp_path / "python")  # exists: no venv is created
    (tmp_path / "python").write_text("")
    installs = []
    monkeypatch.setattr(module, "pip", lambda *args, env=None: installs.append(args))
    monkeypatch.setattr(module.subprocess, "run", lambda *a, **k: type("Done", (), {"returncode": 0})())
    return module, installs


def test_quickstart_builds_no_llamacpp_and_test_adds_the_extras_after_it(dev):
    module, installs = dev
    assert "llamacpp" not in module.EXTRAS["quickstart"]
    assert {"test", "llamacpp", "export"} <= set(module.EXTRAS["test"])
    module.setup(module.EXTRAS["quickstart"])
    assert installs[0] == ("-e", str(module.ROOT))
    installs.clear()
    module.setup(module.EXTRAS["quickstart"])
    assert installs == []  # nothing changed: nothing installed
    module.setup(module.EXTRAS["test"])
    assert installs[0] == ("-e", f"{module.ROOT}[export,llamacpp,test]")
    installs.clear()
    module.setup(module.EXTRAS["quickstart"])  # a quickstart after the tests keeps what is there
    assert installs == []
