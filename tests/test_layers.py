"""The import rules of docs/architecture.md: layers, no cycles, no package face
imported from inside its own package."""

import ast
from pathlib import Path

import pytest

JNAS = Path(__file__).resolve().parents[1] / "jnas"

# Top-level component -> layer (docs/architecture.md, "Layers").
LAYERS = {
    "precision": 0,
    "hostmem": 0,
    "arch_schema": 0,
    "arch": 0,
    "cost": 0,
    "nn_ops": 0,
    "nn": 0,
    "spaces": 0,
    "storage": 1,
    "results": 2,
    "distributed": 2,
    "data": 3,
    "latency": 3,
    "report": 3,
    "export": 3,
    "population": 4,
    "search": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(JNAS.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(JNAS.rglob("*.py"))}


def _imports(name: str, path: Path, modules) -> set[str]:
    """The jnas modules `name` imports (also inside functions)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("jnas.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1]]
                    + ([node.module] if node.module else [])
                )
            if base != "jnas" and not base.startswith("jnas."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else base)
    return out - {name}


def _component(module: str) -> str:
    return module.split(".")[1]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports across components that do not go to a lower layer."""
    bad = []
    for module, imported in graph.items():
        for dep in imported:
            a, b = _component(module), _component(dep)
            if a == b:
                continue
            # Across components the imported one must sit lower; the core's
            # modules (layer 0) only need to be acyclic among themselves.
            if LAYERS[b] > LAYERS[a] or (LAYERS[b] == LAYERS[a] != 0):
                bad.append(
                    f"{module} (layer {LAYERS[a]}) imports {dep} (layer {LAYERS[b]})"
                )
    return bad


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if state.get(dep) is None:
                found = visit(dep, [*stack, dep])
                if found:
                    return found
        state[node] = 2
        return []

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node, [node])
            if found:
                return found
    return []


def face_imports(graph: dict[str, set[str]]) -> list[str]:
    """Modules of a subpackage that import the subpackage's own face."""
    bad = []
    for module, imported in graph.items():
        parts = module.split(".")
        if len(parts) >= 3 and ".".join(parts[:2]) in imported:
            bad.append(f"{module} imports its package face {'.'.join(parts[:2])}")
    return bad


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {
        name: _imports(name, path, modules)
        for name, path in modules.items()
        if name != "jnas"
    }


def test_every_component_has_a_layer(graph):
    assert {_component(m) for m in graph} - {"assets"} <= set(LAYERS)


def test_no_module_imports_a_higher_layer(graph):
    bad = layer_violations(graph)
    assert not bad, "\n".join(bad)


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert not cycle, " -> ".join(cycle)


def test_modules_never_import_their_own_package_face(graph):
    bad = face_imports(graph)
    assert not bad, "\n".join(bad)


def test_the_checks_catch_violations():
    assert layer_violations({"jnas.cost": {"jnas.search.loop"}})
    assert layer_violations({"jnas.data.pipeline": {"jnas.latency.roofline"}})
    assert not layer_violations({"jnas.search.loop": {"jnas.cost", "jnas.data"}})
    assert find_cycle({"jnas.a": {"jnas.b"}, "jnas.b": {"jnas.a"}}) == [
        "jnas.a",
        "jnas.b",
        "jnas.a",
    ]
    assert not find_cycle({"jnas.a": {"jnas.b"}, "jnas.b": set()})
    assert face_imports({"jnas.data.pipeline": {"jnas.data"}})
