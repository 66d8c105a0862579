"""The house rules, read from the package's own imports (``ast``, nothing imported).

* No import circles between modules, counting imports inside functions and under
  ``TYPE_CHECKING`` (a circle held together by a late import is still a circle).
* No import from a lower floor to a higher one: ``FLOORS`` lists the package bottom up
  (the data flows formula -> design -> spec -> backend -> inference -> Model/Fit ->
  workflow -> CLI); a module imports only modules on its own floor or below.
* No ``_underscore`` name imported from another module: what is used across modules has
  a public name.
* Every module has a floor, so a new file must be placed in the house to pass.

MixedModels.jl checks its own imports in its test suite in the same spirit; BlackJAX's
``test_compilation.py`` is the model for a structural test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "multilevel"

#: Floors from the bottom up. A module (dotted, without ``multilevel.``) or a package
#: prefix ending in ``.`` (every module inside it) per entry.
FLOORS: tuple[tuple[str, ...], ...] = (
    (
        "errors",
        "_arviz",
        "progress",
        "figures",
        "interrupt",
        "atomic_write",
        "options",
        "program_cache",
        "shape_buckets",
        "tables",
    ),
    ("response_bounds", "ordinal"),
    ("formula.", "families", "distributions", "priors", "diagnostics", "datasets"),
    ("spec", "data_checks", "addition_terms", "response_levels"),
    ("design", "missing", "prior_rules", "saved_fits"),
    ("linear_predictor", "fitted_rows", "chunked.", "population_average"),
    ("backends.",),
    ("inference.",),
    ("loglik", "prediction", "simulation"),
    (
        "evaluation",
        "ppc",
        "prior_check",
        "prior_check_measures",
        "prior_check_plot",
        "r2",
        "hypothesis",
        "effects.",
    ),
    ("fit",),
    ("model",),
    ("workflow.",),
    ("__init__",),
    ("cli.", "__main__"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]  # a package's face is the package
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def floor_of(module: str) -> int:
    for level, entries in enumerate(FLOORS):
        for entry in entries:
            if (
                module == entry
                or module == entry.rstrip(".")
                or (entry.endswith(".") and module.startswith(entry))
            ):
                return level
    raise KeyError(module)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute dotted name an ``ImportFrom`` reads from (relative ones resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    base = package if is_package else package[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    prefix = ".".join(["multilevel", *base])
    return f"{prefix}.{node.module}" if node.module else prefix


def _internal(name: str) -> str | None:
    """``multilevel.a.b`` -> ``a.b`` when it is one of our modules (or ``__init__``)."""
    if name == "multilevel":
        return "__init__"
    if not name.startswith("multilevel."):
        return None
    name = name[len("multilevel.") :]
    while name and name not in MODULES:
        name = name.rpartition(".")[0]  # multilevel.formula.parse_formula -> formula
    return name or None


def imports_of(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _internal(alias.name)
                if target:
                    out.append((target, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                submodule = _internal(f"{source}.{alias.name}")
                if submodule and submodule != _internal(source) and submodule in MODULES:
                    out.append((submodule, None, node.lineno))  # from pkg import module
                    continue
                target = _internal(source)
                if target:
                    out.append((target, alias.name, node.lineno))
    return [(t, n, line) for t, n, line in out if t != module]


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_floor():
    homeless = []
    for module in MODULES:
        try:
            floor_of(module)
        except KeyError:
            homeless.append(module)
    assert not homeless, f"place these modules in FLOORS: {homeless}"


def test_no_import_runs_up_a_floor():
    upward = [
        f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)}), "
        f"line {line}"
        for module, edges in GRAPH.items()
        for target, _, line in edges
        if floor_of(target) > floor_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_private_name_is_imported_across_modules():
    private = [
        f"{module} imports {name} from {target}, line {line}"
        for module, edges in GRAPH.items()
        for target, name, line in edges
        if name is not None and name.startswith("_") and not name.startswith("__")
    ]
    assert not private, "\n".join(private)


def _circles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in {t for t, _, _ in GRAPH[v]}:
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert not _circles(), f"import circles: {_circles()}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from multilevel.errors import DataError", [("errors", "DataError")]),
        ("from multilevel import evaluation", [("evaluation", None)]),
        ("import multilevel.spec", [("spec", None)]),
    ],
)
def test_the_reader_sees_imports(tmp_path, source, expected, monkeypatch):
    """The checks above can fail: the reader finds each form of import."""
    fake = tmp_path / "probe.py"
    fake.write_text(source + "\n")
    monkeypatch.setitem(MODULES, "probe", fake)
    assert [(t, n) for t, n, _ in imports_of("probe")] == expected
