"""What each format module receives (the tuned model, the reference probe, where to write) and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuitune.export.formats import Progress
from tuitune.export.tuned import Tuned
from tuitune.export.verify import Probe


@dataclass
class ExportContext:
    tuned: Tuned
    probe: Probe
    out: Path                # the (temporary) folder being written; renamed into place once verified
    quant: str | None
    name: str                # file name stem: the run's name, or the adapter folder's
    progress: Progress
    reloader: str = "auto"   # GGUF reload: auto | llama.cpp | transformers


@dataclass
class Written:
    main_file: Path
    checks: list[str] = field(default_factory=list)
    answer: str = ""         # the export's greedy answer to the probe prompt
