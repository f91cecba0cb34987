"""The ``ember`` console command. ``ember demo`` trains the digits demo."""
from __future__ import annotations

import sys
from typing import Optional

_COMMANDS = {"demo": "train a small CNN on scikit-learn's bundled handwritten digits"}


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ember <command> [options]\n\ncommands:")
        for name, text in _COMMANDS.items():
            print(f"  {name:<8} {text}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from ember.demo import main as demo_main

        return demo_main(rest)
    if command in ("--version", "version"):
        from ember import __version__

        print(__version__)
        return 0
    print(f"ember: unknown command {command!r}; commands are: {', '.join(_COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
