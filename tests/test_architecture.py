"""The import graph of cl_compress, read with the standard library's ``ast`` (nothing is
imported): no import cycle among cl_compress modules (function-level imports count: a lazy
import that closes a circle still makes one), and strategy plugins stay plugins (no engine
import, no private name of another plugin module). The checker itself is tested on planted
faults in a throw-away package, so these tests cannot pass vacuously."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cl_compress"
# modules of the engine: a plugin that imports one is no longer a plugin
ENGINE = ("engine", "rundir", "train", "launch", "report", "tracking")
# strategies/ modules that are the plugin API, not plugins
PLUGIN_API = ("base", "registry", "builtin", "helpers", "__init__")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (below ``root``) by dotted name; a package is its __init__."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes anywhere (module level, functions, methods), except under
    ``if TYPE_CHECKING:`` (never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """``(target module, imported name or "")`` for each import of ``module`` that lands in
    the package; ``from pkg import name`` targets ``pkg.name`` when that is a module."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name in modules]
            continue
        if node.level:
            base = module.split(".")
            base = base[:len(base) - node.level + (1 if is_pkg else 0)]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module or ""
        for a in node.names:
            sub = f"{src}.{a.name}"
            if sub in modules:
                out.append((sub, ""))
            elif src in modules:
                out.append((src, a.name))
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {m: {t for t, _ in imports_of(m, p, modules) if t != m} for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def plugin_violations(root: Path, package: str) -> list[str]:
    """Plugins (``<package>.strategies.<x>`` outside the plugin API) that import the engine
    or a private (``_x``) name of another plugin module."""
    modules = module_names(root, package)
    strat = f"{package}.strategies"
    plugins = {m for m in modules if m.startswith(strat + ".") and m.rsplit(".", 1)[1] not in PLUGIN_API}
    engine = tuple(f"{package}.{e}" for e in ENGINE)
    out = []
    for m in sorted(plugins):
        for target, name in imports_of(m, modules[m], modules):
            if target in engine or target.startswith(tuple(e + "." for e in engine)):
                out.append(f"{m} imports the engine module {target}")
            elif name.startswith("_") and target in plugins and target != m:
                out.append(f"{m} imports the private name {name} of plugin {target}")
    return out


def test_no_import_cycle():
    found = cycles(import_graph(ROOT, PACKAGE))
    assert not found, "import cycles among cl_compress modules:\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_plugins_import_only_the_plugin_api():
    found = plugin_violations(ROOT, PACKAGE)
    assert not found, "\n".join(found)


def test_every_module_is_seen():
    """The walk finds the package (a wrong root would make the two tests above pass empty)."""
    graph = import_graph(ROOT, PACKAGE)
    assert {"cl_compress.engine.loop", "cl_compress.strategies.packnet",
            "cl_compress.report.write"} <= set(graph)
    assert "cl_compress.strategies.base" in graph["cl_compress.strategies.packnet"]


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.fixture
def planted(tmp_path):
    _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def f():\n    from .a import g  # a lazy import closing the circle\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import X\n",
        "pkg/d.py": "from .c import Y\n",
        "pkg/engine/__init__.py": "",
        "pkg/engine/loop.py": "",
        "pkg/strategies/__init__.py": "from .registry import get\n",
        "pkg/strategies/registry.py": "",
        "pkg/strategies/helpers.py": "_shared = 1\n",
        "pkg/strategies/one.py": "_secret = 1\n",
        "pkg/strategies/two.py": ("from .one import _secret\nfrom .helpers import _shared\n"
                                  "from .registry import get\n"),
        "pkg/strategies/three.py": "def f():\n    from ..engine.loop import run\n",
        "pkg/strategies/four.py": "from pkg.strategies import one\nimport pkg.strategies.two\n",
    })
    return tmp_path


def test_checker_finds_a_planted_cycle(planted):
    graph = import_graph(planted, "pkg")
    assert cycles(graph) == [["pkg.a", "pkg.b"]]  # c -> d only under TYPE_CHECKING: no cycle
    assert graph["pkg.strategies.four"] == {"pkg.strategies.one", "pkg.strategies.two"}


def test_checker_finds_planted_plugin_faults(planted):
    assert plugin_violations(planted, "pkg") == [
        "pkg.strategies.three imports the engine module pkg.engine.loop",
        "pkg.strategies.two imports the private name _secret of plugin pkg.strategies.one",
    ]


# --- the import rules of docs/architecture.md ----------------------------------------------------
DOC = ROOT / "docs" / "architecture.md"


def unit_of(module: str, package: str = PACKAGE) -> str:
    """``cl_compress.engine.loop`` -> ``engine``; the package's own __init__ -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def read_rules(text: str) -> dict[str, set[str]]:
    """The "may import" column of the table between the import-rules markers."""
    body = text.split("<!-- import-rules: begin -->", 1)[1].split("<!-- import-rules: end -->", 1)[0]
    rules: dict[str, set[str]] = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        allowed = {a.strip() for a in cells[2].split(",") if a.strip() not in ("", "–", "-")}
        rules[cells[0].strip("`")] = allowed
    return rules


def rule_violations(root: Path, package: str, rules: dict[str, set[str]]) -> list[str]:
    graph = import_graph(root, package)
    units = {unit_of(m, package) for m in graph} - {"__init__", "__main__"}
    out = [f"unit {u} has no row in the import rules" for u in sorted(units - set(rules))]
    out += [f"the import rules name {u}, which does not exist" for u in sorted(set(rules) - units)]
    for m in sorted(graph):
        src = unit_of(m, package)
        for t in sorted(graph[m]):
            dst = unit_of(t, package)
            if dst != src and src in rules and dst not in rules[src] | {"__init__"}:
                out.append(f"{m} imports {t}: {src} may not import {dst}")
    return out


def test_imports_follow_the_documented_rules():
    found = rule_violations(ROOT, PACKAGE, read_rules(DOC.read_text()))
    assert not found, "docs/architecture.md import rules broken:\n" + "\n".join(found)


def test_top_level_holds_few_modules():
    """The package's top level: a handful of entry modules besides the subpackages."""
    top = sorted(p.stem for p in (ROOT / PACKAGE).glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 8, top


def test_rule_checker_finds_planted_faults(tmp_path):
    _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "def f():\n    from pkg.high import x  # lazy, still an import\n",
        "pkg/high.py": "from pkg import low\n",
        "pkg/new.py": "",
    })
    rules = read_rules("<!-- import-rules: begin -->\n| unit | role | may import |\n|---|---|---|\n"
                       "| `low` | x | – |\n| `high` | x | low |\n| `gone` | x | – |\n"
                       "<!-- import-rules: end -->")
    assert rules == {"low": set(), "high": {"low"}, "gone": set()}
    assert rule_violations(tmp_path, "pkg", rules) == [
        "unit new has no row in the import rules",
        "the import rules name gone, which does not exist",
        "pkg.low imports pkg.high: low may not import high",
    ]


def main_guard_faults(root: Path, package: str) -> list[str]:
    """Modules whose ``if __name__ == "__main__":`` block runs before a later definition:
    ``python -m`` would call ``main`` while names it uses are still undefined."""
    out = []
    for mod, path in module_names(root, package).items():
        body = ast.parse(path.read_text(), str(path)).body
        own = {b.name for b in body if isinstance(b, ast.FunctionDef)}
        for i, node in enumerate(body):
            runs = {c.func.id for c in ast.walk(node) if isinstance(c, ast.Call)
                    and isinstance(c.func, ast.Name)} & own  # calls this module's own function
            if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and runs:
                later = [getattr(b, "name", "?") for b in body[i + 1:]
                         if isinstance(b, ast.FunctionDef | ast.ClassDef | ast.Assign)]
                if later:
                    out.append(f"{mod}: defines {', '.join(later[:3])} after its __main__ block")
    return out


def test_main_blocks_come_last():
    assert not main_guard_faults(ROOT, PACKAGE)


def test_main_guard_check_finds_a_planted_fault(tmp_path):
    _plant(tmp_path, {"pkg/__init__.py": "",
                      "pkg/m.py": 'def main():\n    return f()\n\n\nif __name__ == "__main__":\n'
                                  '    raise SystemExit(main())\n\n\ndef f():\n    return 0\n'})
    assert main_guard_faults(tmp_path, "pkg") == ["pkg.m: defines f after its __main__ block"]
