"""benchmarks/processes.py: units as child processes (tiny ``python -c`` children, a second or two): order and
dependencies, a failed unit's dependents skipped, the option glue the benchmark scripts share, locked appends."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "processes", Path(__file__).resolve().parents[2] / "benchmarks" / "processes.py")
processes = importlib.util.module_from_spec(spec)
sys.modules["processes"] = processes  # dataclasses resolve the module by name
spec.loader.exec_module(processes)
Unit = processes.Unit


def _write(path: Path, text: str, code: int = 0) -> tuple[str, ...]:
    """A child that appends ``text`` to ``path`` (under the lock) and exits with ``code``."""
    here = str(Path(processes.__file__).parent)
    return ("-c", f"import sys; sys.path.insert(0, {here!r}); from pathlib import Path; from processes import "
                  f"append_line; append_line(Path({str(path)!r}), {text!r}); sys.exit({code})")


def test_dependents_wait_and_are_skipped_when_what_they_need_failed(tmp_path):
    out = tmp_path / "out.txt"
    units = processes.after_first([Unit("base-a", _write(out, "base-a")), Unit("cell-a", _write(out, "cell-a")),
                                   Unit("base-b", _write(out, "base-b", code=3)), Unit("cell-b", _write(out, "x"))],
                                  lambda unit: unit.name.split("-")[1])
    assert [u.after for u in units] == [(), ("base-a",), (), ("base-b",)]
    codes = processes.run_units(units, tmp_path / "logs", jobs=2, threads=1)
    assert codes == {"base-a": 0, "cell-a": 0, "base-b": 3, "cell-b": None}
    lines = out.read_text().splitlines()
    assert sorted(lines) == ["base-a", "base-b", "cell-a"] and lines.index("base-a") < lines.index("cell-a")
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["base-a.log", "base-b.log", "cell-a.log"]


def test_parallel_appends_never_mix(tmp_path):
    out, line = tmp_path / "rows.jsonl", "y" * 20000  # larger than one write buffer
    code = ("import sys; sys.path.insert(0, {here!r}); from pathlib import Path; from processes import append_line\n"
            "for _ in range(20): append_line(Path({out!r}), {line!r})")
    units = [Unit(f"w{i}", ("-c", code.format(here=str(Path(processes.__file__).parent), out=str(out), line=line)))
             for i in range(3)]
    assert set(processes.run_units(units, tmp_path / "logs", jobs=3, threads=1).values()) == {0}
    assert out.read_text().splitlines() == [line] * 60


def test_options_child_command_line_and_exit_status(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--arms", nargs="+", default=["a", "b"])
    processes.add_options(parser, tmp_path / "logs", "arms")
    args = parser.parse_args([])
    assert (args.jobs, args.threads, args.logs, args.child) == (2, 1, tmp_path / "logs", False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--jobs", "0"])
    argv = ["--arms", "a", "b", "--jobs", "2"]
    command = processes.child("bench.py", argv, "--arms", "b")
    mine = parser.parse_args(list(command[1:]))
    assert command[0] == "bench.py" and (mine.arms, mine.jobs, mine.child) == (["b"], 1, True)
    ok, bad = Unit("ok", ("-c", "pass")), Unit("bad", ("-c", "raise SystemExit(2)"))
    assert processes.run_children([ok], args) == 0 and "ok: done in" in capsys.readouterr().out
    assert processes.run_children([ok, bad], args) == 1
    assert "not finished: bad" in capsys.readouterr().err
