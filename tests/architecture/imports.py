"""An import checker that reads a package's source with ``ast``: layer rules, private modules, cycles.

Nothing is imported: every ``import``/``from … import`` statement anywhere in a module (at the
top, inside a function, under ``if TYPE_CHECKING:``, in a ``try:``) is one edge of the module
import graph, resolved to the module it loads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImportEdge:
    """One imported name: ``importer`` (at ``path``:``line``, the path relative to the directory
    holding the package) loads ``module`` for ``name``.

    ``module`` is the module Python loads (``from a import b`` loads ``a.b`` when that is a module,
    else ``a``); ``name`` is the dotted name the statement refers to (``a.b`` in both cases).
    """

    importer: str
    path: Path
    line: int
    module: str
    name: str

    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class ImportGraph:
    """The modules of one package (dotted names) and every import between them."""

    root: str
    modules: frozenset[str]
    edges: tuple[ImportEdge, ...]


@dataclass(frozen=True)
class LayerRule:
    """Modules within ``package`` may import their own package, ``may_import`` and nothing else
    of the root package; ``root_allowed`` lets them import the root module itself (its version).
    """

    package: str
    may_import: tuple[str, ...]
    root_allowed: bool = True


def within(module: str, package: str) -> bool:
    """True when ``module`` is ``package`` or one of its submodules."""
    return module == package or module.startswith(package + ".")


def _module_name(root_dir: Path, path: Path) -> str:
    parts = [root_dir.name, *path.relative_to(root_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def scan(root_dir: Path) -> ImportGraph:
    """The import graph of the package in ``root_dir`` (its name is the directory's name).

    Only imports of the package itself are kept. Raises ``ValueError`` when ``root_dir`` holds
    no ``__init__.py`` or a relative import climbs above the package.
    """
    if not (root_dir / "__init__.py").is_file():
        raise ValueError(f"{root_dir} is not a package")
    files = {_module_name(root_dir, path): path for path in sorted(root_dir.rglob("*.py"))}
    shown = root_dir.parent
    root = root_dir.name
    modules = frozenset(files)
    edges: list[ImportEdge] = []
    for importer, path in files.items():
        is_package = path.name == "__init__.py"
        shown_path = path.relative_to(shown)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            edges.extend(_edges_of(node, importer, is_package, shown_path, modules, root))
    edges.sort(key=lambda edge: (edge.importer, edge.line, edge.name))
    return ImportGraph(root, modules, tuple(edges))


def _edges_of(
    node: ast.AST,
    importer: str,
    is_package: bool,
    path: Path,
    modules: frozenset[str],
    root: str,
) -> Iterable[ImportEdge]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if within(alias.name, root):
                yield ImportEdge(importer, path, node.lineno, alias.name, alias.name)
        return
    if not isinstance(node, ast.ImportFrom):
        return
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        if node.level - 1 >= len(package):
            raise ValueError(f"{path}:{node.lineno}: relative import beyond {root}")
        base_parts = package[: len(package) - (node.level - 1)]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    if not within(base, root):
        return
    for alias in node.names:
        name = base if alias.name == "*" else f"{base}.{alias.name}"
        module = name if name in modules else base
        yield ImportEdge(importer, path, node.lineno, module, name)


def rule_for(module: str, rules: Sequence[LayerRule], root: str) -> LayerRule | None:
    """The most specific rule whose package holds ``module`` (the root module's rule only for it)."""
    if module == root:
        return next((rule for rule in rules if rule.package == root), None)
    candidates = [rule for rule in rules if rule.package != root and within(module, rule.package)]
    return max(candidates, key=lambda rule: len(rule.package), default=None)


def layer_violations(graph: ImportGraph, rules: Sequence[LayerRule]) -> list[str]:
    """One line per import that a rule forbids, and per module no rule covers."""
    problems: list[str] = []
    for module in sorted(graph.modules):
        if rule_for(module, rules, graph.root) is None:
            problems.append(f"{module}: no layer rule covers this module")
    for edge in graph.edges:
        rule = rule_for(edge.importer, rules, graph.root)
        if rule is None or _allowed(edge.module, rule, graph.root):
            continue
        allowed = ", ".join(rule.may_import) or f"nothing of {graph.root}"
        problems.append(
            f"{edge.where()}: {edge.importer} imports {edge.module} "
            f"({rule.package} may import only its own modules and: {allowed})"
        )
    return problems


def _allowed(module: str, rule: LayerRule, root: str) -> bool:
    own = module == root if rule.package == root else within(module, rule.package)
    if own:
        return True
    if module == root:
        return rule.root_allowed
    return any(within(module, package) for package in rule.may_import)


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def owner_of(name: str) -> str:
    """The public package that owns ``name``: its dotted prefix before the first private part."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:index])
    return name


def private_violations(graph: ImportGraph) -> list[str]:
    """One line per import of a private module or name (``_x``) from outside the public package
    that owns it: ``tidemark.api`` may use ``tidemark.store`` but not ``tidemark.store._model``.
    """
    problems: list[str] = []
    for edge in graph.edges:
        owner = owner_of(edge.name)
        if owner != edge.name and not within(edge.importer, owner):
            problems.append(
                f"{edge.where()}: {edge.importer} imports {edge.name}, private to {owner}"
            )
    return problems


@dataclass(frozen=True)
class ImportCycle:
    """A group of modules that import each other (directly or not), and one circle through them."""

    members: frozenset[str]
    edges: tuple[ImportEdge, ...]

    def describe(self) -> str:
        """``a -> b -> a``, the file and line of each of those imports, and the whole group."""
        chain = " -> ".join([self.edges[0].importer, *(edge.module for edge in self.edges)])
        steps = "".join(f"\n    {edge.where()}: imports {edge.name}" for edge in self.edges)
        group = ", ".join(sorted(self.members))
        return f"import cycle {chain}{steps}\n    (modules in this circle: {group})"


def find_cycles(graph: ImportGraph) -> list[ImportCycle]:
    """One cycle per strongly connected group of modules, ordered by their first module.

    Every import counts as an edge, including those inside functions and under
    ``TYPE_CHECKING``; a module importing itself does not.
    """
    successors: dict[str, dict[str, ImportEdge]] = {}
    for edge in graph.edges:
        if edge.module != edge.importer:
            successors.setdefault(edge.importer, {}).setdefault(edge.module, edge)
    cycles = [
        ImportCycle(frozenset(group), tuple(_one_cycle(min(group), group, successors)))
        for group in _strongly_connected(successors)
        if len(group) > 1
    ]
    return sorted(cycles, key=lambda cycle: min(cycle.members))


def _strongly_connected(successors: dict[str, dict[str, ImportEdge]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on deep graphs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    nodes = sorted(set(successors) | {m for targets in successors.values() for m in targets})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(successors.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(successors.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _one_cycle(
    start: str, component: set[str], successors: dict[str, dict[str, ImportEdge]]
) -> list[ImportEdge]:
    """The shortest path from ``start`` back to itself within ``component`` (breadth first)."""
    came_by: dict[str, ImportEdge] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target, edge in sorted(successors.get(node, {}).items()):
                if target not in component or target in came_by:
                    continue
                came_by[target] = edge
                if target == start:
                    path = [edge]
                    while path[0].importer != start:
                        path.insert(0, came_by[path[0].importer])
                    return path
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")
