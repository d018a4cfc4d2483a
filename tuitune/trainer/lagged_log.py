"""Each step's log read back from the GPU one step late, so the host never waits for the GPU between steps.

With ``logging_steps = 1`` (the default) the Trainer reads the loss, and the SFT trainer its deferred
metrics, at the end of every step: the host waits there until the GPU has finished the step, and the
GPU then idles while the host runs the callbacks, fetches the next batches and queues the next
forward. Here, at the end of step N, those numbers are copied to host memory behind an event with no
wait, and logged when step N+1 ends, by which time the copy has long landed. Step N's log is then
exactly what it would have been (the same loss, gradient norm, learning rate, metrics, step number
and epoch); only when the callbacks see it moves, by one step.

A step is logged at once, as before, when anything may read its numbers right away: an evaluation, a
checkpoint, a stop, the run's last step, or several processes (their logs gather across ranks).
``TUITUNE_LAGGED_LOG=0`` turns the lag off (to measure it against the Trainer's own order).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch


def lag_enabled() -> bool:
    return os.environ.get("TUITUNE_LAGGED_LOG", "1") != "0"


@dataclass
class PendingLog:
    """Step ``step``'s numbers on their way to the host: ``values`` is filled once ``ready`` has passed."""

    values: torch.Tensor  # float64, on the host: loss sum, gradient norm, then the parts' values
    ready: torch.cuda.Event | None  # None when the numbers were on the host already (a CPU run)
    layout: list[tuple[str, int, bool]]  # (part, size, present) after the loss and gradient norm
    has_grad_norm: bool
    grad_norm: float | None  # a gradient norm that was a number already
    step: int
    epoch: float | None
    tokens_seen: int  # the state's count when the step ended
    window: int  # steps the loss sum covers
    learning_rate: float
    ended_at: float  # the step's clock (see LaggedLogMixin.log_clock)

    def read(self) -> tuple[float, float | None, dict[str, list[float] | None]]:
        if self.ready is not None:
            self.ready.synchronize()
        values = self.values.tolist()
        grad_norm = values[1] if self.has_grad_norm else self.grad_norm
        parts, at = {}, 2
        for name, size, present in self.layout:
            parts[name] = values[at:at + size] if present else None
            at += size
        return values[0], grad_norm, parts


class LaggedLogMixin:
    """Put ahead of a ``transformers.Trainer`` subclass. A subclass with numbers of its own to log
    hands them over in ``_lagged_parts`` (taken off the GPU with the loss) and gets them back in
    ``_use_lagged_parts`` just before its ``log`` runs for that step."""

    _pending_log: PendingLog | None = None
    _lag_buffer: torch.Tensor | None = None
    _lagged_any = False
    # The time a step's log stands for, read by the events callback for its tokens/s: once a step has
    # been lagged, each step's clock is when its log call had the previous step's numbers back (the GPU
    # had finished that step, and the host had queued this one), whether its own log is lagged or not.
    # Timing the log itself would give a lagged log the next step's host time and the at-once log after
    # it almost none. None: the callback's own clock.
    log_clock: float | None = None

    def _lagged_parts(self) -> dict[str, tuple[int, torch.Tensor | None]]:
        """Name -> (size, float64 tensor of that size, or None when there is nothing to log)."""
        return {}

    def _use_lagged_parts(self, parts: dict[str, list[float] | None]) -> None:
        """Called with ``_lagged_parts``'s values, read back, right before ``log`` for their step."""

    def _lag_allowed(self) -> bool:
        """False where the subclass logs numbers that the next step would mix into this one's."""
        return True

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, model, trial, epoch, ignore_keys_for_eval, start_time,
                                 learning_rate=None):
        self._flush_lagged_log(start_time)
        ended_at = time.time()
        if self._may_lag(tr_loss):
            self._lag_log(tr_loss, grad_norm, learning_rate, ended_at)
            self._lagged_any = True
        self.log_clock = ended_at if self._lagged_any else None
        try:
            super()._maybe_log_save_evaluate(tr_loss, grad_norm, model, trial, epoch, ignore_keys_for_eval,
                                             start_time, learning_rate=learning_rate)
        finally:
            self.log_clock = None

    def _may_lag(self, tr_loss) -> bool:
        control, state = self.control, self.state
        return (lag_enabled() and control.should_log and state.global_step > self._globalstep_last_logged
                and not (control.should_evaluate or control.should_save or control.should_training_stop
                         or control.should_epoch_stop)
                and state.global_step < state.max_steps
                and self.accelerator.num_processes == 1 and isinstance(tr_loss, torch.Tensor)
                and self._lag_allowed())

    def _lag_log(self, tr_loss: torch.Tensor, grad_norm, learning_rate, ended_at: float) -> None:
        """What the Trainer's log would read now, copied towards the host without waiting; the loss
        sum starts over as the Trainer's does."""
        device = tr_loss.device
        grad_is_tensor = isinstance(grad_norm, torch.Tensor)
        pieces = [tr_loss.detach().reshape(1).to(torch.float64),
                  grad_norm.detach().reshape(1).to(device, torch.float64) if grad_is_tensor
                  else torch.zeros(1, dtype=torch.float64, device=device)]
        layout = []
        for name, (size, value) in self._lagged_parts().items():
            layout.append((name, size, value is not None))
            pieces.append(value.reshape(size).to(device, torch.float64) if value is not None
                          else torch.zeros(size, dtype=torch.float64, device=device))
        flat = torch.cat(pieces)
        tr_loss -= tr_loss
        on_gpu = device.type == "cuda"
        host = self._host_buffer(flat.numel(), pinned=on_gpu)
        host.copy_(flat, non_blocking=on_gpu)
        ready = None
        if on_gpu:
            ready = torch.cuda.Event()
            ready.record()
        state = self.state
        self._pending_log = PendingLog(
            values=host, ready=ready, layout=layout, has_grad_norm=grad_is_tensor,
            grad_norm=None if grad_is_tensor else grad_norm, step=state.global_step, epoch=state.epoch,
            tokens_seen=state.num_input_tokens_seen,
            window=state.global_step - self._globalstep_last_logged,
            learning_rate=learning_rate if learning_rate is not None else self._get_learning_rate(),
            ended_at=ended_at)
        self._globalstep_last_logged = state.global_step
        self.store_flos()

    def _host_buffer(self, size: int, pinned: bool) -> torch.Tensor:
        """One host buffer, reused: a log is read before the next one is lagged."""
        buffer = self._lag_buffer
        if buffer is None or buffer.numel() != size or buffer.is_pinned() != pinned:
            buffer = torch.empty(size, dtype=torch.float64, pin_memory=pinned)
            self._lag_buffer = buffer
        return buffer

    def flush_lagged_log(self) -> None:
        """Log the lagged step now (a pause: what is on screen is every finished step)."""
        self._flush_lagged_log()

    def _flush_lagged_log(self, start_time=None) -> None:
        """Log the step that was lagged, as itself: its step number, epoch and tokens seen while the
        callbacks see it. Tokens that its ``log`` counts in (deferred counts) stay counted, and the
        current step's ``should_log`` stays as it was (the Trainer's ``on_log`` clears it)."""
        pending, self._pending_log = self._pending_log, None
        if pending is None:
            return
        loss_sum, grad_norm, parts = pending.read()
        logs = {"loss": loss_sum / pending.window}
        if grad_norm is not None:
            logs["grad_norm"] = grad_norm
        logs["learning_rate"] = pending.learning_rate
        self._total_loss_scalar += loss_sum
        self._use_lagged_parts(parts)
        state = self.state
        step, epoch, tokens = state.global_step, state.epoch, state.num_input_tokens_seen
        should_log, clock = self.control.should_log, self.log_clock
        state.global_step, state.epoch, state.num_input_tokens_seen = pending.step, pending.epoch, pending.tokens_seen
        self.log_clock = pending.ended_at
        try:
            self.log(logs, start_time)
        finally:
            counted = state.num_input_tokens_seen - pending.tokens_seen
            state.global_step, state.epoch, state.num_input_tokens_seen = step, epoch, tokens + counted
            self.control.should_log, self.log_clock = should_log, clock

    def _finalize_training(self, trial, num_train_samples, start_time):
        self._flush_lagged_log(start_time)  # normally done: the last step is never lagged
        return super()._finalize_training(trial, num_train_samples, start_time)
