"""One export from request to verified folder: check, load the tuned model once, take the reference
probe, write through the format's module into a temporary folder, verify, move it into place, push.

Torch side: `tuitune export` calls it in its own process; the Export screen runs it in a child
process (export.process). Nothing is reported done, or uploaded, before verification passed.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from pathlib import Path

from tuitune.errors import TuituneError
from tuitune.export.formats import KQUANTS, ExportRequest, ExportResult, Progress, folder_size, no_progress

MANIFEST = "export.json"
MODULES = {"adapter": "tuitune.export.adapter_export", "merged": "tuitune.export.merged_export",
           "gguf": "tuitune.export.gguf_export", "gptq": "tuitune.export.gptq_export"}


def preflight(request: ExportRequest) -> str | None:
    """Every check that needs no model, in the order a user would fix them; the push token or None."""
    request.check()
    quant = request.resolved_quant
    if request.format == "gptq":
        from tuitune.export.gptq_export import preflight as gptq_preflight

        gptq_preflight()
    if request.format == "gguf" and quant in KQUANTS:
        from tuitune.export.kquant import require_llamacpp

        require_llamacpp(quant)
    if request.push:
        from tuitune.export.push import check_push

        return check_push(request.push)
    return None


def output_folder(request: ExportRequest, target) -> Path:
    if request.output:
        return Path(request.output).expanduser().resolve()
    home = target.run if target.run is not None else target.adapter.parent
    return home / "exports" / request.folder_name()


def run_export(request: ExportRequest, progress: Progress = no_progress, *, reloader: str = "auto") -> ExportResult:
    from tuitune.chat.targets import resolve_target

    token = preflight(request)
    target = resolve_target(request.target, request.runs_root)
    if target.adapter is None:
        if target.kind == "model" and not Path(request.target).expanduser().exists():
            from tuitune.runs import RunDir

            try:
                RunDir.open(request.target, request.runs_root)
            except TuituneError as exc:  # "No run named ...": export names the runs root --runs
                raise TuituneError(str(exc).replace("use --output", "use --runs")) from None
        raise TuituneError(f"{request.target!r} is {target.label}, which has no adapter to export. Pass a run "
                           "(name or folder; `tuitune runs` lists them) or an adapter folder.")
    final = output_folder(request, target)
    _check_output(final)
    started = time.perf_counter()
    progress(0.0, f"loading {target.label}")
    from tuitune.export.context import ExportContext
    from tuitune.export.tuned import load_tuned
    from tuitune.export.verify import take_probe

    tuned = load_tuned(target)
    progress(0.1, "reference answer from the tuned model")
    probe = take_probe(tuned.model, tuned.tokenizer, tuned.stop_ids)
    work = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        ctx = ExportContext(tuned, probe, work, request.resolved_quant,
                            (target.run or target.adapter).name, _scaled(progress, 0.15, 0.95), reloader)
        written = importlib.import_module(MODULES[request.format]).export(ctx)
        main_file = final / written.main_file.relative_to(work) if written.main_file != work else final
        result = _result(request, final, main_file, work, written, probe, time.perf_counter() - started)
        result.size_bytes, result.files = folder_size(work)
        (work / MANIFEST).write_text(json.dumps({"request": _public(request), "result": result.to_dict(),
                                                 "source": str(target.run or target.adapter)}, indent=2) + "\n",
                                     encoding="utf-8")
        result.size_bytes, result.files = folder_size(work)
        _replace(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if request.push:
        from tuitune.export.push import push_folder

        progress(0.97, f"uploading to {request.push}")
        result.pushed_url = push_folder(final, request.push, token,
                                        message=f"tuitune export: {request.folder_name()} of {ctx.name}")
    progress(1.0, "done")
    return result


def _result(request, final: Path, main_file: Path, work: Path, written, probe, seconds: float) -> ExportResult:
    return ExportResult(format=request.format, quant=request.resolved_quant, path=str(final),
                        main_file=str(main_file), size_bytes=0, seconds=seconds, checks=written.checks,
                        answers={"tuned model": probe.answer or "(empty)", "export": written.answer or "(empty)"},
                        prompt=probe.messages[-1]["content"])


def _public(request: ExportRequest) -> dict:
    """What the manifest records of the request (the hub repo name, never a token)."""
    return {k: v for k, v in request.to_dict().items() if k != "runs_root"}


def _check_output(final: Path) -> None:
    if final.exists() and not final.is_dir():
        raise TuituneError(f"--output {final} is a file. Pass a folder (it is created if missing).")
    if final.is_dir() and any(final.iterdir()) and not (final / MANIFEST).exists():
        raise TuituneError(f"--output {final} already holds files that tuitune did not export. Pass an empty or "
                           "new folder (a previous tuitune export there is replaced).")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TuituneError(f"Cannot create {final.parent} ({exc.strerror or exc}). Pick another --output.") from None


def _replace(work: Path, final: Path) -> None:
    """Put the verified folder in place; a previous export there goes only once the new one is complete."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    return lambda fraction, message: progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)
