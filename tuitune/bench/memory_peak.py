"""What is alive at a training step's peak of GPU memory, and where it was allocated.

`trace_step(step)` records the CUDA caching allocator's history over one call of `step` (PyTorch's
memory snapshot, Python frames only) and `peak_breakdown` replays it: the bytes alive before the
step (weights, optimizer state, anything older than the trace), the moment the step's own
allocations peak, and those allocations grouped by the line of code that made them, counted from
the first frame in tuitune's own code (else in transformers, PEFT, bitsandbytes or TRL, else the
innermost). `tuitune bench --memory-trace` runs it after the timed steps of each path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

GIB = 1024**3
OWN = ("/tuitune/", "/kernels/")
LIBRARIES = ("/transformers/", "/peft/", "/bitsandbytes/", "/trl/", "/accelerate/")
TOP = 15


def trace_step(step: Callable[[], Any], max_entries: int = 1_000_000, pool=None) -> dict:
    """Run `step` once under the allocator's history recorder and return its `peak_breakdown`; with
    `pool` (a memory pool's id) also `outside_pool_peak_gb` (`outside_pool_peak`)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(max_entries=max_entries, stacks="python")
    try:
        step()
        torch.cuda.synchronize()
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    breakdown = peak_breakdown(snapshot, before, torch.cuda.current_device())
    breakdown["reported_peak_gb"] = torch.cuda.max_memory_allocated() / GIB
    if pool is not None:
        breakdown["outside_pool_peak_gb"] = outside_pool_peak(snapshot, before, pool,
                                                             torch.cuda.current_device()) / GIB
    return breakdown


def outside_pool_peak(snapshot: dict, before_bytes: int, pool, device: int = 0) -> int:
    """The most bytes allocated at once over the trace outside the segments of memory pool ``pool`` (its
    id). ``before_bytes``: memory_allocated() when the trace started, none of it in the pool (between
    CUDA graph replays a graphs' pool holds no tensor)."""
    ranges = [(s["address"], s["address"] + s["total_size"]) for s in snapshot.get("segments", [])
              if s.get("device", device) == device and tuple(s.get("segment_pool_id", (0, 0))) == tuple(pool)]
    traces = snapshot.get("device_traces") or []
    current = peak = 0
    requested: set[int] = set()
    for event in traces[device] if device < len(traces) else []:
        address, action = event.get("addr"), event.get("action")
        if any(lo <= address < hi for lo, hi in ranges):
            if action == "free_requested":
                requested.add(address)
            continue
        if action == "alloc":
            current += int(event.get("size", 0))
            peak = max(peak, current)
        elif _frees(action, address, requested):
            current -= int(event.get("size", 0))
    return before_bytes + peak


def site_of(frames: list[dict]) -> str:
    """`file:line function` of the frame that explains an allocation (see the module's docstring)."""
    if not frames:
        return "(no Python frame)"
    for wanted in (OWN, LIBRARIES):
        for frame in frames:
            if any(part in frame.get("filename", "") for part in wanted):
                return _label(frame)
    return _label(frames[0])


def _label(frame: dict) -> str:
    path = frame.get("filename", "?")
    for marker in ("site-packages/", "/tuitune/", "/kernels/"):
        if marker in path:
            path = (marker.strip("/") + "/" if marker != "site-packages/" else "") + path.split(marker, 1)[1]
            break
    return f"{path}:{frame.get('line', '?')} {frame.get('name', '?')}"


def peak_breakdown(snapshot: dict, before_bytes: int, device: int = 0) -> dict:
    """Replay `snapshot`'s allocator trace for `device`: the peak of allocated bytes over the trace and
    what was alive then. `before_bytes`: memory_allocated() when the trace started."""
    traces = snapshot.get("device_traces") or []
    events = traces[device] if device < len(traces) else []
    peak_index, peak = _peak(events)
    live: dict[int, tuple[int, str]] = {}   # address -> (bytes, site) of the step's own allocations
    older_freed = 0                          # bytes allocated before the trace and freed in it
    requested: set[int] = set()
    for event in events[:peak_index + 1]:
        action, address, size = event.get("action"), event.get("addr"), int(event.get("size", 0))
        if action == "alloc":
            live[address] = (size, site_of(event.get("frames") or []))
        elif _frees(action, address, requested) and live.pop(address, None) is None:
            older_freed += size
    at_peak, peak_older_freed = live, older_freed
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for size, site in at_peak.values():
        groups[site][0] += size
        groups[site][1] += 1
    ranked = sorted(groups.items(), key=lambda item: -item[1][0])
    shown = [{"site": site, "gb": size / GIB, "count": count} for site, (size, count) in ranked[:TOP]]
    rest = sum(size for _, (size, _) in ranked[TOP:])
    return {
        "before_gb": before_bytes / GIB,
        "older_freed_gb": peak_older_freed / GIB,
        "own_gb": sum(size for size, _ in at_peak.values()) / GIB,
        "peak_gb": (before_bytes + peak) / GIB,
        "at_peak": shown,
        "rest_gb": rest / GIB,
        "events": len(events),
    }


def _peak(events: list[dict]) -> tuple[int, int]:
    """(index of the event after which the allocated bytes peak, those bytes relative to the start)."""
    current = peak = 0
    peak_index = -1
    requested: set[int] = set()
    for index, event in enumerate(events):
        action = event.get("action")
        if action == "alloc":
            current += int(event.get("size", 0))
            if current > peak:
                peak, peak_index = current, index
        elif _frees(action, event.get("addr"), requested):
            current -= int(event.get("size", 0))
    return peak_index, peak


def _frees(action: str, address: int, requested: set[int]) -> bool:
    """Whether this event ends an allocation as `max_memory_allocated` counts it. The allocator counts
    a block as freed when the free is requested, even while its reuse waits for other streams' work
    (`record_stream`): its "free_completed" comes later and must not count twice."""
    if action == "free_requested":
        requested.add(address)
        return True
    if action in ("free_completed", "free"):
        if address in requested:
            requested.discard(address)
            return False
        return True  # its request came before the trace started
    return False


def format_breakdown(breakdown: dict) -> str:
    """The breakdown as lines for the bench report."""
    lines = [f"peak {breakdown['peak_gb']:.2f} GiB = {breakdown['before_gb']:.2f} GiB alive before the step "
             f"- {breakdown['older_freed_gb']:.2f} GiB of it freed by then + {breakdown['own_gb']:.2f} GiB allocated "
             f"in the step and alive at its peak (max_memory_allocated: "
             f"{breakdown.get('reported_peak_gb', float('nan')):.2f} GiB). The step's allocations alive at the peak:"]
    for row in breakdown["at_peak"]:
        lines.append(f"  {row['gb'] * 1024:8.1f} MiB  x{row['count']:<4d} {row['site']}")
    if breakdown["rest_gb"]:
        lines.append(f"  {breakdown['rest_gb'] * 1024:8.1f} MiB  elsewhere")
    return "\n".join(lines)
