"""What a run cost, read from its ledger: teacher calls paid for and answered from the ledger, tokens, teacher
time, money (when the recipe gives prices) and wall time per stage.

Any family's evaluation calls :func:`run_costs` before writing its metrics; the numbers come from the run
directory alone (the ledger's calls and each finished stage's summary), so they survive re-runs: a stage that
was skipped still counts the calls it paid for when it ran.
"""

from __future__ import annotations

from typing import Any

from protege.core.run import Run


def parameters(model: Any) -> int | None:
    """Parameter count of a torch model, or None for something that is not one (a server's teacher)."""
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except (AttributeError, TypeError):
        return None


def run_costs(run: Run, *, running: str | None = None, running_seconds: float = 0.0) -> dict[str, Any]:
    """Teacher calls, tokens, time and money of the run so far.

    ``paid`` counts the ledger's calls (each was paid for once, even by a run that was interrupted);
    ``from_ledger`` the requests the finished stages found already answered there. ``running``: the stage
    calling this (not yet marked done), whose ``running_seconds`` are added to the wall time.
    """
    totals = run.ledger.totals()
    stages = {s["name"]: s for s in run.ledger.stages() if s["status"] == "done" and s["name"] != running}
    cached = sum((s["summary"].get("teacher_requests") or {}).get("from_ledger", 0) for s in stages.values())
    seconds = {name: s["summary"].get("seconds") or 0.0 for name, s in stages.items()}
    if running is not None:
        seconds[running] = round(running_seconds, 2)
    return {
        # Every call in the ledger was paid for exactly once, in whichever run (an interrupted one included).
        "teacher_calls": {"paid": totals.calls, "from_ledger": cached},
        "teacher_tokens": {"prompt": totals.prompt_tokens, "completion": totals.completion_tokens},
        "teacher_seconds": round(totals.latency_s, 2),
        "money": round(totals.cost, 6) if totals.cost > 0 else None,
        "stage_seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 2),
    }
