"""The classifier trainer under ``accelerate launch`` with two CPU processes (DDP over gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tiny_encoder import build_tiny_encoder

HERE = Path(__file__).parent


def test_two_process_training_learns_and_both_ranks_agree(tmp_path):
    encoder = build_tiny_encoder(tmp_path / "encoder")
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    # `--cpu` alone starts one process; --multi_gpu starts two under torchrun and ACCELERATE_USE_CPU makes them
    # join a gloo process group on CPU.
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(
        [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", str(HERE / "launch_classifier.py"), str(encoder), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    # Same data order, same synchronised weights: both processes end with the same model and the same steps.
    assert ranks[0]["accuracy"] == ranks[1]["accuracy"] and ranks[0]["steps"] == ranks[1]["steps"]
    assert ranks[0]["accuracy"] >= 0.9
