"""Export formats, their quantizations, the request and the result (pure Python: the UI imports this).

One module per format does the work (`adapter_export`, `merged_export`, `gguf_export`, `gptq_export`);
`runner.run_export` checks the request, loads the tuned model once, writes, verifies, then reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tuitune.errors import TuituneError

FORMATS = ("adapter", "merged", "gguf", "gptq")
QUANTS: dict[str, tuple[str, ...]] = {
    "adapter": (),
    "merged": ("bf16", "f16"),
    "gguf": ("q8_0", "f16", "bf16", "q4_k_m", "q5_k_m", "q6_k"),
    "gptq": ("4bit",),
}
KQUANTS = ("q4_k_m", "q5_k_m", "q6_k")  # need llama.cpp's quantizer (the llamacpp extra)
FORMAT_HELP = {
    "adapter": "LoRA weights (safetensors), adapter config, tokenizer, chat template and a model card",
    "merged": "a 16-bit Hugging Face folder with the adapter merged in (vLLM, TGI, transformers)",
    "gguf": "one .gguf file for llama.cpp, Ollama and LM Studio, with an Ollama Modelfile beside it",
    "gptq": "4-bit GPTQ weights through gptqmodel (needs a CUDA GPU)",
}
QUANT_HELP = {
    "bf16": "16-bit brain float (default for merged)", "f16": "16-bit float",
    "q8_0": "8-bit, near-lossless, half of f16's size (default for GGUF)",
    "q4_k_m": "4-bit K-quant, smallest; weak on very small models", "q5_k_m": "5-bit K-quant",
    "q6_k": "6-bit K-quant", "4bit": "GPTQ 4-bit, group size 128",
}

Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """The default progress sink: say nothing."""


@dataclass
class ExportRequest:
    target: str                   # run name or folder, or an adapter folder
    format: str = "adapter"
    quant: str | None = None      # None: the format's default
    output: str | None = None     # folder to write; None: <run>/exports/<format>[-<quant>]
    push: str | None = None       # hub repo id (owner/name) to upload to after verification
    runs_root: str | None = None

    @property
    def resolved_quant(self) -> str | None:
        choices = QUANTS.get(self.format, ())
        return (self.quant or choices[0]) if choices else None

    def check(self) -> None:
        """Refuse a bad format/quant pair before anything loads."""
        if self.format not in FORMATS:
            raise TuituneError(f"Unknown export format {self.format!r}. Formats: {', '.join(FORMATS)}.")
        choices = QUANTS[self.format]
        if self.quant and not choices:
            raise TuituneError(f"--quant does not apply to the {self.format} format (it saves the LoRA weights "
                               "as trained). Drop --quant, or export merged or gguf.")
        if self.quant and self.quant not in choices:
            raise TuituneError(f"--quant {self.quant} is not a {self.format} quantization. Choices for "
                               f"{self.format}: {', '.join(choices)}.")
        if self.push is not None:
            from tuitune.export.push import check_repo_id

            check_repo_id(self.push)

    def folder_name(self) -> str:
        quant = self.resolved_quant
        return f"{self.format}-{quant}" if quant else self.format

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExportResult:
    format: str
    quant: str | None
    path: str                     # the export folder
    main_file: str                # the .gguf file, or the folder
    size_bytes: int
    seconds: float
    files: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)    # what verification found, one line each
    answers: dict[str, str] = field(default_factory=dict)  # "adapter" / "export": greedy answers
    prompt: str = ""
    pushed_url: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ExportResult":
        return cls(**data)

    def report(self) -> str:
        lines = [f"{self.format}{f' ({self.quant})' if self.quant else ''} export verified in {self.seconds:.1f} s",
                 f"  path: {self.main_file}", f"  size: {human_size(self.size_bytes)} ({len(self.files)} files)"]
        lines += [f"  check: {line}" for line in self.checks]
        if self.answers:
            lines.append(f"  prompt: {self.prompt}")
            width = max(len(k) for k in self.answers)
            lines += [f"  {k + ':':<{width + 1}} {v}" for k, v in self.answers.items()]
        if self.pushed_url:
            lines.append(f"  pushed: {self.pushed_url}")
        return "\n".join(lines)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def folder_size(path: Path) -> tuple[int, list[str]]:
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    return sum(p.stat().st_size for p in files), [str(p.relative_to(path)) for p in files]
