"""The trainer's peak outside a lent graph pool (tuitune.trainer.outside_pool_peak), against a fake
allocator whose peak counter the tracker reads and resets as it does torch.cuda's, driven in the
order ModelGraphs drives it: lending, the allocation, lent; then a backward replay."""

import torch

from tuitune.trainer.outside_pool_peak import OutsidePoolPeak


class Allocator:
    def __init__(self):
        self.allocated = 0
        self.peak = 0

    def alloc(self, nbytes):
        self.allocated += nbytes
        self.peak = max(self.peak, self.allocated)

    def free(self, nbytes):
        self.allocated -= nbytes

    def reset(self):
        self.peak = self.allocated


def _lend(peak, allocator, nbytes):
    peak.lending()
    allocator.alloc(nbytes)
    tensor = torch.empty(nbytes, dtype=torch.uint8)
    peak.lent(tensor)
    return tensor


def _step(peak, a, forward=300, loss_outside=200):
    a.alloc(forward)  # the forward's own tensors, outside the pool
    a.free(forward)
    head = _lend(peak, a, 490)
    chunk = _lend(peak, a, 130)
    a.alloc(loss_outside)  # the loss's tensors outside the pool, while the lent ones live
    a.free(loss_outside)
    a.free(chunk.numel())
    a.free(head.numel())
    peak.replaying()  # the first backward replay
    peak.replaying()  # and the next ones: nothing to close


def test_what_was_lent_is_taken_off_the_loss_phase_peak():
    a = Allocator()
    a.alloc(500)  # weights, before training
    peak = OutsidePoolPeak(lambda: a.peak, a.reset)
    assert peak.before == 500
    for _ in range(3):
        _step(peak, a)
    assert peak.bytes() == 800  # the forward's 500 + 300; the loss phase reaches 700 outside the pool


def test_a_loss_phase_that_peaks_higher_than_the_forward_counts_once():
    a = Allocator()
    a.alloc(100)
    peak = OutsidePoolPeak(lambda: a.peak, a.reset)
    _step(peak, a, forward=50, loss_outside=900)
    assert peak.bytes() == 1000  # 100 + 900 outside the pool; the 620 lent are the pool's


def test_the_peak_before_training_is_kept_apart():
    a = Allocator()
    a.alloc(3000)
    a.free(2500)  # loading the model peaked higher than any step
    peak = OutsidePoolPeak(lambda: a.peak, a.reset)
    _step(peak, a)
    assert peak.before == 3000 and peak.bytes() == 800


def test_a_capture_leaves_its_pool_tensors_out_and_keeps_the_stretch_before_it():
    a = Allocator()
    a.alloc(100)
    peak = OutsidePoolPeak(lambda: a.peak, a.reset)
    a.alloc(400)  # the warm-up run before the capture, outside the pool
    a.free(400)
    with peak.capture():
        a.alloc(600)  # the captured layer's working set: the pool's, counted whole by the run's peak
        a.free(600)
    a.alloc(50)
    a.free(50)
    assert peak.bytes() == 500  # 100 + the warm-up's 400; the capture's 700 would count the pool twice


def test_a_capture_while_lending_takes_the_lent_tensors_off_once():
    a = Allocator()
    a.alloc(100)
    peak = OutsidePoolPeak(lambda: a.peak, a.reset)
    head = _lend(peak, a, 490)
    a.alloc(200)  # outside the pool, while the head is lent: 790 allocated
    a.free(200)
    with peak.capture():
        a.alloc(900)
        a.free(900)
    a.free(head.numel())
    peak.replaying()
    assert peak.bytes() == 300  # 790 less the 490 lent


def test_the_run_summary_names_the_parts_of_its_peak(monkeypatch):
    from types import SimpleNamespace

    from tuitune.trainer import activation_checkpointing, run_loop

    a = Allocator()
    a.alloc(3 * 1024 ** 3)
    a.free(2 * 1024 ** 3)  # loading peaked at 3 GiB, 1 GiB stays
    graphs = SimpleNamespace(outside_peak=OutsidePoolPeak(lambda: a.peak, a.reset), pool_gb=lambda: 0.5)
    _step(graphs.outside_peak, a, forward=1024 ** 3 // 2)
    monkeypatch.setattr(activation_checkpointing, "layer_graphs", lambda model: graphs)
    parts = run_loop.peak_parts_of_a_lent_pool(object())
    assert parts == {"before_training_gb": 3.0, "outside_pool_gb": 1.5, "pool_gb": 0.5}
    assert run_loop._peak_gpu_memory_gb(object(), parts) == 3.0  # loading outweighs 1.5 + 0.5
    assert run_loop._peak_gpu_memory_gb(object(), dict(parts, pool_gb=2.0)) == 3.5
    graphs.outside_peak = None  # graphs that do not lend their pool
    assert run_loop.peak_parts_of_a_lent_pool(object()) is None
