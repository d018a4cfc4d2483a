"""Which recipe trains a run: `training.objective` (auto from the data's format) picks SFT, DPO, ORPO or CPT."""

from __future__ import annotations

from tuitune.config import Config
from tuitune.objective import CPT, DPO, ORPO, resolve_objective
from tuitune.runs import RunDir
from tuitune.trainer.event_sink import ControlInbox, EventSink


def train(config: Config, run: RunDir, sink: EventSink, inbox: ControlInbox, resume_from: str | None = None,
          on_trained=None) -> dict:
    """Run the job with the recipe its objective names; returns the `finished` summary."""
    objective = resolve_objective(config)
    sink.log(f"Objective: {objective.name} ({objective.reason})")
    if objective.name in (DPO, ORPO):
        from tuitune.trainer import preference

        return preference.train(config, run, sink, inbox, resume_from, on_trained, objective=objective.name)
    if objective.name == CPT:
        from tuitune.trainer import pretraining

        return pretraining.train(config, run, sink, inbox, resume_from, on_trained)
    from tuitune.trainer import sft

    return sft.train(config, run, sink, inbox, resume_from=resume_from, on_trained=on_trained)
