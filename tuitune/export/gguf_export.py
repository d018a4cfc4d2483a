"""The GGUF format: merge, write one .gguf file (f16/bf16/q8_0 with gguf-py; K-quants through llama.cpp's
quantizer from an f16 file), an Ollama Modelfile beside it, then reload and verify the file.
"""

from __future__ import annotations

import gc
from pathlib import Path

from tuitune.export.context import ExportContext, Written
from tuitune.export.formats import KQUANTS
from tuitune.export.model_card import model_card
from tuitune.export.tuned import merge

USAGE = """llama.cpp: `llama-cli -m {file} -cnv`. Ollama: `ollama create my-model -f Modelfile`, then
`ollama run my-model`. In the terminal: `tuitune chat {file}`."""


def source_gguf(base: str) -> Path | None:
    """The GGUF file the base model came from (its tokenizer metadata is reused), if it did."""
    from tuitune.model_source import resolve_model_source

    source = resolve_model_source(base)
    return Path(source.path) if source.kind in ("embedded", "gguf") else None


def export(ctx: ExportContext) -> Written:
    from tuitune.chat.presets import PRESETS
    from tuitune.chat.prompting import stop_strings
    from tuitune.export.hf_to_gguf import check_supported, write_gguf
    from tuitune.export.modelfile import modelfile

    tuned = ctx.tuned
    check_supported(tuned.model.get_base_model().config)
    ctx.progress(0.05, "merging the adapter into the base" + (" (dequantized from NF4)" if tuned.quantized_base else ""))
    merged = merge(tuned)
    file = ctx.out / f"{ctx.name}-{ctx.quant}.gguf"
    outtype = "f16" if ctx.quant in KQUANTS else ctx.quant
    written = file.with_name(f".{file.stem}-f16.tmp.gguf") if ctx.quant in KQUANTS else file
    notes = write_gguf(merged, tuned.tokenizer, written, outtype, name=ctx.name,
                       source_gguf=source_gguf(tuned.target.base), progress=_scaled(ctx.progress, 0.1, 0.5))
    tuned.model = merged = None
    gc.collect()
    if ctx.quant in KQUANTS:
        from tuitune.export.kquant import quantize

        ctx.progress(0.55, f"quantizing to {ctx.quant} with llama.cpp")
        quantize(written, file, ctx.quant)
        written.unlink()
    config = tuned.target.run and _run_system_prompt(tuned.target.run)
    (ctx.out / "Modelfile").write_text(modelfile(file.name, tuned.tokenizer, stops=stop_strings(tuned.tokenizer),
                                                 system_prompt=config or None, settings=PRESETS["balanced"]),
                                       encoding="utf-8")
    (ctx.out / "README.md").write_text(model_card(base=tuned.target.base, fmt="gguf", quant=ctx.quant,
                                                  run_path=tuned.target.run, usage=USAGE.format(file=file.name)),
                                       encoding="utf-8")
    ctx.progress(0.65, "verifying: reloading the GGUF file")
    from tuitune.export.gguf_verify import verify_gguf

    checks, answer = verify_gguf(file, ctx.probe, tuned.tokenizer, ctx.quant, reloader=ctx.reloader)
    checks += _modelfile_check(ctx.out / "Modelfile", tuned.tokenizer)
    return Written(file, notes + checks, answer)


def _modelfile_check(path: Path, tokenizer) -> list[str]:
    from tuitune.chat.prompting import stop_strings
    from tuitune.errors import TuituneError
    from tuitune.export.modelfile import parse_stops

    stops = parse_stops(path.read_text(encoding="utf-8"))
    if stops != stop_strings(tokenizer):
        raise TuituneError(f"Export verification failed: the Modelfile's stop tokens {stops} are not the model's "
                           f"{stop_strings(tokenizer)}. The export was not kept.")
    return [f"Modelfile stops at {', '.join(stops)}"]


def _run_system_prompt(run_path: Path) -> str:
    from tuitune.runs import RunDir

    try:
        return RunDir(run_path).load_config().data.system_prompt
    except Exception:  # the Modelfile then uses the template's default system prompt
        return ""


def _scaled(progress, start: float, end: float):
    return lambda fraction, message: progress(start + (end - start) * fraction, message)
