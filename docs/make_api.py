"""Write docs/api.md, simcne's API reference, from the docstrings.

    PYTHONPATH=. python docs/make_api.py           # (re)write docs/api.md
    PYTHONPATH=. python docs/make_api.py --check   # exit 1 if docs/api.md is out of date

Why a script of its own rather than pdoc, Sphinx or mkdocstrings: the docstrings are
numpydoc plain text (``TSimCNE``'s Parameters section is itself made from the parameter
table), and one Markdown page that GitHub shows as it is needs no build step, no theme and
no extra dependency for a contributor to install (all three are packages of their own, with
their own plugins and themes). It uses only :mod:`inspect`: each public name's signature and docstring, as written. Sphinx with
numpydoc (what scikit-learn uses) is the step up if the docs get a website; its input would
be the same docstrings. The test suite runs ``--check`` (tests/test_docs.py), so a changed
docstring or a new public name shows up as a stale page until this script is run.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"

#: (module, names): a module's ``__all__`` where it has one, else the names listed here
MODULES = [
    ("simcne", None),
    ("simcne.data", None),
    ("simcne.plot", ["plot_embedding", "plot_stages", "plot_loss", "plot_thumbnails",
                     "interactive_map", "save_figure"]),
    ("simcne.models", None),
    ("simcne.cli", ["main", "build_parser", "PRESETS", "DEMO"]),
]

HEADER = """\
# API reference

Made from the docstrings by `python docs/make_api.py` (do not edit by hand: run it again
after changing a docstring or a public name; the test suite says when this page is out of
date). Every public name of the modules below, with its signature and docstring as
written. The parameters of `TSimCNE` are also in `help(simcne.TSimCNE)`, and the command's
flags in [command.md](command.md).
"""


def _public_names(module, names) -> list[str]:
    if names is None:
        names = [n for n in getattr(module, "__all__", []) if not n.startswith("__")]
    return list(names)


def _signature(obj, name: str) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return name
    return f"{name}{re.sub(r' at 0x[0-9a-fA-F]+', '', sig)}"


def _doc(obj) -> str:
    doc = getattr(obj, "__doc__", None)  # its own: not one inherited from torch or object
    return inspect.cleandoc(doc) if doc else "(no docstring)"


def _block(text: str) -> list[str]:
    return ["```text", text, "```", ""]


def _value(value) -> str:
    if isinstance(value, dict):
        return f"a dict with the keys {', '.join(repr(k) for k in sorted(map(str, value)))}"
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))
    return text if len(text) <= 300 else text[:297] + "..."


def _methods(cls) -> list[tuple[str, object]]:
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if inspect.isfunction(func) or isinstance(member, property):
            out.append((name, member))
    return out


def render() -> str:
    lines = [HEADER]
    for modname, names in MODULES:
        module = importlib.import_module(modname)
        lines += [f"## `{modname}`", ""] + _block(_doc(module))
        for name in _public_names(module, names):
            obj = getattr(module, name)
            qual = f"{modname}.{name}"
            if inspect.isclass(obj):
                lines += [f"### class `{qual}`", ""]
                lines += _block(f"{_signature(obj, name)}\n\n{_doc(obj)}")
                for mname, member in _methods(obj):
                    if isinstance(member, property):
                        lines += [f"#### property `{name}.{mname}`", ""]
                        lines += _block(_doc(member))
                        continue
                    func = getattr(obj, mname)
                    lines += [f"#### `{name}.{mname}`", ""]
                    lines += _block(f"{_signature(func, mname)}\n\n{_doc(func)}")
            elif callable(obj):
                lines += [f"### `{qual}`", ""]
                lines += _block(f"{_signature(obj, name)}\n\n{_doc(obj)}")
            else:
                lines += [f"### `{qual}`", "", f"{type(obj).__name__}: {_value(obj)}", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when docs/api.md differs from the docstrings")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python docs/make_api.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
