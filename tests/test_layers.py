"""The package is built in floors (`ticketlab._floors`): no import reaches up, and none goes round.

Every module's imports are read with `ast`, function-local ones included, so a lazy import cannot
hide a cycle or an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ticketlab._floors import FLOORS, floor_of

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, src: Path, known: set[str]) -> set[str]:
    """The ticketlab modules that `path` imports anywhere in its body."""
    mod = module_name(path, src)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from pkg import sub` depends on the submodule when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for n in names:
            if n == "ticketlab" or n.startswith("ticketlab."):
                while n not in known and "." in n:  # `import ticketlab.x.y` names a module; attributes do not
                    n = n.rsplit(".", 1)[0]
                if n != mod:
                    out.add(n)
    return out


def graph(src: Path) -> dict[str, set[str]]:
    files = sorted((src / "ticketlab").rglob("*.py"))
    known = {module_name(p, src) for p in files}
    return {module_name(p, src): imports(p, src, known) for p in files}


def violations(g: dict[str, set[str]]) -> list[str]:
    """Upward imports, as 'a (floor) imports b (floor)' lines."""
    out = []
    for a, deps in g.items():
        for b in deps:
            if floor_of(b) > floor_of(a):
                out.append(f"{a} ({'/'.join(FLOORS[floor_of(a)])}) imports {b} ({'/'.join(FLOORS[floor_of(b)])})")
    return sorted(out)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_is_on_a_floor():
    for m in graph(SRC):
        floor_of(m)


def test_no_import_reaches_a_higher_floor():
    assert violations(graph(SRC)) == []


def test_no_import_cycles():
    assert cycles(graph(SRC)) == []


def test_the_check_catches_a_planted_cycle_and_an_upward_import(tmp_path):
    """The checks are not vacuous: a copy of the tree with one planted lazy import fails both."""
    import shutil

    shutil.copytree(SRC / "ticketlab", tmp_path / "ticketlab")
    masks = tmp_path / "ticketlab" / "core" / "masks.py"
    masks.write_text(masks.read_text() + "\n\ndef _planted():\n    from ticketlab import api  # noqa\n")
    g = graph(tmp_path)
    assert any(v.startswith("ticketlab.core.masks (core) imports ticketlab.api") for v in violations(g))
    assert any("ticketlab.core.masks" in c and "ticketlab.api" in c for c in cycles(g))


def test_src_cites_no_file_outside_the_repository():
    """Docstrings cite papers and the project's own docs/, never the shared reference notes."""
    bad = [f"{p.relative_to(SRC)}:{i}" for p in (SRC / "ticketlab").rglob("*.py")
           for i, line in enumerate(p.read_text().splitlines(), 1) if "../shared" in line]
    assert bad == []


@pytest.mark.parametrize("old,new", [("ticketlab.train", "ticketlab.training.loop"),
                                     ("ticketlab.lottery", "ticketlab.experiments.lottery.trunk"),
                                     ("ticketlab.sparse.rigl", "ticketlab.methods.sparse.rigl"),
                                     ("ticketlab.teacher_student.plots", "ticketlab.reports.teacher_student_plots")])
def test_old_import_paths_are_the_same_modules(old, new):
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)


def test_the_package_root_is_a_facade_whose_lazy_exports_are_declared():
    """`ticketlab/__init__.py` loads its exports by string (`_LAZY`); each must also be imported in its
    `TYPE_CHECKING` block, which the graph reads, so the strings hide no dependency. And since the
    root sits on the api floor, a lower module importing a name from it is an upward import."""
    import ticketlab

    g = graph(SRC)
    declared = {}  # name -> the module it comes from (the module itself for `from pkg import module`)
    for node in ast.walk(ast.parse((SRC / "ticketlab" / "__init__.py").read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                for a in imp.names:
                    declared[a.name] = f"{imp.module}.{a.name}" if f"{imp.module}.{a.name}" in g else imp.module
    assert declared == ticketlab._LAZY
    assert set(ticketlab._LAZY.values()) <= g["ticketlab"]
    g["ticketlab.core.masks"] = g["ticketlab.core.masks"] | {"ticketlab"}  # `from ticketlab import IMP`
    facade = "/".join(FLOORS[floor_of("ticketlab")])
    assert f"ticketlab.core.masks (core) imports ticketlab ({facade})" in violations(g)
