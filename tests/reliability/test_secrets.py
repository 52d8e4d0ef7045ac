"""The API key never shows: every output channel of a run and of ``protege doctor`` is searched for every form of a
marker key (raw, stripped, repr-escaped, as quoted bytes, JSON-escaped, URL-encoded), whatever the key looks like
and whatever the server says back; a key with whitespace around it is stripped with a warning, and a request that
cannot succeed is not retried."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from typer.testing import CliRunner

from loopback import recipe
from protege.cli import app

ENV = "PROTEGE_RELIABILITY_KEY"
MARKER = "sk-MARKER-7f3a9c1e2b"
KEYS = {
    "plain": MARKER,
    "trailing newline": MARKER + "\n",
    "spaces and CRLF": "  " + MARKER + "\r\n",
    "URL-unsafe": "sk-MARKER+7f3a/9c1e=2b?&",
}


def spellings(key: str) -> set[str]:
    out = set()
    for value in (key, key.strip()):
        out |= {value, repr(value)[1:-1], repr(value.encode())[2:-1], json.dumps(value)[1:-1], quote(value, safe=""),
                quote_plus(value)}
    return out


def leaks(key: str, *texts: str, folder: Path) -> list[str]:
    """Where any spelling of ``key`` shows: in the given texts or in any file under ``folder``."""
    found = [f"output #{i}" for i, text in enumerate(texts) for s in spellings(key) if s in text]
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes().decode("latin-1")
            found += [str(path) for s in spellings(key) if s in data]
    return found


def echoing(key: str):
    """A server body quoting the key the way real servers do: raw, repr-escaped, JSON and URL-encoded."""
    return {"error": {"message": f"Incorrect API key provided: {key} ({key!r}, {quote(key)})"}}


def script_for(mode: str, key: str):
    def script(n: int, body: dict):
        if mode == "echoes in retries" and n <= 3:
            return 500, {}, echoing(key)
        if mode == "echoes in 401":
            return 401, {}, echoing(key)
        return None

    return script


CASES = [("plain", "quiet"), ("trailing newline", "quiet"), ("trailing newline", "echoes in retries"),
         ("spaces and CRLF", "echoes in 401"), ("URL-unsafe", "echoes in retries"), ("URL-unsafe", "echoes in 401"),
         ("plain", "echoes in 401")]


@pytest.mark.parametrize("kind,mode", CASES)
def test_a_run_shows_the_key_nowhere(serve, tmp_path, monkeypatch, capfd, kind, mode):
    key = KEYS[kind]
    monkeypatch.setenv(ENV, key)
    server = serve(script_for(mode, key))
    path = recipe(tmp_path, server.url, n=20, teacher={"api_key_env": ENV, "max_retries": 3})
    log = tmp_path / "log.jsonl"
    result = CliRunner().invoke(app, ["--log-jsonl", str(log), "run", str(path)])
    captured = capfd.readouterr()
    failed = mode == "echoes in 401"
    assert (result.exit_code != 0) == failed, result.output
    texts = [result.output, captured.out, captured.err, str(result.exception or ""), repr(result.exception)]
    assert leaks(key, *texts, folder=tmp_path) == []
    assert {h["Authorization"] for h in server.headers} == {f"Bearer {key.strip()}"}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    codes = {e.get("code") for e in events}
    if key != key.strip():
        assert "api_key_whitespace" in codes
    if failed:
        assert "teacher_auth" in codes
        assert server.count <= 4, "a refused key must not be retried (only requests already in flight go out)"


def test_a_key_with_whitespace_inside_is_refused_before_any_request(serve, tmp_path, monkeypatch):
    key = "sk-MARKER 7f3a\n9c1e2b"
    monkeypatch.setenv(ENV, key)
    server = serve()
    path = recipe(tmp_path, server.url, n=20, teacher={"api_key_env": ENV})
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 1 and ENV in result.output
    assert server.count == 0
    assert leaks(key, result.output, str(result.exception or ""), folder=tmp_path) == []


@pytest.mark.parametrize("kind", ["trailing newline", "URL-unsafe"])
def test_doctor_shows_a_refusing_server_without_the_key(serve, tmp_path, monkeypatch, capfd, kind):
    key = KEYS[kind]
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server = serve()
    server.models = lambda: (401, {}, echoing(key))
    log = tmp_path / "doctor.jsonl"
    result = CliRunner().invoke(app, ["--log-jsonl", str(log), "doctor", "--base-url", server.url])
    captured = capfd.readouterr()
    assert result.exit_code == 1
    (check,) = [json.loads(line) for line in log.read_text().splitlines() if '"backend openai"' in line]
    assert check["status"] == "fail" and "401" in check["detail"]
    assert leaks(key, result.output, captured.out, captured.err, folder=tmp_path) == []
    assert {h["Authorization"] for h in server.headers} <= {f"Bearer {key.strip()}"}
