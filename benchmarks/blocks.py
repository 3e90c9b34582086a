"""The marked blocks of BENCHMARKS.md that benchmark scripts write: one writer for all."""

from __future__ import annotations

import os
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def cpu_model(default: str) -> str:
    """The CPU's model name from /proc/cpuinfo (``default`` where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f
                         if ln.startswith("model name")), default)
    except OSError:
        return default


def write_block(lines: list[str], begin: str, end: str, title: str,
                path: Path = BENCHMARKS) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` with ``lines``, or append
    them as a new section headed ``title`` (a markdown heading line); written atomically."""
    path = Path(path)
    text = path.read_text()
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{title}\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
