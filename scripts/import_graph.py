"""The shape of the moss package from its imports: modules, import arrows between them, import
circles, and imports that run up the layers (see moss/__init__.py).

    python scripts/import_graph.py [--root DIR] [--check]

Every `import` counts, also those inside functions. --check exits 1 on a circle or an upward
import (tests/test_layers.py runs it)."""

import argparse
import ast
import sys
from pathlib import Path

# Lowest first: a module may import its own layer and those below, never one above.
LAYERS = [
    ("basics", ["moss", "moss.paths", "moss.lang", "moss.progress", "moss.text", "moss.words", "moss.busy",
                "moss.safety"]),
    ("inference", ["moss.inference"]),
    ("store", ["moss.store"]),
    ("tools", ["moss.tools"]),
    ("evals", ["moss.evals"]),
    ("learning", ["moss.learning"]),
    ("server", ["moss.server"]),
    ("faces", ["moss.cli", "moss.terminal", "moss.doctor", "moss.backends", "moss.__main__"]),
]


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted((root / "moss").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "migrations" in parts:
            continue  # Alembic's scripts: run by Alembic, imported by nothing
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def arrows(known: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) for every import of one moss module by another."""
    out = set()
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    out.add((name, target))
    return out


def circles(names: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    graph = {n: sorted(b for a, b in edges if a == n) for n in names}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for n in names:
        if n not in index:
            visit(n)
    return out


def layer(name: str) -> int | None:
    best, level = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            exact = p in ("moss",)  # the package itself, not everything under it
            if (name == p or (not exact and name.startswith(p + "."))) and len(p) > best:
                best, level = len(p), i
    return level


def room(name: str, packages: set[str]) -> str:
    """Where a module lives: its sub-package (moss.store...), or its layer for top-level modules."""
    top, level = ".".join(name.split(".")[:2]), layer(name)
    if top in packages and top != "moss":
        return top
    return name if level is None else LAYERS[level][0]  # a module on no layer is its own room


def upward(edges: set[tuple[str, str]]) -> list[str]:
    out = []
    for a, b in sorted(edges):
        la, lb = layer(a), layer(b)
        if la is None or lb is None:
            out.append(f"{a} -> {b}: {a if la is None else b} is on no layer")
        elif lb > la:
            out.append(f"{a} ({LAYERS[la][0]}) -> {b} ({LAYERS[lb][0]})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    known = modules(args.root)
    edges = arrows(known)
    loops = circles(list(known), edges)
    packages = {n for n, path in known.items() if path.name == "__init__.py"}
    print(f"modules: {len(known)} in {len(packages)} package(s)")
    print(f"import arrows: {len(edges)}")
    rooms = {(room(a, packages), room(b, packages)) for a, b in edges}
    rooms = {(a, b) for a, b in rooms if a != b}
    print(f"arrows between layers and packages: {len(rooms)}" + "".join(f"\n  {a} -> {b}" for a, b in sorted(rooms)))
    print(f"circles: {len(loops)}" + "".join(f"\n  {' <-> '.join(c)}" for c in loops))
    if not args.check:
        return 0
    wrong = upward(edges)
    print(f"upward imports: {len(wrong)}" + "".join(f"\n  {w}" for w in wrong))
    return 1 if loops or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
