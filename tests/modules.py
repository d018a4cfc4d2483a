"""tuitune's modules as the import checks see them: names, files, layers and the static import graph.

The graph counts every import statement, also those inside functions (a lazy import still ties two
modules together), resolved to tuitune's own modules; `kernels/` and `themes/` are installed as
tuitune.kernels and tuitune.themes.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"tuitune": REPO / "tuitune", "tuitune.kernels": REPO / "kernels", "tuitune.themes": REPO / "themes"}

# The design's layers, top first, by module prefix. A module may import its own layer and those below it,
# never one above. The tools (chat, export, bench) drive models and the trainer's pieces, so they sit
# between the interfaces and the trainer; the core is every tuitune module no other layer claims.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ui/cli", ("tuitune.ui", "tuitune.themes", "tuitune.cli", "tuitune.__main__")),
    ("tools", ("tuitune.chat", "tuitune.export", "tuitune.bench", "tuitune.evaluation")),
    ("trainer", ("tuitune.trainer",)),
    ("core", ("tuitune",)),
    ("kernels", ("tuitune.kernels",)),
)


def modules() -> dict[str, Path]:
    """Every tuitune module (packages by their own name) and its file."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _covers(prefix: str, module: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str:
    """The layer claiming `module` (the longest matching prefix)."""
    matches = [(len(prefix), name) for name, prefixes in LAYERS for prefix in prefixes if _covers(prefix, module)]
    return max(matches)[1]


def rank(layer: str) -> int:
    """Higher is nearer the top."""
    names = [name for name, _ in LAYERS]
    return len(names) - names.index(layer)


def _known(name: str, known: set[str]) -> str | None:
    """`name` or the nearest enclosing module tuitune has (`tuitune.data.loading.load_rows` -> `tuitune.data.loading`)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The tuitune modules that `module` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from package import name`: the submodule when `name` is one, else the package
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _known(target, known)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    files = modules()
    known = set(files)
    return {module: imports_of(module, path, known) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer into a higher one, as readable lines."""
    return sorted(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
                  for module, targets in graph.items() for target in targets
                  if rank(layer_of(target)) > rank(layer_of(module)))
