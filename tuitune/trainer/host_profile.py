"""Where the host's time goes during training steps: a cProfile of whole steps, by area and by function.

A GPU that waits for the host (many small kernels, a small model) is launch-bound: the step takes as long
as the Python and the launches that feed it, whatever the kernels cost. `HostProfiler` (started and
stopped around whole steps, like `step_profile.StepProfiler`, but in steps of its own: cProfile slows
Python down, which would distort the kernel profile's idle time) reports each function's own time per
step, and sums it by area: the library the code lives in, and "torch ops" for the calls into PyTorch's
C++ (dispatch, and on a GPU the kernel launch). Times are inflated by cProfile's own cost; compare
areas and functions with each other, not with the kernel profile's wall time.
"""

from __future__ import annotations

import cProfile
import pstats
import re
import time

TOP_FUNCTIONS = 25
TOP_CUMULATIVE = 40
_PACKAGE = re.compile(r"(?:site-packages|dist-packages)/([^/]+)/")
_OWN_PARTS = ("/tuitune/", "/kernels/ops/")  # a checkout's folders (installed, tuitune is a package)


def area_of(filename: str, function: str) -> str:
    """The area a profiled function belongs to (see the module doc)."""
    if filename == "~":  # a built-in: C code called from Python
        return "torch ops" if "torch" in function else "python built-ins"
    path = filename.replace("\\", "/")
    match = _PACKAGE.search(path)
    if match:
        return match.group(1).removesuffix(".py")
    return "tuitune" if any(part in path for part in _OWN_PARTS) else "python"


def _label(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    path = filename.replace("\\", "/")
    match = _PACKAGE.search(path)
    short = path[match.start(1):] if match else "/".join(path.split("/")[-2:])
    return f"{short}:{line}({function})"


class HostProfiler:
    """cProfile of whole steps: `start()` at a step boundary, `stop(steps)` at a later one."""

    def __init__(self):
        self._prof: cProfile.Profile | None = None
        self._start = 0.0

    def start(self) -> None:
        self._prof = cProfile.Profile()
        self._start = time.perf_counter()
        self._prof.enable()

    def stop(self, steps: int) -> dict:
        """The host breakdown of the `steps` steps since `start()`: milliseconds per step."""
        prof, self._prof = self._prof, None
        prof.disable()
        wall_ms = (time.perf_counter() - self._start) * 1000
        return breakdown(pstats.Stats(prof).stats, max(steps, 1), wall_ms)


def breakdown(stats: dict, steps: int, wall_ms: float) -> dict:
    """Per-step own time by area and the top functions, from pstats' raw table
    {(file, line, function): (primitive calls, calls, own seconds, cumulative seconds, callers)}."""
    areas: dict[str, float] = {}
    functions = []
    for (filename, line, function), (_, calls, own_s, cumulative_s, _) in stats.items():
        ms = own_s * 1000 / steps
        area = area_of(filename, function)
        areas[area] = areas.get(area, 0.0) + ms
        functions.append({"function": _label(filename, line, function), "area": area,
                          "calls": calls / steps, "own_ms": ms, "cumulative_ms": cumulative_s * 1000 / steps,
                          "python": filename != "~"})
    by_own = sorted(functions, key=lambda f: -f["own_ms"])
    # Python functions by the time spent in them and below: the step's phases (the loss, the backward,
    # the optimizer, the callbacks, the data), where own time alone scatters a phase over many callees.
    by_cumulative = sorted((f for f in functions if f["python"]), key=lambda f: -f["cumulative_ms"])
    for f in functions:
        del f["python"]
    return {"steps": steps, "wall_ms_per_step": wall_ms / steps,
            "by_area_ms": dict(sorted(areas.items(), key=lambda kv: -kv[1])),
            "top_functions": by_own[:TOP_FUNCTIONS], "top_cumulative": by_cumulative[:TOP_CUMULATIVE]}


def format_host_profile(h: dict, top: int = 12) -> str:
    lines = [f"host, under cProfile ({h['steps']} more steps): {h['wall_ms_per_step']:.1f} ms per step; own time "
             "per step by area:"]
    for area, ms in h["by_area_ms"].items():
        if ms >= 0.05:
            lines.append(f"  {area:24}{ms:10.1f} ms")
    lines.append("  top functions (own ms per step, calls per step):")
    for f in h["top_functions"][:top]:
        lines.append(f"    {f['own_ms']:8.2f} ms {f['calls']:8.0f}x  {f['function'][:100]}")
    if h.get("top_cumulative"):
        lines.append("  Python functions by time in them and their callees (ms per step, calls per step):")
        for f in h["top_cumulative"][:2 * top]:
            lines.append(f"    {f['cumulative_ms']:8.2f} ms {f['calls']:8.0f}x  {f['function'][:100]}")
    return "\n".join(lines)
