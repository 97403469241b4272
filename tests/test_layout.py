"""The package's layout: its modules import one another without cycles, counting imports made
inside functions (a function-level import can hide a cycle, never break it), and ``import lopt``
stays free of JAX."""

import ast
import json
import pathlib
import subprocess
import sys

import lopt

SRC = pathlib.Path(lopt.__file__).resolve().parent.parent


def module_files(root: pathlib.Path, package: str) -> dict[str, pathlib.Path]:
    """Every module of ``package`` under ``root``, by dotted name (a package by its own name)."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _imported(module: str, is_package: bool, node: ast.AST, modules: dict) -> list[str]:
    """The modules of ``modules`` that the import statement ``node`` in ``module`` loads: ``from
    P import N`` loads ``P.N`` when that is a module, else ``P``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    base = node.module or ""
    if node.level:  # relative: counted from the module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    targets = []
    for alias in node.names:
        name = f"{base}.{alias.name}"
        targets.append(name if name in modules else base)
    return [t for t in targets if t in modules]


def import_graph(root: pathlib.Path, package: str) -> dict[str, set[str]]:
    """``module -> the package's modules it imports``, from every import statement of its
    source: at module level, inside functions and under ``if TYPE_CHECKING``."""
    modules = module_files(root, package)
    graph = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        graph[module] = {
            target
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for target in _imported(module, is_package, node, modules)
            if target != module
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` when there is none."""
    done, on_path, path = set(), set(), []

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        on_path.discard(path.pop())
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)):
            return cycle
    return None


def test_lopt_has_no_import_cycles():
    cycle = find_cycle(import_graph(SRC, "lopt"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_closed_by_an_import_inside_a_function_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import os\nfrom pkg import a\n\ndef g():\n    pass\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("def g():\n    pass\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def _loaded_after(code: str) -> list[str]:
    """Which of JAX and lopt's JAX-side packages a fresh interpreter has loaded after ``code``."""
    probe = (
        f"import sys; {code}; print(sorted(m for m in ('jax', 'lopt.learned') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().replace("'", '"'))


def test_import_lopt_does_not_import_jax():
    assert _loaded_after("import lopt; lopt.__version__, lopt.__all__") == []


PUBLIC_FUNCTIONS = (
    "evaluate",
    "get_task",
    "load",
    "meta_train",
    "pretrained",
    "self_train",
    "train",
)
KIND = (
    "(inspect.isfunction(v) and 'function') or (inspect.ismodule(v) and 'module') "
    "or (inspect.isclass(v) and 'class') or type(v).__name__"
)


def test_the_public_api_names_what_it_says_whatever_was_imported_first():
    """Every name of ``lopt.__all__`` resolves; a function of the API stays that function after
    the modules around it are imported (a submodule named like it would replace it)."""
    probe = (
        "import inspect, json, lopt, lopt.inner, lopt.evaluation.harness, lopt.pretrained.names, "
        "lopt.meta.outer, lopt.population.selftrain; "
        f"print(json.dumps({{n: (lambda v: {KIND})(getattr(lopt, n)) for n in lopt.__all__}}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    kinds = json.loads(out.stdout)
    assert {n for n, kind in kinds.items() if kind == "module"} == {"hybrid", "stepsize"}
    assert {n: kinds[n] for n in PUBLIC_FUNCTIONS} == dict.fromkeys(PUBLIC_FUNCTIONS, "function")
    assert kinds["MLPOptimizer"] == kinds["MetaTrainConfig"] == "class"
    assert kinds["__version__"] == "str"
    assert lopt.train is lopt.inner.train and lopt.evaluate is lopt.evaluation.evaluate
