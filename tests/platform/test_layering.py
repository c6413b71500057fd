"""The package's layering: no import cycle anywhere in sgx_emm (imports under
TYPE_CHECKING count too), the platform's shared-state header imports nothing of
the package, and no module of the platform grows past the size one concern takes."""

from __future__ import annotations

import ast
from pathlib import Path

import sgx_emm

ROOT = Path(sgx_emm.__file__).parent
PLATFORM_MODULE_LINES = 530     # about 500: one concern per module


def _module_name(path: Path) -> str:
    parts = ("sgx_emm", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every sgx_emm module `name` imports, anywhere in its text (function bodies and
    TYPE_CHECKING blocks included); `from pkg import mod` counts as importing mod,
    not pkg's own names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:          # `from pkg import module`
                    out.add(sub)
                elif base in known:       # `from module import name`
                    out.add(base)
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path, or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if colour[start]:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        colour[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                colour[node] = 2
                continue
            nxt = todo.pop()
            if colour.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_the_import_graph_of_sgx_emm_has_no_cycle() -> None:
    graph = _graph()
    assert len(graph) > 30 and graph["sgx_emm.platform.kernel"]
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_shared_state_header_imports_nothing_of_the_package() -> None:
    graph = _graph()
    assert graph["sgx_emm.platform.state"] == set()


def test_platform_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines())
             for p in (ROOT / "platform").glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > PLATFORM_MODULE_LINES} == {}


def test_cpu_does_not_import_the_thread_or_the_kernel() -> None:
    graph = _graph()
    cpu_side = {"sgx_emm.platform.processor", "sgx_emm.platform.encls",
                "sgx_emm.platform.enclu", "sgx_emm.platform.access", "sgx_emm.platform.cpu"}
    for name in cpu_side:
        assert not graph[name] & {"sgx_emm.platform.thread", "sgx_emm.platform.kernel",
                                  "sgx_emm.platform.vdso"}, name
