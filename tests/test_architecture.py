"""The layout stays as designed: import contracts, no import circles, one code style.

The contracts (layers, the one bridge from hessian to particles, HDF5 only in particles.io,
no plots in the libraries, storage apart from the solver) are stated in pyproject.toml and
checked by import-linter; the circles are checked here on the same import graph, which
includes imports inside functions."""

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("particles", "hessian", "simulations")


def _run(*command):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


def _tool(name):
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed: install the test extra (pip install -e '.[test]')")
    return path


def test_import_contracts_hold():
    result = _run(_tool("lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_ruff_lint_and_format():
    lint = _run(_tool("ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-6000:]
    form = _run(_tool("ruff"), "format", "--check", ".")
    assert form.returncode == 0, form.stdout[-6000:]


def _import_graph():
    sys.path.insert(0, str(ROOT))
    try:
        return grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))


def _cycles(edges):
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges.get(node, ()):
                        found.append(sorted(component))
    return found


def test_cycle_finder_finds_planted_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert sorted(_cycles(edges)) == [["a", "b", "c"], ["e"]]


def test_no_import_circles():
    """Counts every import statement, also inside functions; a submodule importing its own
    package (``from . import x`` for a name defined in ``__init__``) closes a circle too."""
    graph = _import_graph()
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = _cycles(edges)
    details = []
    for component in cycles:
        members = set(component)
        links = [f"{a} -> {b}" for a in component for b in sorted(edges[a] & members)]
        details.append("; ".join(links))
    assert not cycles, "import circles:\n" + "\n".join(details)
