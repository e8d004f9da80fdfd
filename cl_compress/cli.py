"""Small command-line helpers: ``python -m cl_compress.cli list``."""

from __future__ import annotations

import sys


def list_choices() -> str:
    from .benchmarks import BENCHMARKS
    from .models import BACKBONES
    from .strategies import available

    lines = ["strategies (strategy=NAME):"]
    lines += [f"  {n:<14} {d}" for n, d in available().items()]
    lines += ["benchmarks (benchmark=NAME):"]
    lines += [f"  {n:<16} {d}" for n, (d, _, _) in BENCHMARKS.items()]
    lines += ["models (model=NAME):"]
    lines += [f"  {n:<10} {d}" for n, (_, d) in BACKBONES.items()]
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
