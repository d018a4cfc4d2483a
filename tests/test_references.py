"""Comments and docstrings name only what exists: every tuitune module or name, repository file and
Markdown document that the code's text cites is there (a rename that forgets a mention fails here)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.modules import REPO, modules

# `tuitune.a.b` or `tuitune.a.b.name`, not a file name such as tuitune.toml
DOTTED = re.compile(r"\btuitune(?:\.[A-Za-z_]\w*)+\b(?!\.\w)")
FILE_SUFFIXES = {"toml", "json", "jsonl", "log", "txt", "md", "py", "gguf", "tcss", "pid"}
# a path with a folder, ending in a source or document suffix: `trainer/sft.py`, `ui/app.tcss`
PATH = re.compile(r"(?<![\w/.<-])((?:[A-Za-z_][\w-]*/)+[A-Za-z_][\w-]*\.(?:py|tcss|md))\b")
DOCUMENT = re.compile(r"(?<![\w/.-])([A-Z][A-Za-z_-]*\.md)\b")
EXTERNAL = {"convert_hf_to_gguf.py"}  # llama.cpp's file, named as such where cited
SKIPPED = ("../", "path/to/")  # outside the repository, or an example


def _repository_files() -> list[str]:
    """Every file of the repository (build, cache and environment folders left out), as posix paths."""
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in ("__pycache__", "build")
                         and not d.endswith(".egg-info")]
        found += [(Path(folder) / name).relative_to(REPO).as_posix() for name in files]
    return found


def _sources(files: list[str]) -> dict[str, str]:
    """The text of every Python module and stylesheet (tuitune's and the tests')."""
    return {file: (REPO / file).read_text(encoding="utf-8") for file in files if file.endswith((".py", ".tcss"))
            and file.startswith(("tuitune/", "kernels/", "themes/", "tests/"))}


def _resolves(reference: str, sources: dict[str, str], names: dict[str, str]) -> bool:
    """The longest module prefix exists and the first part after it is a word of that module."""
    parts = reference.split(".")
    if parts[-1] in FILE_SUFFIXES:
        return True
    for end in range(len(parts), 1, -1):
        module = ".".join(parts[:end])
        if module in names:
            rest = parts[end:]
            return not rest or re.search(rf"\b{re.escape(rest[0])}\b", sources[names[module]]) is not None
    return False


def missing_in(text: str, sources: dict[str, str], names: dict[str, str], files: list[str]) -> list[str]:
    """What `text` cites that does not exist: modules and their names, repository paths, documents."""
    found = [match.group(0) for match in DOTTED.finditer(text) if not _resolves(match.group(0), sources, names)]
    for match in PATH.finditer(text):
        cited = match.group(1)
        if cited.startswith(SKIPPED) or cited.rsplit("/", 1)[-1] in EXTERNAL:
            continue
        if not any(path == cited or path.endswith("/" + cited) for path in files):
            found.append(cited)
    found += [match.group(1) for match in DOCUMENT.finditer(text) if match.group(1) not in files]
    return found


def _repository() -> tuple[dict[str, str], dict[str, str], list[str]]:
    files = _repository_files()
    names = {module: path.relative_to(REPO).as_posix() for module, path in modules().items()}
    return _sources(files), names, files


def test_the_code_cites_only_what_exists():
    sources, names, files = _repository()
    found = [f"{file}: {cited}" for file, text in sorted(sources.items()) if file != "tests/test_references.py"
             for cited in missing_in(text, sources, names, files)]
    assert not found, "comments or docstrings citing what does not exist:\n" + "\n".join(found)


def test_a_stale_citation_is_reported():
    sources, names, files = _repository()
    text = ("spawns tuitune.trainer.launcher.start, tuitune.runs.RunDir and tuitune.kernels; see trainer/sft.py, "
            "ui/app.tcss, README.md and tuitune.toml. Stale: tuitune.trainer.worker.worker_main, "
            "tuitune.runs.no_such_name, trainer/model_loading.py, NOTES-kernels.md.")
    assert missing_in(text, sources, names, files) == [
        "tuitune.trainer.worker.worker_main", "tuitune.runs.no_such_name", "trainer/model_loading.py",
        "NOTES-kernels.md"]
