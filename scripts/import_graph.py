"""The import graph of htsrl's modules, read from the source with ast (nothing is imported), and its cycles.

    python scripts/import_graph.py              # the cycles, one a line; exit 1 if there is one
    python scripts/import_graph.py --top-level  # only the imports a module runs when it is imported
    python scripts/import_graph.py --dot > htsrl.dot && dot -Tsvg htsrl.dot > htsrl.svg

An edge A -> B: module A imports B (``import B``, ``from B import x``, or ``from A' import B`` where B is a
submodule). Imports inside a function or method are *lazy* (run on first call, drawn dashed); those under
``if TYPE_CHECKING:`` are left out (they never run). A cycle is a strongly connected component of two or
more modules (or a module importing itself); each is printed with one closed path through it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(package: Path) -> dict[str, Path]:
    """``htsrl.envs.atari`` -> its file, for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module):
    """(node, lazy) for every import statement, skipping ``if TYPE_CHECKING:`` blocks."""

    def walk(node: ast.AST, lazy: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    yield from walk_one(stmt, lazy)
                continue
            yield from walk_one(child, lazy)

    def walk_one(node: ast.AST, lazy: bool):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, lazy
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from walk(node, True)
        else:
            yield from walk(node, lazy)

    yield from walk(tree, False)


def build_graph(package: Path) -> dict[str, dict[str, bool]]:
    """module -> {imported module: lazy}; an edge is lazy only if every import of it is."""
    modules = module_names(package)
    graph: dict[str, dict[str, bool]] = {m: {} for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node, lazy in _imports(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1 packages
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join([*here, base] if base else here)
                # `from pkg import sub` names a submodule; `from mod import attr` the module itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                # `import htsrl.envs.atari` (or an attribute of a module) -> the deepest module that exists
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name][target] = graph[name].get(target, True) and lazy
    return graph


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """The strongly connected components that hold a cycle (Tarjan), each as its sorted modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    sys.setrecursionlimit(max(1000, 10 * len(graph)))  # recursion depth <= the modules
    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(found)


def closed_path(graph: dict[str, dict[str, bool]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first within the component)."""
    start, members = component[0], set(component)
    parent = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    return component


def dot(graph: dict[str, dict[str, bool]], in_cycle: set[tuple[str, str]]) -> str:
    lines = ["digraph htsrl {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica, fontsize=10];"]
    for v in sorted(graph):
        lines.append(f'  "{v}";')
    for v in sorted(graph):
        for w, lazy in sorted(graph[v].items()):
            style = ["style=dashed"] if lazy else []
            style += ["color=red"] if (v, w) in in_cycle else []
            lines.append(f'  "{v}" -> "{w}"' + (f" [{', '.join(style)}]" if style else "") + ";")
    lines.append("}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", default=str(ROOT / "htsrl"), help="the package folder (default: htsrl/)")
    p.add_argument("--top-level", action="store_true", help="leave out lazy imports (inside functions)")
    p.add_argument("--dot", action="store_true", help="print the module graph as Graphviz DOT text")
    a = p.parse_args(argv)
    graph = build_graph(Path(a.package))
    if a.top_level:
        graph = {v: {w: lazy for w, lazy in ws.items() if not lazy} for v, ws in graph.items()}
    found = cycles(graph)
    if a.dot:
        edges = {(v, w) for c in found for v in c for w in graph[v] if w in c}
        print(dot(graph, edges))
        return 0
    edges = sum(len(ws) for ws in graph.values())
    kind = "top-level imports" if a.top_level else "imports (lazy ones too)"
    print(f"{len(graph)} modules, {edges} edges ({kind}): {len(found) or 'no'} cycle{'s' * (len(found) != 1)}")
    for component in found:
        path = closed_path(graph, component)
        lazy = [f"{v} -> {w}" for v, w in zip(path, path[1:]) if graph[v].get(w)]
        print("  " + " -> ".join(path) + (f"   (lazy: {', '.join(lazy)})" if lazy else ""))
        if len(component) > len(set(path)):
            print(f"    in a cycle of {len(component)} modules: {', '.join(component)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
