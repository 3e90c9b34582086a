"""The docs run as written: every command line and Python block of README.md and docs/*.md
(issue 29, item 1), and docs/command.md names every flag of the command (item 2).

How the fenced blocks of the pages are checked (the convention a page writer follows):

- ```` ```python ```` blocks run, in the order of the page, in one namespace per page: a
  page reads as one session, so a later block may use what an earlier one defined (the
  README's quick start defines ``images`` and ``est``; its figures use them). They run in a
  temporary folder, which is the current directory (files they write land there).
- ```` ```sh ```` and ```` ```bash ```` blocks: every ``simcne ...`` command (also after
  ``python -m`` or ``torchrun ... -m``), continuation lines joined and comments dropped, is
  parsed by the command's own parser (:func:`simcne.cli.build_parser`), without running it;
  the flags of ``simcne fit`` are also checked by ``TSimCNE``'s validation. A
  ``python SCRIPT.py`` line must name a script of the repository, a ``make TARGET`` line a
  target of the Makefile; other lines (``pip``, ``torchrun my_script.py``, shell
  assignments) are not checked.
- A ``simcne ...`` command in a comment of a Python block
  (``TSimCNE(out_dim=3)  # simcne fit DATA --out DIR --out-dim 3``) is parsed too.
- A block right after a line ``<!-- fragment: WHY -->`` is a fragment: a Python one is
  compiled only (it needs a GPU, torchvision, weights or a file that are not here), a shell
  one is not checked (a usage synopsis with placeholders).
- Blocks without a language (outputs, error messages) are not checked.

To keep it fast (seconds per page), the Python blocks run with two stand-ins, patched here:
the built-in dataset ``"digits"`` holds 200 of its 1,797 images, and every ``fit`` trains
one epoch in each stage the snippet asks for (a stage of 0 epochs stays 0), in batches of
at most 64, with ``resnet_tiny`` in place of a named backbone; torch uses one thread.
Everything else runs as written.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import load_script

from simcne import TSimCNE
from simcne.cli import PRESETS, _read_options, build_parser
from simcne.flags import params_from_args

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRAGMENT = re.compile(r"^<!--\s*fragment\b")
FENCE = re.compile(r"^(\s*)```(\S*)\s*(.*)$")
RUNNABLE_LANGS = {"python", "sh", "bash"}


@dataclass
class Block:
    page: Path
    line: int  # of the first line of code (1-based)
    lang: str
    text: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, with their language and whether they are fragments."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        body = "\n".join(ln[len(indent):] if ln.startswith(indent) else ln
                         for ln in lines[i + 1:j])
        found.append(Block(page, i + 2, lang, body, bool(FRAGMENT.match(before.strip()))))
        i = j + 1
    return found


def _pages_with(langs) -> list:
    return [pytest.param(p, id=p.name) for p in PAGES
            if any(b.lang in langs for b in blocks(p))]


# -- shell blocks -----------------------------------------------------------------------------
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
WRAPPERS = {"srun", "time", "nice", "env", "exec"}
#: parameters naming files that must exist, which the docs' examples only name
FILES_NOT_HERE = ("init", "init_stage", "backbone_weights")


def shell_commands(text: str):
    """(line number within the block, tokens) of each command, continuations joined."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i]
        i += 1
        tokens = shlex.split(line, comments=True)
        while tokens and (ENV_ASSIGNMENT.match(tokens[0]) or tokens[0] in WRAPPERS):
            tokens = tokens[1:]
        if tokens:
            yield start, tokens


def simcne_argv(tokens: list[str]) -> list[str] | None:
    """The arguments of a ``simcne`` command, or None when the line runs something else."""
    if tokens[0] == "simcne":
        return tokens[1:]
    for k in range(len(tokens) - 1):
        if tokens[k] == "-m" and tokens[k + 1] == "simcne":
            return tokens[k + 2:]
    return None


def check_simcne(argv: list[str], where: str) -> None:
    """Parse a command with the real parser; a fit's flags must pass TSimCNE's checks."""
    try:
        args = build_parser().parse_args(argv)
        if args.command in ("fit", "transform"):
            _read_options(args)
        if args.command == "fit":
            params = {**PRESETS.get(args.preset or "", {}), **params_from_args(args)}
            for name in FILES_NOT_HERE:
                params.pop(name, None)  # the docs' model and weights files do not exist here
            TSimCNE(**params)._validate_params()
    except (Exception, SystemExit) as e:  # noqa: BLE001  any failure names the line
        raise AssertionError(f"{where}: 'simcne {shlex.join(argv)}' fails: {e}") from None


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:", text, flags=re.M))


@pytest.mark.parametrize("page", _pages_with({"sh", "bash"}))
def test_every_command_line_parses(page):
    failures = []
    for block in blocks(page):
        if block.lang not in ("sh", "bash") or block.fragment:
            continue
        for n, tokens in shell_commands(block.text):
            where = f"{block.page.relative_to(ROOT)}:{block.line + n}"
            argv = simcne_argv(tokens)
            if argv is not None:
                try:
                    check_simcne(argv, where)
                except AssertionError as e:
                    failures.append(str(e))
            elif tokens[0] in ("python", "python3") and tokens[1:2] and tokens[1].endswith(".py"):
                if not (ROOT / tokens[1]).is_file():
                    failures.append(f"{where}: no script {tokens[1]}")
            elif tokens[0] == "make":
                missing = set(tokens[1:]) - _make_targets()
                if missing:
                    failures.append(f"{where}: the Makefile has no target {sorted(missing)}")
    assert not failures, "\n".join(failures)


# -- Python blocks ----------------------------------------------------------------------------
COMMENTED_COMMAND = re.compile(r"#\s*(simcne\s.*)$")
DIGITS_KEPT = 200
BATCH_AT_MOST = 64
NAMED_BACKBONE_STANDIN = "resnet_tiny"


def _short(epochs):
    if isinstance(epochs, (list, tuple)):
        return [min(int(e), 1) for e in epochs]
    return min(int(epochs), 1)


@pytest.fixture
def short_runs(monkeypatch, tmp_path):
    """The stand-ins of the module docstring: 200 digits, one epoch a stage, resnet_tiny."""
    import sklearn.datasets

    real_digits, real_fit = sklearn.datasets.load_digits, TSimCNE.fit

    def few_digits(*args, **kwargs):
        d = real_digits(*args, **kwargs)
        d.images, d.data, d.target = (d.images[:DIGITS_KEPT], d.data[:DIGITS_KEPT],
                                      d.target[:DIGITS_KEPT])
        return d

    def short_fit(self, X, y=None):
        p = self.get_params()
        change = {"total_epochs": _short(p["total_epochs"]),
                  "batch_size": min(p["batch_size"], BATCH_AT_MOST)}
        if isinstance(p["backbone"], str) and p["model"] is None and not p["backbone_weights"]:
            change["backbone"] = NAMED_BACKBONE_STANDIN  # (an init file was trained so too)
        self.set_params(**change)
        return real_fit(self, X, y)

    monkeypatch.setattr(sklearn.datasets, "load_digits", few_digits)
    monkeypatch.setattr(TSimCNE, "fit", short_fit)
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)  # conftest's fixture restores the count
    yield
    try:
        import matplotlib.pyplot as plt

        plt.close("all")
    except ImportError:
        pass


@pytest.mark.parametrize("page", _pages_with({"python"}))
def test_every_python_block_runs(page, short_runs):
    namespace, failures = {"__name__": "__docs__"}, []
    for block in blocks(page):
        if block.lang != "python":
            continue
        code = compile(block.text, block.where, "exec")  # a fragment must still be Python
        for n, line in enumerate(block.text.splitlines()):
            m = COMMENTED_COMMAND.search(line)
            if m:
                try:
                    check_simcne(shlex.split(m.group(1), comments=True)[1:],
                                 f"{block.page.relative_to(ROOT)}:{block.line + n}")
                except AssertionError as e:
                    failures.append(str(e))
        if block.fragment:
            continue
        try:
            exec(code, namespace)  # noqa: S102  the repository's own docs
        except Exception as e:  # noqa: BLE001  every failing block is named
            failures.append(f"{block.where}: the block fails: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)


def test_the_block_parser_sees_fragments_and_languages(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n\n<!-- fragment: needs a GPU -->\n```python\nx = 1\n```\n\n"
                    "```sh\nsimcne fit a \\\n  --out b  # a comment\n```\n\n```\nout\n```\n")
    found = [(b.lang, b.fragment, b.line, b.text) for b in blocks(page)]
    assert found == [("python", True, 5, "x = 1"), ("sh", False, 9, "simcne fit a \\\n  --out b  # a comment"),
                     ("", False, 14, "out")]
    assert list(shell_commands(found[1][3])) == [(0, ["simcne", "fit", "a", "--out", "b"])]
    with pytest.raises(AssertionError, match="required: --out"):
        check_simcne(["fit", "digits"], "here")
    with pytest.raises(AssertionError, match="batch_size"):
        check_simcne(["fit", "digits", "--out", "o", "--batch-size", "1"], "here")


# -- docs/command.md holds every flag ---------------------------------------------------------
def _subcommands() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _sections(text: str) -> dict[str, str]:
    """The text under each '## `simcne NAME`' heading of command.md, by NAME."""
    parts = re.split(r"^## `simcne ([\w-]+)`.*$", text, flags=re.M)
    return {parts[k]: parts[k + 1] for k in range(1, len(parts) - 1, 2)}


def test_command_md_names_every_flag_of_every_subcommand():
    sections = _sections((ROOT / "docs" / "command.md").read_text())
    missing = []
    for name, sub in _subcommands().items():
        if name not in sections:
            missing.append(f"the section '## `simcne {name}`'")
            continue
        for action in sub._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help") and not re.search(
                        re.escape(opt) + r"(?![\w-])", sections[name]):
                    missing.append(f"simcne {name} {opt}")
    assert not missing, f"docs/command.md does not name: {', '.join(missing)}"


def test_every_flag_with_a_default_says_it_in_its_help():
    """``--help`` is the first page a user reads: a flag that does something when left out
    says what (the fit's TSimCNE flags get it from the table, the others write it)."""
    silent = []
    for name, sub in _subcommands().items():
        for action in sub._actions:
            if (not action.option_strings or isinstance(action, argparse._HelpAction)
                    or action.default in (None, False, argparse.SUPPRESS)):
                continue
            text = sub._get_formatter()._expand_help(action) if action.help else ""
            if "default" not in text:
                silent.append(f"simcne {name} {action.option_strings[-1]}")
    assert not silent, f"these flags do not say their default: {', '.join(silent)}"


def test_the_examples_of_fit_help_parse():
    from simcne.cli import FIT_EPILOG

    lines = [ln.strip() for ln in FIT_EPILOG.splitlines() if ln.strip().startswith("simcne ")]
    assert lines
    for line in lines:
        check_simcne(shlex.split(line, comments=True)[1:], "simcne fit --help")


def test_every_environment_variable_is_in_the_readme_table():
    code = "\n".join(p.read_text() for p in (ROOT / "simcne").rglob("*.py"))
    names = set(re.findall(r"\bSIMCNE_[A-Z0-9_]+\b", code))
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Environment variables"):]
    table = table[:table.index("\n## ", 1)]
    assert names and not {n for n in names if f"`{n}`" not in table}


def test_api_md_is_made_from_the_docstrings_of_today():
    """docs/api.md is what docs/make_api.py writes now (run it after changing a docstring)."""
    make_api = load_script("docs/make_api.py")
    text = make_api.render()
    assert "### class `simcne.TSimCNE`" in text and "#### `TSimCNE.fit`" in text
    assert (ROOT / "docs" / "api.md").read_text() == text, (
        "docs/api.md is out of date: run PYTHONPATH=. python docs/make_api.py")


def test_the_version_is_written_once():
    """pyproject.toml reads the version from simcne/_version.py; CITATION.cff agrees."""
    import re

    from simcne._version import __version__

    project = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in project
    assert 'version = {attr = "simcne._version.__version__"}' in project
    cff = re.search(r"^version: (\S+)$", (ROOT / "CITATION.cff").read_text(), re.M)
    assert cff and cff.group(1) == __version__
