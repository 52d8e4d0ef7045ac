"""The ``reasoning`` family: problems with verifiable final answers, difficulty estimated by sampling, an extra
sampling budget allocated where it teaches most (uniform, HS-STaR, DAST), and self-training on the samples
(STaR fine-tuning on correct responses, DPO on correct/incorrect pairs).

The modules here are the pure core: answer extraction and verifiers (:mod:`.answers`), process scores
(:mod:`.process`), problem sources (:mod:`.sources`), per-problem statistics and labels (:mod:`.difficulty`),
budget allocation (:mod:`.allocate`), self-training data and the DPO objective (:mod:`.selftrain`), sampling
from a causal LM (:mod:`.sampling`) and evaluation metrics (:mod:`.metrics`).
"""
