"""Run the bench: build the shape's checkpoint, then each path in its own process, then compare.

This module imports no torch: the checkpoint build and every measured path run as child
processes (`tuitune.bench.shapes`, `tuitune.bench.measure`), so one path's allocator state and
CUDA context never leak into another's numbers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from tuitune import dequantize_policy, fit
from tuitune.bench.shapes import BenchShape, checkpoint_dir, get_shape
from tuitune.bench.measure import Job
from tuitune.errors import TuituneError

AUTOCAST = "hf autocast"  # the stock path with its forward under bf16 autocast, as the HF Trainer runs it
PATH_LABELS = {"hf": "baseline (hf)", AUTOCAST: "baseline (hf autocast)", "tuitune": "tuitune"}
BASELINES = {"hf": ("hf",), "hf-autocast": (AUTOCAST,), "both": ("hf", AUTOCAST), "none": ()}
DEQUANTIZED = "dequantized"  # the policy: no recomputation, base weights kept dequantized (tuitune.dequantize_policy)
PROCESS_TIMEOUT_S = 3600


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_child(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """`python -m module args` run from the folder that holds this very tuitune package.

    `-m` puts the working folder first on the child's sys.path: from inside another checkout the
    child would measure that checkout's code, not the code the parent runs (an A/B of two trees
    measured one tree twice on the H200, 2026-12-05)."""
    package_parent = Path(__file__).resolve().parents[2]  # this file is <there>/tuitune/bench/runner.py
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=_child_env(), cwd=package_parent)


def ensure_checkpoint(shape: BenchShape, *, timeout: float = PROCESS_TIMEOUT_S) -> Path:
    folder = checkpoint_dir(shape)
    marker = folder / "tuitune-shape.json"
    if marker.is_file() and json.loads(marker.read_text()) == asdict(shape):
        return folder
    proc = run_child("tuitune.bench.shapes", shape.name, timeout=timeout)
    if proc.returncode != 0:
        raise TuituneError(f"Building the random-weight {shape.name} checkpoint in {folder} failed:\n"
                           f"{_tail(proc.stderr)}\nCheck the free disk space there, then run the bench again.")
    return folder


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_path(job: Job, *, timeout: float = PROCESS_TIMEOUT_S) -> dict:
    """Run one measuring process; its result dict, or {"error": ...} when it failed."""
    with tempfile.TemporaryDirectory(prefix="tuitune-bench-") as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(asdict(job)))
        try:
            proc = run_child("tuitune.bench.measure", str(job_file), str(result_file), timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"path": job.path, "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not result_file.exists():
            return {"path": job.path, "error": _tail(proc.stderr) or f"exit status {proc.returncode}"}
        return json.loads(result_file.read_text())


def run_bench(shape_name: str, *, batch: int, seq: int, rank: int, steps: int, method: str = "qlora",
              baseline: str = "hf", warmup: int | None = None, device: str = "auto",
              checkpointing: str = "standard", profile: int = 0, repeat: int = 1,
              memory_trace: bool = False, free_gb: float | None = None, cuda_graphs: str = "off",
              dequantized: bool = False, memory_cap_gb: float = 0.0) -> dict:
    """Measure each path in its own process; with ``repeat`` > 1 the paths run that many rounds,
    alternating, and each run's tokens/s is kept in ``tokens_per_s_runs`` (the first round's result,
    with its profile, is the path's entry).

    ``checkpointing="auto"``: the stock path recomputes as users run it (transformers' own
    checkpointing), tuitune's runs once per mode of ``fit.AUTO_ORDER`` (kept under ``policies``), and
    its entry in ``runs`` is the mode that `training.gradient_checkpointing = "auto"` picks for this
    shape and ``free_gb`` (the GPU's free memory; read from NVML when not given).

    Under "auto", a QLoRA run also tries no recomputation with the base weights kept dequantized
    (`training.dequantize_once = "auto"`), first, under the policy ``DEQUANTIZED``.

    ``cuda_graphs``: "on" replays tuitune's checkpointed layers as CUDA graphs; "both" runs tuitune's
    path without and with them (the second under "tuitune graphs"). ``dequantized``: tuitune's path
    keeps the 4-bit base weights dequantized (`training.dequantize_once = "on"`). ``memory_cap_gb``: when
    above 0, each measuring process may use at most this much GPU memory."""
    shape = get_shape(shape_name)
    if steps < 1:
        raise TuituneError("--steps must be at least 1.")
    if warmup is None:
        warmup = min(2, steps - 1)
    if not 0 <= warmup < steps:
        raise TuituneError(f"--warmup must be between 0 and steps - 1 ({steps - 1}); got {warmup}.")
    checkpoint = checkpoint_dir(shape)  # the first measuring process builds it when it is not cached yet
    auto = auto_choice(shape, method=method, batch=batch, seq=seq, rank=rank, device=device,
                       free_gb=free_gb, cap_gb=memory_cap_gb) if checkpointing == "auto" else None
    # (run key, path, checkpointing mode, base weights kept dequantized) in the order they run
    if baseline not in BASELINES:
        raise TuituneError(f"--baseline must be one of {', '.join(BASELINES)}; got {baseline!r}.")
    plan = [(key, "hf", "standard" if auto else checkpointing, False) for key in BASELINES[baseline]]
    if cuda_graphs not in ("off", "on", "both"):
        raise TuituneError(f"--cuda-graphs must be off, on or both; got {cuda_graphs!r}.")
    if auto:
        plan += [(f"tuitune {DEQUANTIZED}", "tuitune", "none", True)] if DEQUANTIZED in auto["needs_gb"] else []
        plan += [(f"tuitune {mode}", "tuitune", mode, dequantized) for mode in fit.AUTO_ORDER]
    else:
        plan += [("tuitune", "tuitune", checkpointing, dequantized)]
    plan = [(key, path, mode, kept, path == "tuitune" and cuda_graphs == "on") for key, path, mode, kept in plan]
    if cuda_graphs == "both":
        # without recomputation too: each layer's forward and backward graphs keep its activations
        plan += [(key + " graphs", path, mode, kept, True) for key, path, mode, kept, _ in plan if path == "tuitune"]
    runs = {}
    for round_ in range(repeat):
        for key, path, mode, kept, graphs in plan:
            job = Job(checkpoint=str(checkpoint), vocab=shape.vocab, path=path, method=method, rank=rank,
                      points=[[batch, seq, steps, warmup]], checkpointing=mode, device=device,
                      shape=shape.name, profile_steps=profile if round_ == 0 else 0,
                      memory_trace=memory_trace and round_ == 0, cuda_graphs=graphs, dequantized=kept,
                      autocast=key == AUTOCAST, memory_cap_gb=memory_cap_gb)
            result = run_path(job)
            first = runs.setdefault(key, result)
            if repeat > 1:
                first.setdefault("tokens_per_s_runs", []).append(
                    None if "error" in result else _point(result).get("tokens_per_s"))
    out = {
        "shape": shape_name, "method": method, "rank": rank, "batch": batch, "seq": seq, "steps": steps,
        "warmup": warmup, "checkpointing": checkpointing, "repeat": repeat, "cuda_graphs": cuda_graphs,
        "dequantized": dequantized,
    }
    if auto:
        out["auto"] = auto
        out["policies"] = {mode: runs.pop(f"tuitune {mode}") for mode in (DEQUANTIZED, *fit.AUTO_ORDER)
                           if f"tuitune {mode}" in runs}
        out["policies"].update({f"{mode} graphs": runs.pop(f"tuitune {mode} graphs") for mode in fit.AUTO_ORDER
                                if f"tuitune {mode} graphs" in runs})
        runs["tuitune"] = out["policies"][auto["policy"]]
    out = {**out, "runs": runs, "ratios": ratios(runs)}
    if "hf" in runs and AUTOCAST in runs:
        out["ratios_autocast"] = ratios(runs, base=AUTOCAST)
    return out


def auto_choice(shape: BenchShape, *, method: str, batch: int, seq: int, rank: int, device: str,
                free_gb: float | None = None, cap_gb: float = 0.0) -> dict:
    """The mode `training.gradient_checkpointing = "auto"` picks for tuitune's path at this shape, with
    the trainer's own rule (checkpointing_policy) and the GPU's free memory, at most ``cap_gb`` when
    above 0 (the bench's --memory-cap)."""
    from tuitune.checkpointing_policy import choose_for_spec

    if free_gb is None and device != "cpu":
        free_gb = nvml_free_gb()
    if cap_gb:
        free_gb = cap_gb if free_gb is None else min(free_gb, cap_gb)
    spec = shape.model_spec()
    offered = (fit.estimate(spec, method, batch=batch, seq=seq, rank=rank, checkpointing="none",
                            dequantized=True).total_gb if method == "qlora" and device != "cpu" else None)
    choice = choose_for_spec(lambda mode: fit.estimate(spec, method, batch=batch, seq=seq, rank=rank,
                                                       checkpointing=mode).total_gb, free_gb,
                             dequantized_need_gb=offered)
    needs = {(DEQUANTIZED if label == dequantize_policy.LABEL else label): gb for label, gb in choice.needs_gb.items()}
    return {"mode": choice.mode, "policy": DEQUANTIZED if choice.dequantized else choice.mode,
            "reason": choice.reason, "free_gb": free_gb, "needs_gb": needs}


def nvml_free_gb() -> float | None:
    """Free memory of the first visible GPU as NVML reports it (None without a GPU or NVML)."""
    from tuitune.hardware import NvmlSource

    try:
        snapshot = NvmlSource().snapshot()
    except Exception:  # no driver, no library: auto then keeps its fallback and says so
        return None
    return snapshot.gpus[0].memory_free_gb if snapshot.gpus else None


def _point(run: dict) -> dict:
    points = run.get("points") or [{}]
    return points[0]


def speed(run: dict) -> float | None:
    """A path's tokens/s: the median of its runs when it ran more than once."""
    measured = [t for t in run.get("tokens_per_s_runs") or [] if t]
    return statistics.median(measured) if measured else _point(run).get("tokens_per_s")


def stock_key(runs: dict) -> str:
    """The run the ratios divide by: the plain stock path ("hf") when it ran, else the autocast one."""
    return "hf" if "hf" in runs else AUTOCAST


def ratios(runs: dict, base: str | None = None) -> dict:
    """tuitune ÷ baseline for speed and memory (None where either side is missing). The baseline is
    ``base``, else ``stock_key``'s."""
    base = base or stock_key(runs)
    if base not in runs or "tuitune" not in runs:
        return {}
    stock, ours = _point(runs[base]), _point(runs["tuitune"])

    def div(a, b):
        return a / b if a is not None and b else None

    return {"tokens_per_s": div(speed(runs["tuitune"]), speed(runs[base])),
            "peak_allocated": div(peak_gb(runs["tuitune"]), peak_gb(runs[base])),
            "peak_reserved": div(ours.get("peak_reserved_gb"), stock.get("peak_reserved_gb"))}


def _fmt(value, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if unit == "tok":
        return f"{value:,.0f}"
    return f"{value:.{digits}f}{unit}"


def _spread(point: dict) -> str:
    """The timed steps' median and range: a launch-bound step's time moves with the host's load, so a
    mean alone hides whether two runs differ or only their hosts did."""
    times = sorted(point.get("step_times_s") or [])
    if not times:
        return ""
    return (f"; timed steps {statistics.median(times) * 1e3:,.1f} ms median ({times[0] * 1e3:,.1f} to {times[-1] * 1e3:,.1f}"
            f" over {len(times)})")


def _offloads(run: dict) -> str:
    """What offloaded checkpointing moved to the CPU besides the layer inputs, and the base weights
    kept dequantized."""
    moved = [f"{what} {run[key]}" for key, what in (("input_embeddings", "input embeddings"),
                                                    ("output_head", "LM head"), ("loss_memory", "loss memory"))
             if run.get(key)]
    kept = f"; {run['dequantized']}" if run.get("dequantized") else ""
    return ("; " + ", ".join(moved) if moved else "") + kept


def _runs(run: dict) -> str:
    measured = run.get("tokens_per_s_runs") or []
    if len(measured) < 2:
        return ""
    listed = ", ".join(_fmt(t, "tok") if t else "failed" for t in measured)
    return f"; {len(measured)} runs: {listed} tokens/s (the median is in the table; the first run's steps above)"


def peak_gb(run: dict) -> float | None:
    """A run's peak allocated memory; with CUDA graphs, the timed steps' peak plus the graphs' pool,
    which the allocator does not count as allocated between replays but nothing else can use."""
    p = _point(run)
    if not run.get("cuda_graphs"):
        return p.get("peak_allocated_gb")
    peak = run.get("graph_outside_pool_peak_gb")  # the loss phase borrows the pool: its tensors counted once
    if peak is None:
        peak = p.get("timed_peak_allocated_gb", p.get("peak_allocated_gb"))
    return None if peak is None else peak + (run.get("graph_pool_gb") or 0.0)


def _row(label: str, run: dict) -> str:
    """A measured run's table row: tokens/s, peak allocated (with graphs: plus their pool) and
    reserved, final loss."""
    p = _point(run)
    return (f"{label:22}{_fmt(speed(run), 'tok'):>12}{_fmt(peak_gb(run), ' GiB'):>14}"
            f"{_fmt(p.get('peak_reserved_gb'), ' GiB'):>16}{_fmt(p.get('losses', [None])[-1], '', 3):>12}")


def _policy_lines(result: dict) -> list[str]:
    """tuitune's row of each checkpointing mode under ``--checkpointing auto``, and auto's pick."""
    base = result["runs"].get(stock_key(result["runs"]))
    base_speed = speed(base) if base and "error" not in base else None
    base_peak = peak_gb(base) if base_speed else None
    lines = []
    picked = result["auto"].get("policy", result["auto"]["mode"])
    for mode, run in result["policies"].items():
        label = f"  {mode}" + (" (auto)" if mode == picked else "")
        if "error" in run or "error" in _point(run):
            lines.append(f"{label:22}failed: {(run.get('error') or _point(run)['error']).splitlines()[-1]}")
            continue
        ratio = ""
        if base_speed:
            peak = peak_gb(run)
            ratio = (f"   {_fmt(speed(run) / base_speed, 'x')} stock speed, "
                     f"{_fmt(peak / base_peak if base_peak and peak is not None else None, 'x')} stock peak")
        lines.append(_row(label, run) + ratio)
    lines.append(f"  auto picks {result['auto']['reason']}")
    return lines


def _graphs(run: dict) -> str:
    """The CUDA graphs' state and pool, when the run asked for them."""
    if not run.get("cuda_graphs"):
        return ""
    pool = run.get("graph_pool_gb")
    return f"; CUDA graphs: {run['cuda_graphs']}" + (f", pool {pool:.2f} GiB (counted in its peak)" if pool else "")


def format_report(result: dict) -> str:
    runs = result["runs"]
    first = next(iter(runs.values()))
    device = first.get("device_name") or first.get("device") or "?"
    lines = [
        f"tuitune bench: {result['shape']}, {result['method']} r{result['rank']}, batch {result['batch']} x "
        f"{result['seq']}, {result['steps']} steps ({result['warmup']} warm-up, not timed), on {device}",
        "",
        f"{'':22}{'tokens/s':>12}{'peak alloc':>14}{'peak reserved':>16}{'final loss':>12}",
    ]
    for path, run in runs.items():
        label = PATH_LABELS.get(path, path)
        if "error" in run:
            lines.append(f"{label:22}failed: {run['error'].splitlines()[-1] if run['error'] else '?'}")
            continue
        p = _point(run)
        if "error" in p:
            lines.append(f"{label:22}{p['error']}")
            continue
        lines.append(_row(label, run))
    r = result.get("ratios") or {}
    if result.get("policies"):
        lines += _policy_lines(result)
    if r:
        lines.append(f"{'ratio':22}{_fmt(r.get('tokens_per_s'), 'x'):>12}{_fmt(r.get('peak_allocated'), 'x'):>14}"
                     f"{_fmt(r.get('peak_reserved'), 'x'):>16}")
    r_autocast = result.get("ratios_autocast") or {}
    if r_autocast:
        lines.append(f"{'ratio (autocast)':22}{_fmt(r_autocast.get('tokens_per_s'), 'x'):>12}"
                     f"{_fmt(r_autocast.get('peak_allocated'), 'x'):>14}"
                     f"{_fmt(r_autocast.get('peak_reserved'), 'x'):>16}")
    stock = stock_key(runs)
    if "tuitune graphs" in runs and stock in runs and "error" not in runs["tuitune graphs"]:
        graphed = ratios({stock: runs[stock], "tuitune": runs["tuitune graphs"]})
        if graphed:
            lines.append(f"{'ratio (graphs)':22}{_fmt(graphed.get('tokens_per_s'), 'x'):>12}"
                         f"{_fmt(graphed.get('peak_allocated'), 'x'):>14}{_fmt(graphed.get('peak_reserved'), 'x'):>16}")
    lines.append("")
    for path, run in runs.items():
        if "error" not in run:
            lines.append(f"{PATH_LABELS.get(path, path)}: kernels {run.get('kernels')}; checkpointing "
                         f"{run.get('checkpointing')}; optimizer {run.get('optimizer')}; "
                         f"{run.get('trainable_params', 0):,} trainable parameters{_offloads(run)}{_graphs(run)}"
                         f"{'; autocast ' + run['autocast'] if run.get('autocast', 'off') != 'off' else ''}"
                         f"{_spread(_point(run))}"
                         f"{_runs(run)}")
        else:
            lines.append(f"{PATH_LABELS.get(path, path)} failed:\n{run['error']}")
    for path, run in runs.items():
        if run.get("profile"):
            from tuitune.trainer.step_profile import format_profile

            lines.append(f"\n{PATH_LABELS.get(path, path)} profile: " + format_profile(run["profile"]))
        elif run.get("profile_error"):
            lines.append(f"\n{PATH_LABELS.get(path, path)} profile failed: {run['profile_error']}")
        if run.get("memory_peak"):
            from tuitune.bench.memory_peak import format_breakdown

            lines.append(f"\n{PATH_LABELS.get(path, path)} memory: " + format_breakdown(run["memory_peak"]))
        elif run.get("memory_peak_error"):
            lines.append(f"\n{PATH_LABELS.get(path, path)} memory trace {run['memory_peak_error']}")
    if first.get("device") == "cpu":
        lines.append("No CUDA device: ran on the CPU, so there are no GPU memory figures.")
    return "\n".join(lines)
