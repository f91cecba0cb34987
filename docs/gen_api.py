"""Write docs/api.md: every public class and function of ember's public modules, from their docstrings.

    python docs/gen_api.py           # (re)write docs/api.md
    python docs/gen_api.py --check   # exit 1 if docs/api.md is out of date
    python docs/gen_api.py --output PATH

Only the standard library is used (``inspect``, ``importlib``). A module that fails to import is
listed with the reason instead of its members.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))

MODULES = ["ember", "ember.callbacks", "ember.loggers", "ember.strategies", "ember.utilities", "ember.tuner", "ember.profilers",
           "ember.fabric", "ember.fabric.loggers"]
# methods worth listing under a class: public ones defined on the class itself with a docstring
_MAX_METHODS = 40


def _public_names(module: object) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:  # a module without __all__: what it defines itself
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and (inspect.isclass(v) or inspect.isfunction(v))
                 and getattr(v, "__module__", None) == module.__name__]
    return sorted(names)


def _signature(obj: object) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    sig = re.sub(r" at 0x[0-9a-fA-F]+>", ">", sig)  # function defaults: no memory address, so output is stable
    sig = re.sub(r"(: |-> )'([^'\n]*)'", r"\1\2", sig)  # string annotations unquoted; string defaults keep quotes
    return sig.replace(" -> None", "") if inspect.isclass(obj) else sig


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


def _fence(text: str) -> str:
    """Docstrings are reStructuredText-ish: put each run of doctest lines (``>>>``/``...`` and the output
    under them) in a ```python block; the rest stays text."""
    out, in_code = [], False
    for line in text.splitlines():
        if line.startswith(">>>") and not in_code:
            out.append("```python")
            in_code = True
        elif in_code and not line.strip():
            out.append("```")
            in_code = False
        out.append(line)
    if in_code:
        out.append("```")
    return "\n".join(out)


def _methods(cls: type) -> list[tuple[str, object]]:
    found = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) and member.__doc__:
            found.append((name, member))
        elif isinstance(member, property) and member.__doc__:
            found.append((name, member))
    return found[:_MAX_METHODS]


def render() -> str:
    lines = ["# API reference", "",
             "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.", ""]
    for modname in MODULES:
        lines += [f"## `{modname}`", ""]
        try:
            module = importlib.import_module(modname)
        except ImportError as e:  # an optional dependency is missing: say so, keep going
            lines += [f"*Not importable here: {e}*", ""]
            continue
        if module.__doc__:
            lines += [_fence(_doc(module)), ""]
        for name in _public_names(module):
            try:
                obj = getattr(module, name)
            except ImportError as e:
                lines += [f"### `{modname}.{name}`", "", f"*Not importable here: {e}*", ""]
                continue
            if inspect.ismodule(obj):
                lines += [f"### `{modname}.{name}`", "", f"The module `{obj.__name__}` (documented below).", ""]
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                lines += [f"### `{modname}.{name}`", "", f"`{name} = {obj!r}`", ""]
                continue
            kind = "class" if inspect.isclass(obj) else "def"
            where = f"{obj.__module__}.{obj.__qualname__}"
            lines += [f"### `{modname}.{name}`", "", f"`{kind} {name}{_signature(obj)}`", ""]
            if where != f"{modname}.{name}":
                lines += [f"Defined in `{where}`.", ""]
            lines += [_fence(_doc(obj)) or "*No docstring.*", ""]
            if inspect.isclass(obj):
                for mname, member in _methods(obj):
                    if isinstance(member, property):
                        lines += [f"- **`{mname}`** (property): {_doc(member).splitlines()[0]}"]
                    else:
                        first = _doc(member).split("\n\n")[0].replace("\n", " ")
                        lines += [f"- **`{mname}{_signature(member)}`**: {first}"]
                if _methods(obj):
                    lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is out of date")
    parser.add_argument("--output", default=os.path.join(HERE, "api.md"))
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{args.output} is out of date: run `python docs/gen_api.py`.", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date.")
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
