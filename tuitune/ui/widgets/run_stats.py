"""The Monitor's stats panel: a run's latest step figures, drawn from its RunState."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

from tuitune.run_state import RunState
from tuitune.ui.widgets.loss_chart import format_value


def clock_text(seconds: float | None) -> str:
    """HH:MM:SS, or "-" when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def stats_text(state: RunState) -> str:
    step = state.last_step

    def num(key: str, fmt: str = "{:.4g}") -> str:
        value = step.get(key)
        return "-" if value is None else fmt.format(value)

    max_steps = state.max_steps or step.get("max_steps") or "?"
    return "\n".join([
        f"step       {step.get('step', '-')} / {max_steps}",
        f"epoch      {num('epoch', '{:.2f}')}",
        *([f"objective  {state.objective}"] if state.objective else []),
        f"loss       {num('loss')}",
        *method_lines(step),
        f"eval loss  {'-' if state.eval_loss is None else format_value(state.eval_loss)}",
        *([f"best       step {state.best_step} ({format_value(state.best_eval_loss)})"]
          if state.best_step is not None and state.best_eval_loss is not None else []),
        f"lr         {num('lr', '{:.3e}')}",
        f"grad norm  {num('grad_norm')}",
        f"tokens/s   {num('tokens_per_s', '{:,.0f}')}",
        f"samples/s  {num('samples_per_s', '{:.2f}')}",
        *memory_lines(step),
        f"elapsed    {clock_text(step.get('elapsed_s')) if step else '-'}",
    ])


def method_lines(step: dict[str, Any]) -> list[str]:
    """DPO's and ORPO's figures beside the loss: reward margin, reward accuracy, chosen/rejected rewards."""
    if step.get("reward_margin") is None:
        return []
    lines = [f"margin     {step['reward_margin']:.4g}"]
    if step.get("reward_accuracy") is not None:
        lines.append(f"reward acc {step['reward_accuracy']:.0%}")
    if step.get("reward_chosen") is not None and step.get("reward_rejected") is not None:
        lines.append(f"chosen/rej {step['reward_chosen']:.3g} / {step['reward_rejected']:.3g}")
    if step.get("nll_loss") is not None:
        lines.append(f"nll loss   {step['nll_loss']:.4g}")
    return lines


def memory_lines(step: dict[str, Any]) -> list[str]:
    allocated, reserved = step.get("mem_allocated_gb"), step.get("mem_reserved_gb")
    if allocated is not None:
        lines = [f"GPU alloc  {allocated:.2f} GB"]
        if reserved is not None:
            lines.append(f"GPU resv   {reserved:.2f} GB")
        return lines
    if step.get("rss_gb") is not None:
        return [f"RAM        {step['rss_gb']:.2f} GB (no GPU)"]
    return ["GPU mem    -"]


class RunStats(Static):
    """Step, loss, learning rate, throughput and memory of the run's latest step."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(stats_text(RunState()), id=id, markup=False)

    def show(self, state: RunState) -> None:
        self.update(stats_text(state))
