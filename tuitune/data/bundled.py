"""The sample dataset shipped inside the package (written by samples/make_sample.py)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_FILE = "pirate_chat.jsonl"


def sample_dataset_path() -> Path:
    """Path of the bundled sample: OpenAI-messages JSONL teaching pirate-style replies that start
    with "Ahoy!" and end with "Fair winds, matey!"."""
    from importlib.resources import files

    return Path(str(files("tuitune.data") / "samples" / SAMPLE_FILE))
