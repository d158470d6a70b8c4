"""The package's imports point down its layers, and no two modules need each other.

    config                                   the numbers
    dmel, wav, patches, moe                  the parts
    protocol, stream, model, generator,      the token stream and the transformer,
      checkpoint, distributed,                 streamed one micro-turn at a time
      expert_parallel, scale
    session, events, timeline, background    the real-time loop, its log and its handoff
    world/*, train, evaluate, clips,         what trains and measures it
      metrics, listen, neural_background
    demo/*, __main__, exercises              what a person runs

The test reads every module's imports with `ast` (inside functions too: an import
moved into a function to dodge a cycle is still a cycle) and fails naming the
import that points up, or the modules of a cycle.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minitml"

LAYERS = [
    ["config"],
    ["dmel", "wav", "flow", "patches", "moe"],
    ["protocol", "stream", "model", "generator", "checkpoint", "distributed", "expert_parallel", "scale"],
    ["session", "events", "timeline", "background"],
    ["world", "train", "evaluate", "clips", "metrics", "listen", "neural_background"],
    ["demo", "__main__", "exercises"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    """minitml/world/vocab.py -> "world.vocab"; minitml/world/__init__.py -> "world"."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """(module inside minitml, line) for every import of the package in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "minitml":  # from minitml import checkpoint
                found += [(alias.name, node.lineno) for alias in node.names]
            elif node.module.startswith("minitml."):
                found.append((node.module.removeprefix("minitml."), node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name.removeprefix("minitml."), node.lineno) for a in node.names
                      if a.name.startswith("minitml.")]
    return found


def graph() -> dict[str, list[tuple[str, int]]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules.pop("", None)  # minitml/__init__.py
    edges = {}
    for name, path in modules.items():
        edges[name] = [(target, line) for target, line in imports(path)
                       if target != name and target in modules]
    return edges


def layer(module: str) -> int:
    return LAYER[module.split(".")[0]]


def test_every_module_has_a_layer():
    missing = sorted({m.split(".")[0] for m in graph()} - set(LAYER))
    assert not missing, f"modules with no layer in tests/test_layers.py: {missing}"


def test_imports_point_down():
    up = [f"minitml/{m.replace('.', '/')}.py:{line} imports minitml.{target} "
          f"(layer {layer(target)} above its own {layer(m)})"
          for m, targets in graph().items() for target, line in targets
          if layer(target) > layer(m) and not target.startswith(m.split(".")[0] + ".")]
    assert not up, "\n".join(up)


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """One cycle of the directed graph, as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    edges = graph()
    cycle = find_cycle({m: sorted({t for t, _ in targets}) for m, targets in edges.items()})
    if cycle:
        where = [f"minitml.{a} imports minitml.{b} (line {next(line for t, line in edges[a] if t == b)})"
                 for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle: " + "; ".join(where))


def test_the_checks_can_fail():
    """The cycle finder finds a planted cycle, and an upward import is noticed."""
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert layer("session") > layer("model") and layer("world.vocab") > layer("background")
