"""The rationale benchmark's units: one child process per (arm, seed) not yet in the runs file, each told to
train exactly that pair in process (the training itself needs the real models and data: see
benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rationales.py"
spec = importlib.util.spec_from_file_location("rationales_bench", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_one_unit_per_arm_and_seed_left_to_train():
    argv = ["encoder", "--arms", "none,mixtral", "--seeds", "0,1", "--mlm-steps", "40"]
    args = bench.parse(argv)
    done = {"encoder:mixtral:0:mlm40", "encoder:none:1:mlm80"}  # the second at another budget: not this one
    units = bench.units(args, argv, done, tests=800)
    assert [u.name for u in units] == ["encoder-none-0", "encoder-none-1", "encoder-mixtral-1"]
    assert all(u.after == () for u in units)  # nothing shared to wait for
    child = bench.parse(list(units[2].argv[1:]))
    assert (child.arms, child.seeds, child.mlm_steps, child.jobs, child.child) == (["mixtral"], [1], 40, 1, True)


def test_generative_keys_carry_the_test_size():
    argv = ["generative", "--arms", "none", "--seeds", "0", "--test-size", "50"]
    args = bench.parse(argv)
    assert bench.units(args, argv, {"generative:none:0:pre40:ft60:test50"}, tests=50) == []
    assert [u.name for u in bench.units(args, argv, {"generative:none:0:pre40:ft60:test200"}, tests=50)] == [
        "generative-none-0"]
    assert bench.parse(["encoder"]).arms == list(bench.ENCODER_ARMS) and bench.parse(["generative"]).jobs == 2
