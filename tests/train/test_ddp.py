"""Two CPU processes under `accelerate launch` take the same steps as one process seeing the same examples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from protege.train.lm_objectives import SFT
from protege.train.loop import LoopConfig, train

from tiny_lm import random_examples, tiny_llama

HERE = Path(__file__).parent


@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="the accelerate launcher is not installed")
def test_two_processes_match_one(tmp_path):
    launcher = str(Path(sys.executable).with_name("accelerate"))
    path = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])  # tiny_lm, tiny
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    # `--cpu` alone starts one process (multi-CPU needs MPI); --multi_gpu starts torchrun, and
    # ACCELERATE_USE_CPU makes each process join a gloo process group on CPU.
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", str(HERE / "ddp_worker.py"), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(tmp_path / "weights.pt")
    # Same global batch (2 processes × 2 micro-batches × 2 examples) in one process.
    cfg = LoopConfig(steps=2, micro_batch_size=2, grad_accum=4, lr=1e-2, max_grad_norm=1.0, tracker=None)
    one = train(tiny_llama(), SFT(), random_examples(16), cfg).model.state_dict()
    start = tiny_llama().state_dict()
    assert any(not torch.allclose(two[k], start[k]) for k in two)
    for name, value in one.items():
        assert torch.allclose(value, two[name], atol=2e-5), name
    lines = (tmp_path / "run" / "artifacts" / "metrics" / "train.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]  # the main process alone writes metrics
    assert (tmp_path / "run" / "artifacts" / "checkpoints" / "train" / "step-000002").is_dir()
