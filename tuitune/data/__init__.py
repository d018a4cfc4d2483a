"""Training data: loading, format detection, normalisation, checks, tokenization and statistics.

Importing this package is cheap: the names below are loaded on first use, and only
`build_training_dataset` / `inspect_data` (which need a tokenizer) ever import datasets or
transformers, inside the functions.

    load_rows(path, format=None, progress=None) -> LoadedData
    open_source(path, progress=None) -> RecordSource        (index only, row access by index)
    detect_format(columns, sample_rows) -> (format | None, reason)
    build_training_dataset(data, tokenizer, *, max_seq_length, responses_only, packing,
                           system_prompt=None) -> datasets.Dataset (input_ids, completion_mask)
    tokenize_rows(...) -> TokenizedRows                      (the same, with per-row problems)
    inspect_data(path | LoadedData, *, format=None, tokenizer=None, max_seq_length=None,
                 model=None) -> InspectReport
    sample_dataset_path() -> Path
    FORMATS, SFT_SETTINGS, Problem, Row
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_rows": "tuitune.data.loading",
    "open_source": "tuitune.data.loading",
    "LoadedData": "tuitune.data.loading",
    "detect_format": "tuitune.data.formats",
    "resolve_format_name": "tuitune.data.formats",
    "FORMATS": "tuitune.data.formats",
    "Row": "tuitune.data.normalize",
    "Problem": "tuitune.data.problems",
    "format_problems": "tuitune.data.problems",
    "render_row": "tuitune.data.rendering",
    "generation_prompt": "tuitune.data.rendering",
    "build_training_dataset": "tuitune.data.tokenization",
    "tokenize_rows": "tuitune.data.tokenization",
    "token_lengths": "tuitune.data.tokenization",
    "SFT_SETTINGS": "tuitune.data.tokenization",
    "inspect_data": "tuitune.data.inspection",
    "InspectReport": "tuitune.data.inspection",
    "sample_dataset_path": "tuitune.data.bundled",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuitune.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
