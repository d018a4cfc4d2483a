"""The optional extras an export may need (llama.cpp's quantizer, gptqmodel): whether each is installed,
and installing one with this Python's pip (the Export screen offers it when a format needs it).

Pure Python: `available` only looks the package up; `install` runs pip in a subprocess.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tuitune.errors import TuituneError


@dataclass(frozen=True)
class Extra:
    name: str           # the tuitune extra: pip install 'tuitune[<name>]'
    module: str         # what Python imports
    requirement: str    # what pip installs
    note: str           # how long / what it needs, for the offer


EXTRAS = {
    "llamacpp": Extra("llamacpp", "llama_cpp", "llama-cpp-python>=0.3.2",
                      "builds llama.cpp from source: about 5 minutes on 2 cores, and a C compiler"),
    "gptq": Extra("gptq", "gptqmodel", "gptqmodel", "needs a CUDA GPU and its toolkit"),
}


def available(name: str) -> bool:
    return importlib.util.find_spec(EXTRAS[name].module) is not None


def install_command(name: str) -> list[str]:
    return [sys.executable, "-m", "pip", "install", EXTRAS[name].requirement]


def install(name: str, log_path: Path) -> None:
    """pip-install the extra into this environment, its output appended to `log_path`."""
    extra = EXTRAS[name]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            code = subprocess.run(install_command(name), stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, check=False).returncode
        except OSError as exc:
            code, tail = -1, [str(exc)]
        else:
            tail = []
    if code != 0 or not _importable(extra.module):
        tail = tail or log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise TuituneError(f"Installing {extra.requirement} failed (pip exit code {code}: {' / '.join(tail)}). "
                           f"The whole output is in {log_path}. Install it by hand with: "
                           f"pip install 'tuitune[{extra.name}]'.")


def _importable(module: str) -> bool:
    importlib.invalidate_caches()
    return importlib.util.find_spec(module) is not None
