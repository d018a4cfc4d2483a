"""The trainer's peak memory when the loss borrows the layer graphs' pool (loss_in_graph_pool).

A run with graphed layers holds their pool, which the allocator counts as reserved, never as
allocated, so the run's peak is the allocator's peak plus the pool (run_loop). Where the loss phase
borrows the pool for the LM head's copy and a logits chunk, those two tensors count as allocated and
sit inside the pool: counted twice, 0.62 GiB of a 1.45 GiB llama-1b step (H100, 2026-12-07). The
bench counts them once from a traced step (bench.memory_peak); a whole run cannot afford tracing.

So the allocator's peak is read, then reset, where lending starts (the loss's first lent tensor)
and where it ends (the first backward replay, before which the loss has dropped what it borrowed):
outside a borrowing nothing is lent and the whole peak is outside the pool; during one, what was lent
is taken off its peak. The run's peak is the largest of those plus the pool, or the peak before
training if that was larger. A capture (the first steps) allocates only in the pool, so its own peak
is left out too. A tensor allocated outside the pool after the loss dropped its lent ones
and before the first backward replay is counted short by what was lent (there, the gradients that
reach the last layer: 16 MB each at llama-1b with 4,096 tokens, against a 0.83 GiB peak). Reading and resetting
the peak are host-side counters, with no wait for the GPU. Only the trainer uses this: the resets
would move the peak that the bench's own measurement reads.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable


class OutsidePoolPeak:
    """Bytes allocated outside the graphs' pool at their peak, kept as the loss borrows from the pool."""

    def __init__(self, read_peak: Callable[[], int], reset_peak: Callable[[], None]):
        self._read, self._reset = read_peak, reset_peak
        # Before the first step the pool held no tensor (its segment was lent once, to reserve it), so
        # the allocator's peak until now is the whole footprint of that time.
        self.before = read_peak()
        self._peak = 0
        self._lent = 0  # bytes lent in the borrowing under way
        self._borrowing = False
        self._carried = 0  # the stretch's peak from before a capture, whose own peak is left out
        reset_peak()

    @classmethod
    def on_device(cls, device) -> OutsidePoolPeak:
        import torch

        return cls(lambda: torch.cuda.max_memory_allocated(device), lambda: torch.cuda.reset_peak_memory_stats(device))

    def lending(self) -> None:
        """A tensor is about to be allocated in the pool for the loss."""
        if not self._borrowing:
            self._close(0)  # everything since the last reset ran with nothing lent
            self._borrowing = True

    def lent(self, tensor) -> None:
        """``tensor`` was just allocated in the pool; it lives until the first backward replay."""
        self._lent += tensor.untyped_storage().nbytes()

    def replaying(self) -> None:
        """A backward replay starts: whatever was lent has been dropped."""
        if self._borrowing:
            self._close(self._lent)
            self._borrowing, self._lent = False, 0

    @contextmanager
    def capture(self):
        """A CUDA graph's capture. Torch sends whatever the capturing stream allocates to the graphs'
        pool, which the run's peak counts whole, and nothing else runs meanwhile, so the capture's own
        peak is left out (it would count the pool's tensors twice); the stretch's peak before it is kept."""
        self._carried = max(self._carried, self._read())
        try:
            yield
        finally:
            self._reset()

    def bytes(self) -> int:
        """The peak outside the pool so far."""
        self._close(self._lent)
        return self._peak

    def _close(self, lent: int) -> None:
        self._peak = max(self._peak, max(self._read(), self._carried) - lent)
        self._carried = 0
        self._reset()
