"""Where a training step's time goes: a torch profile of a few steps, sorted into kinds.

`StepProfiler` (started and stopped around whole steps) sorts every CUDA kernel into one of: base GEMMs
(the frozen weights' products), adapter GEMMs (a rank-r dimension), loss (products with the vocabulary
and the cross-entropy kernels), attention, dequantization, copies, norm/rope/activation kernels,
optimizer, and other. Idle is the wall time of the profiled steps during which no kernel ran; on a GPU
the report also gives the compute idle: the time no kernel but host-device copies ran (those run on the
copy engines, beside the kernels, so a step that waits for one shows up there and not in idle). On a CPU
the operators' own times are sorted the same way, and idle is the time spent outside them (Python, data
loading, logging). `tuitune bench --profile` and the trainer's `training.profile_steps` take it in
profile_windows' first window; imports torch when a profile starts.

Recording every operator on the host slows the host down (an 8b step ran 524 ms profiled against 358
ms unprofiled, H100), so the GPU waits on the host in places where an unprofiled step would not.
`StepProfiler(gpu_only=True)` therefore records the GPU's activity alone (profile_windows' `timeline`):
its idle, compute idle and gaps are the ones a real step has.
"""

from __future__ import annotations

import re
import time

_ATTENTION = re.compile(r"flash|fmha|attention|sdpa|cudnn_generated|mha", re.I)
_DEQUANT = re.compile(r"dequant", re.I)
_LOSS = re.compile(r"_ce_fwd|_ce_bwd|cross_entropy|log_softmax|nll_loss", re.I)
_COPY = re.compile(r"copy|memcpy|memset|cat|index|gather|scatter|fill", re.I)
_OPTIM = re.compile(r"adam|optimizer|multi_tensor|kOptimizer|8bit", re.I)
_FUSED = re.compile(r"rms_norm|rope|glu|layer_norm|rms|silu|rotary", re.I)
TOP_KERNELS_SHOWN = 12
_GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::addmm_")


def _gemm_kind(shapes, rank_max: int, vocab: int) -> str:
    dims = [d for s in shapes or [] if s for d in s]
    if vocab and vocab in dims:
        return "loss"
    two_d = [s for s in shapes or [] if s and len(s) == 2]
    if any(min(s) <= rank_max for s in two_d):
        return "adapter GEMMs"
    return "base GEMMs"


def classify(op_name: str, kernel_name: str, shapes, rank_max: int, vocab: int) -> str:
    if op_name in _GEMM_OPS or "gemm" in kernel_name.lower() or "nvjet" in kernel_name.lower():
        if op_name in _GEMM_OPS:
            return _gemm_kind(shapes, rank_max, vocab)
        return "base GEMMs"
    if _DEQUANT.search(kernel_name):
        return "dequantization"
    if _ATTENTION.search(kernel_name) or "attention" in op_name:
        return "attention"
    if _LOSS.search(kernel_name):
        return "loss"
    if _OPTIM.search(kernel_name) or "optim" in op_name.lower():
        return "optimizer"
    if _FUSED.search(kernel_name):
        return "norm/rope/activation"
    if _COPY.search(kernel_name) or op_name in ("aten::copy_", "aten::to", "aten::_to_copy", "aten::contiguous"):
        return "copies"
    return "other elementwise"


class StepProfiler:
    """A profile of whole training steps: `start()` at a step boundary, `stop(steps)` at a later one."""

    def __init__(self, device: str = "cuda", *, rank_max: int = 64, vocab: int = 0, gpu_only: bool = False):
        """``gpu_only`` (CUDA): record the GPU's activity alone, for idle time and gaps as an unprofiled
        host leaves them; `stop` then reports those and no breakdown by kind (which needs the operators)."""
        self.rank_max, self.vocab = rank_max, vocab
        self._cuda = device == "cuda"
        self._gpu_only = gpu_only and self._cuda
        self._prof = None
        self._start = 0.0

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        if self._gpu_only:
            activities = [ProfilerActivity.CUDA]
        else:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._cuda else [])
        self.synchronize()
        self._prof = profile(activities=activities, record_shapes=not self._gpu_only)
        self._prof.__enter__()
        self._start = time.perf_counter()

    def stop(self, steps: int) -> dict:
        """The breakdown of the `steps` steps since `start()`; times in milliseconds."""
        self.synchronize()
        wall_ms = (time.perf_counter() - self._start) * 1000
        prof, self._prof = self._prof, None
        prof.__exit__(None, None, None)
        if self._gpu_only:
            return {"steps": steps, "wall_ms": wall_ms, **idle_from_intervals(_kernel_intervals(prof), wall_ms)}
        timed = _kernel_times(prof) if self._cuda else _operator_times(prof)
        report = _breakdown(timed, steps, wall_ms, self.rank_max, self.vocab, "cuda" if self._cuda else "cpu")
        if self._cuda:
            intervals = _kernel_intervals(prof)
            if intervals:
                report.update(idle_from_intervals(intervals, wall_ms))
        return report

    def synchronize(self) -> None:
        if self._cuda:
            import torch

            torch.cuda.synchronize()


def _kernel_times(prof):
    """(operator, kernel, input shapes, microseconds) of every CUDA kernel."""
    for evt in prof.events():
        for k in getattr(evt, "kernels", []) or []:
            yield evt.name, k.name, evt.input_shapes, k.duration


_HOST_DEVICE_COPY = re.compile(r"^Memcpy (HtoD|DtoH)")


def _kernel_intervals(prof) -> list[tuple[float, float, bool, str]]:
    """(start ms, end ms, is a host-device copy, name) of every GPU activity; [] where the profiler's
    raw events are not available (then idle stays wall minus summed kernel time)."""
    try:
        from torch.autograd import DeviceType

        events = prof.profiler.kineto_results.events()
        return [(e.start_ns() / 1e6, (e.start_ns() + e.duration_ns()) / 1e6, bool(_HOST_DEVICE_COPY.match(e.name())),
                 e.name()) for e in events if e.device_type() == DeviceType.CUDA and e.duration_ns() > 0]
    except (AttributeError, RuntimeError, TypeError):
        return []


def _union_ms(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


COMPUTE_GAPS_SHOWN = 8


def _gaps(intervals) -> list[dict]:
    """Every stretch between kernels (copies left out) inside the profiled window: where in it it
    began (ms from its first kernel), how long, and the kernels on either side; the kernel that
    follows a wait names what the step waited to run."""
    kernels = sorted((iv[0], iv[1], iv[3] if len(iv) > 3 else "") for iv in intervals if not iv[2])
    gaps, end, before = [], None, ""
    for a, b, name in kernels:
        if end is not None and a > end:
            gaps.append({"at_ms": end - kernels[0][0], "ms": a - end, "after": before[:60], "before": name[:60]})
        if end is None or b > end:
            end, before = b, name
    return gaps


def _gaps_by_next_kernel(gaps: list[dict]) -> list[dict]:
    """Gap time summed by the kernel that ended each gap, most first: many short waits (a host that
    launches too slowly) add up here where no single one is long."""
    totals: dict[str, list] = {}
    for g in gaps:
        entry = totals.setdefault(g["before"], [0, 0.0])
        entry[0] += 1
        entry[1] += g["ms"]
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][1])[:COMPUTE_GAPS_SHOWN]
    return [{"before": name, "gaps": n, "ms": ms} for name, (n, ms) in ranked]


def idle_from_intervals(intervals: list[tuple], wall_ms: float) -> dict:
    """Idle and compute idle from the GPU's activity intervals (start ms, end ms, is a host-device
    copy[, name]; see the module doc), and the longest compute gaps."""
    busy = _union_ms([(iv[0], iv[1]) for iv in intervals])
    gaps = _gaps(intervals)
    compute = _union_ms([(iv[0], iv[1]) for iv in intervals if not iv[2]])
    idle, compute_idle = max(0.0, wall_ms - busy), max(0.0, wall_ms - compute)
    return {"idle_ms": idle, "idle_fraction": idle / wall_ms if wall_ms else None,
            "compute_idle_ms": compute_idle, "compute_idle_fraction": compute_idle / wall_ms if wall_ms else None,
            "compute_gaps": sorted(gaps, key=lambda g: -g["ms"])[:COMPUTE_GAPS_SHOWN],
            "compute_gaps_by_next_kernel": _gaps_by_next_kernel(gaps)}


def _operator_times(prof):
    """(operator, operator, input shapes, own microseconds) of every aten operator and optimizer step: a
    CPU has no kernels, and an operator's own time leaves out the operators it calls, so nothing counts
    twice. Autograd's bookkeeping and Python count as idle."""
    for evt in prof.events():
        if evt.name.startswith(("aten::", "Optimizer.")):
            yield evt.name, evt.name, evt.input_shapes, evt.self_cpu_time_total


def _breakdown(timed, steps: int, wall_ms: float, rank_max: int, vocab: int, device: str) -> dict:
    kinds: dict[str, float] = {}
    kernels: dict[str, list] = {}
    counted = 0
    for op_name, kernel_name, shapes, us in timed:
        kind = classify(op_name, kernel_name, shapes, rank_max, vocab)
        kinds[kind] = kinds.get(kind, 0.0) + us / 1000
        entry = kernels.setdefault((kernel_name[:90], kind), [0, 0.0])  # a CPU operator can be of two kinds
        entry[0] += 1
        entry[1] += us / 1000
        counted += 1
    busy = sum(kinds.values())
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:25]
    return {
        "device": device, "steps": steps, "wall_ms": wall_ms, "kernel_ms": busy, "kernels": counted,
        "idle_ms": max(0.0, wall_ms - busy), "idle_fraction": max(0.0, wall_ms - busy) / wall_ms if wall_ms else None,
        "by_kind_ms": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "top_kernels": [{"name": n, "calls": c, "ms": ms, "kind": kind} for (n, kind), (c, ms) in top],
    }


def _gap_lines(p: dict) -> list[str]:
    lines = []
    if p.get("compute_gaps"):
        lines.append("  the longest compute gaps (at ms, ms, the kernels before and after):")
        for g in p["compute_gaps"]:
            lines.append(f"    {g['at_ms']:8.1f} {g['ms']:6.2f} ms  {g['after'][:40]}  ->  {g['before'][:40]}")
    if p.get("compute_gaps_by_next_kernel"):
        lines.append("  compute gaps summed by the kernel that ended them (gaps, ms):")
        for g in p["compute_gaps_by_next_kernel"]:
            lines.append(f"    {g['gaps']:6}x {g['ms']:8.2f} ms  {g['before'][:60]}")
    return lines


def format_profile(p: dict) -> str:
    work = "kernels" if p.get("device", "cuda") == "cuda" else "operators"
    lines = [f"{p['steps']} steps: wall {p['wall_ms']:.1f} ms, {work} {p['kernel_ms']:.1f} ms "
             f"({p['kernels']} {'launches' if work == 'kernels' else 'calls'}), idle {p['idle_ms']:.1f} ms "
             f"({100 * (p['idle_fraction'] or 0):.1f}%)"]
    if p.get("compute_idle_ms") is not None:
        lines[0] += (f", compute idle {p['compute_idle_ms']:.1f} ms ({100 * (p['compute_idle_fraction'] or 0):.1f}%: "
                     "no kernel but host-device copies running)")
    for kind, ms in p["by_kind_ms"].items():
        lines.append(f"  {kind:24}{ms:10.1f} ms  {100 * ms / p['wall_ms']:5.1f}%")
    lines += _gap_lines(p)
    t = p.get("timeline")
    if t and t.get("compute_idle_ms") is not None:
        lines.append(f"  {t['steps']} more steps with only the GPU's activity recorded (the host at its real pace): "
                     f"wall {t['wall_ms']:.1f} ms, idle {t['idle_ms']:.1f} ms ({100 * (t['idle_fraction'] or 0):.1f}%), "
                     f"compute idle {t['compute_idle_ms']:.1f} ms ({100 * (t['compute_idle_fraction'] or 0):.1f}%)")
        lines += ["  " + line for line in _gap_lines(t)]
    if p.get("top_kernels"):
        lines.append(f"  the {TOP_KERNELS_SHOWN} longest kernels in all (calls, ms, kind):")
        for k in p["top_kernels"][:TOP_KERNELS_SHOWN]:
            lines.append(f"    {k['calls']:6}x {k['ms']:8.1f} ms  {k['kind']:22} {k['name'][:70]}")
    if p.get("host"):
        from tuitune.trainer.host_profile import format_host_profile

        lines.append(format_host_profile(p["host"]))
    return "\n".join(lines)
