"""Run by test_ddp.py under `accelerate launch --num_processes 2 --cpu`: train briefly, save the weights."""

import sys

import torch

from protege.core.run import Run
from protege.train.lm_objectives import SFT
from protege.train.loop import LoopConfig, train

from tiny_lm import random_examples, tiny_llama

if __name__ == "__main__":
    torch.set_num_threads(1)
    out = sys.argv[1]
    cfg = LoopConfig(steps=2, micro_batch_size=2, grad_accum=2, lr=1e-2, max_grad_norm=1.0, log_every=1,
                     save_every=1, tracker=None)
    result = train(tiny_llama(), SFT(), random_examples(16), cfg, run=Run(f"{out}/run"))
    assert torch.distributed.get_world_size() == 2
    if torch.distributed.get_rank() == 0:
        torch.save(result.model.state_dict(), f"{out}/weights.pt")
