"""`python -m loam <command>`; the only command so far is `serve` (see loam/cli_serve.py)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m loam serve [options]   (python -m loam serve --help for the options)")
        return 0 if args else 2
    if args[0] == "serve":
        from loam.cli_serve import main as serve_main

        return serve_main(args[1:])
    print(f"unknown command {args[0]!r}; the only command is `serve`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
