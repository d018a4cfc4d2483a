"""Measure peak GPU memory over a grid of configurations, for calibrating `tuitune.fit`.

`python -m tuitune.bench.calibrate OUT_DIR [--paths hf,tuitune] [--shapes llama-1b,llama-8b]`
builds the shapes' checkpoints, then runs one measuring process per (shape, method, path), each
measuring several (batch, seq) points in its own peak-memory window, and writes one JSON file per
process plus `calibration.json` with everything. Results are written as they come, so a run cut
short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tuitune.bench.runner import ensure_checkpoint, run_path
from tuitune.bench.shapes import get_shape
from tuitune.bench.measure import Job
from tuitune.quick_exit import freeze_at_exit

# (shape, method) -> [batch, seq, steps, warmup] points, smallest first so that the allocator's
# cache from one point never hides the next one's peak.
GRID: dict[tuple[str, str, str], list[list[int]]] = {
    ("llama-1b", "qlora", "none"): [[1, 1024, 3, 1], [2, 2048, 3, 1]],
    ("llama-1b", "qlora", "standard"): [[1, 1024, 3, 1], [4, 1024, 3, 1], [2, 2048, 8, 2], [1, 4096, 3, 1], [4, 4096, 3, 1]],
    ("llama-1b", "lora", "standard"): [[1, 1024, 3, 1], [4, 1024, 3, 1], [2, 2048, 3, 1], [1, 4096, 3, 1]],
    ("llama-8b", "qlora", "standard"): [[1, 2048, 3, 1], [2, 2048, 6, 2], [1, 4096, 3, 1]],
    ("llama-8b", "lora", "standard"): [[1, 2048, 3, 1], [2, 2048, 3, 1]],
}


def peak_points(results: list[dict]) -> list[dict]:
    """One flat record per measured point: the configuration and its peaks (for tests/core)."""
    points = []
    for run in results:
        for p in run.get("points", []):
            if "measured_peak_gb" not in p:
                continue
            points.append({
                "shape": run["shape"], "method": run["method"], "path": run["path"], "rank": run["rank"],
                "checkpointing": run.get("checkpointing_mode", "standard"),
                "kernels": run.get("kernels"), "batch": p["batch"], "seq": p["seq"],
                "peak_allocated_gb": round(p["peak_allocated_gb"], 3),
                "peak_reserved_gb": round(p["peak_reserved_gb"], 3),
                "context_gb": round(p["context_gb"], 3),
                "measured_peak_gb": round(p["measured_peak_gb"], 3),
                "tokens_per_s": round(p["tokens_per_s"]) if p.get("tokens_per_s") else None,
            })
    return points


def estimate_for(point: dict) -> float:
    """The fit estimate for a measured point (fused loss only where tuitune's patcher applied)."""
    from tuitune.bench.shapes import SHAPES
    from tuitune.fit import estimate

    fused = point["path"] == "tuitune" and str(point.get("kernels")).startswith("applied")
    return estimate(SHAPES[point["shape"]].model_spec(), point["method"], batch=point["batch"], seq=point["seq"],
                    rank=point["rank"], checkpointing=point["checkpointing"], fused_loss=fused).total_gb


def markdown_table(points: list[dict]) -> str:
    """Measured against estimated, one row per point, for BENCHMARKS.md."""
    rows = ["| shape | method | path | checkpointing | batch × seq | peak allocated | peak reserved | "
            "measured peak | estimate | error |", "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for p in points:
        est = estimate_for(p)
        err = (est / p["measured_peak_gb"] - 1) * 100
        rows.append(f"| {p['shape']} | {p['method']} | {p['path']} | {p['checkpointing']} | {p['batch']} × {p['seq']} "
                    f"| {p['peak_allocated_gb']:.2f} | {p['peak_reserved_gb']:.2f} | {p['measured_peak_gb']:.2f} "
                    f"| {est:.2f} | {err:+.1f}% |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuitune.bench.calibrate")
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--paths", default="hf,tuitune")
    parser.add_argument("--jobs", default=",".join(":".join(k) for k in GRID),
                        help="shape:method:checkpointing entries of GRID, run in this order")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--table", type=Path, metavar="PEAKS_JSON",
                        help="print the measured-vs-estimated markdown table of a peaks file and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())["points"]))
        return 0
    if args.out is None:
        parser.error("OUT is required unless --table is given")
    args.out.mkdir(parents=True, exist_ok=True)
    everything = []
    for entry in args.jobs.split(","):
        name, method, checkpointing = entry.split(":")
        points = GRID[(name, method, checkpointing)]
        shape = get_shape(name)
        t0 = time.perf_counter()
        folder = ensure_checkpoint(shape)
        print(f"checkpoint {name}: {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for path in args.paths.split(","):
            t0 = time.perf_counter()
            job = Job(checkpoint=str(folder), vocab=shape.vocab, path=path, method=method,
                      rank=args.rank, points=points, checkpointing=checkpointing)
            result = {"shape": name, "checkpointing_mode": checkpointing, **run_path(job)}
            everything.append(result)
            (args.out / "calibration.json").write_text(json.dumps(everything, indent=1))
            print(f"{name} {method} {path} checkpointing {checkpointing}: {time.perf_counter() - t0:.0f} s "
                  f"(kernels {result.get('kernels')}; checkpointing {result.get('checkpointing')})", flush=True)
            for p in result.get("points", []):
                print(f"  b{p['batch']}x{p['seq']}: peak alloc {p.get('peak_allocated_gb', 0):.2f} reserved "
                      f"{p.get('peak_reserved_gb', 0):.2f} measured {p.get('measured_peak_gb', 0):.2f} GiB, "
                      f"{p.get('tokens_per_s') or 0:,.0f} tok/s {p.get('error', '')}", flush=True)
            if "error" in result:
                print(f"  failed: {result['error']}", flush=True)
    return 0


if __name__ == "__main__":
    freeze_at_exit()
    sys.exit(main())
