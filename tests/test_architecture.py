"""The house: no import cycle among salmat's modules, every module imports on its own, and
worker processes import no table library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import salmat

PACKAGE = Path(salmat.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["salmat", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every salmat module `name` imports, function-level imports included.

    `from .x import y` counts as importing `x.y` when that is a module, else `x`. An import of
    the face of a package `name` is inside (`from .. import materialize`, `import salmat`) is
    kept as an edge to that package's `__init__`; `import_graph` replaces it by what the face
    itself imports, so a lower module can't reach upward through a package's `__init__`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.add(child if child in known else base)
    return {t for t in targets if t in known and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    raw = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    return {name: expand_faces(name, targets, raw) for name, targets in raw.items()}


def expand_faces(name: str, targets: set[str], raw: dict[str, set[str]]) -> set[str]:
    """`targets` with each package face `name` sits inside replaced by what that face imports
    (transitively through faces), leaving out the module itself and the faces above it."""
    faces = {t for t in targets if name.startswith(t + ".")}
    out = targets - faces
    seen: set[str] = set()
    while faces:
        face = faces.pop()
        seen.add(face)
        for target in raw.get(face, set()):
            if name.startswith(target + "."):
                if target not in seen:
                    faces.add(target)
            elif target != name:
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    graph = import_graph()
    assert "salmat.pipeline" in graph and "salmat.compute" in graph["salmat.engines.base"]
    assert cycles(graph) == []


UPPER = {"salmat.pipeline", "salmat.cli", "salmat.options", "salmat.command_options", "salmat.batch", "salmat.api", "salmat.compare",
         "salmat.preview", "salmat.signal_audit"}


def test_an_upward_import_through_a_package_face_is_found(tmp_path):
    """`from .. import materialize` in an engine reaches `salmat/__init__`, which names the
    orchestrator: that is an upward import, though no module is named."""
    known = set(_modules())
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from .. import materialize\n    import salmat\n", encoding="utf-8")
    raw = {name: _imports(name, path, known) for name, path in _modules().items()}
    targets = _imports("salmat.engines.fake", fake, known | {"salmat.engines.fake"})
    assert targets == {"salmat"}
    assert "salmat.pipeline" in expand_faces("salmat.engines.fake", targets, raw)


def test_nothing_imports_upward():
    """The leaf and the engines never reach back to the orchestrator or the command line."""
    graph = import_graph()
    assert graph["salmat.values"] == set()
    lower = ("salmat.engines", "salmat.models", "salmat.compute", "salmat.cache", "salmat.rows", "salmat.run_clips",
             "salmat.clip_maps", "salmat.file_hash", "salmat.model_choice", "salmat.tables", "salmat.decode")
    for name, targets in graph.items():
        if name.startswith(lower):
            assert not targets & UPPER, (name, targets & UPPER)


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(n for n in _modules() if n != "salmat.__main__")
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_a_worker_process_imports_no_pyarrow():
    """Workers and Ray actors decode and compute; only the driver reads tables. What a worker
    imports (the fork server's preload) leaves pyarrow out: 0.11 CPU-s of every worker start
    (`row_plan` holds the table side of turning rows into clips, `sources` the clip side)."""
    from salmat.engines.pool import WORKER_PRELOAD

    code = ("import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'pandas')))")
    result = subprocess.run([sys.executable, "-c", code, *WORKER_PRELOAD], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
