"""Small command-line helpers: ``python -m cl_compress.cli list``.

``list`` imports neither torch nor the strategies: the built-in strategies' names and
descriptions are read from their source (``@register("name")`` and ``description = "..."``),
the benchmarks from ``settings.BENCHMARKS`` and the models from ``models/backbones.py``'s
``BACKBONES`` table, so it answers in well under a second. Strategies that other packages
register through the entry-point group are listed by name.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent


def _builtin_strategies() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted((PKG / "strategies").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            name = next((d.args[0].value for d in node.decorator_list
                         if isinstance(d, ast.Call) and getattr(d.func, "id", "") == "register"
                         and d.args and isinstance(d.args[0], ast.Constant)), None)
            if name is None:
                continue
            desc = next((st.value.value for st in node.body if isinstance(st, ast.Assign)
                         and any(getattr(t, "id", "") == "description" for t in st.targets)
                         and isinstance(st.value, ast.Constant)), "")
            out[name] = desc
    return out


def _backbones() -> dict[str, str]:
    tree = ast.parse((PKG / "models" / "backbones.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "BACKBONES" for t in node.targets):
            assert isinstance(node.value, ast.Dict)
            return {k.value: v.elts[1].value for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Tuple)}
    return {}


def list_choices() -> str:
    from importlib.metadata import entry_points

    from cl_compress.settings import BENCHMARKS

    strategies = _builtin_strategies()
    for ep in entry_points(group="cl_compress.strategies"):
        strategies.setdefault(ep.name, "(entry point)")
    lines = ["strategies (strategy=NAME):"]
    lines += [f"  {n:<14} {d}" for n, d in sorted(strategies.items())]
    lines += ["benchmarks (benchmark=NAME):"]
    lines += [f"  {n:<16} {d}" for n, (d, _, _) in BENCHMARKS.items()]
    lines += ["models (model=NAME):"]
    lines += [f"  {n:<10} {d}" for n, d in _backbones().items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["list"]:
        print(list_choices())
        return 0
    print("usage: python -m cl_compress.cli list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
