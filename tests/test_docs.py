"""The documentation keeps up with the code: every option each command accepts is documented on its page (taken from
the command objects themselves, not from --help text), the README stays a short front door that starts with the two
commands a fresh machine runs, every relative link (and its #anchor) leads somewhere, and lines stay readable."""

from __future__ import annotations

import argparse
import importlib
import re
import unicodedata
from pathlib import Path

import pytest
import typer

from support import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250
TOP_LINES = 40
FRONT_DOOR_COMMANDS = ("./scripts/demo.sh", "./scripts/test.sh")
MAX_LINE = 120

# Each command and the page that is its reference: every option it accepts must appear there.
COMMAND_PAGES = {
    "cache-models": "cache-models.md",
    "prepare-job": "jobs.md",
    "run-pipeline": "jobs.md",
    "venv-setup": "install.md",
}


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def cli_options() -> dict[str, set[str]]:
    """Every option string of the three typer commands (hidden ones left out), from the click objects they build
    (typer vendors its own click, so its parameters are told by their kind, not by click's classes)."""
    from offline_speech.cli.app import SHIMS, app

    for command in SHIMS:  # importing a command's module registers it on the app, as app.main does
        importlib.import_module(f"offline_speech.cli.{command.replace('-', '_')}")
    group = typer.main.get_command(app)
    parent = group.make_context("offline-speech", [], resilient_parsing=True)  # its settings: -h as well as --help
    found = {}
    for name in SHIMS:
        command = group.commands[name]  # type: ignore[attr-defined]
        context = command.make_context(name, [], parent=parent, resilient_parsing=True)
        params = command.get_params(context)  # includes the help option
        found[name] = {
            opt
            for param in params
            if param.param_type_name == "option" and not getattr(param, "hidden", False)
            for opt in (*param.opts, *param.secondary_opts)
        }
    return found


def venv_setup_options() -> set[str]:
    from offline_speech.venvs import build_parser

    return {
        opt
        for action in build_parser()._actions
        if action.option_strings and action.help != argparse.SUPPRESS
        for opt in action.option_strings
    }


def all_options() -> list[tuple[str, str]]:
    options = {**cli_options(), "venv-setup": venv_setup_options()}
    return sorted((command, opt) for command, opts in options.items() for opt in opts)


def mentions(text: str, option: str) -> bool:
    """The option as a word of its own: `--convert` is not found inside `--no-convert`, nor `-j` inside `-jobs`."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_the_option_lists_are_real():
    """The walk over the command objects finds what the commands are known to take (else the test below is void)."""
    options = dict(cli_options(), **{"venv-setup": venv_setup_options()})
    assert {"--all", "--verify", "--convert", "--no-convert", "--help"} <= options["cache-models"]
    assert {"--media", "-s", "--source-language", "--diarize"} <= options["prepare-job"]
    assert {"-j", "--job", "--restart"} <= options["run-pipeline"]
    assert {"--force", "--installer"} <= options["venv-setup"]
    assert not mentions("--no-convert", "--convert")


@pytest.mark.parametrize(("command", "option"), all_options())
def test_every_option_is_documented_on_its_page(command, option):
    page = DOCS / COMMAND_PAGES[command]
    assert mentions(page.read_text(encoding="utf-8"), option), (
        f"{command} takes {option}, but {page.relative_to(ROOT)} does not document it"
    )


def test_readme_is_a_short_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move reference material into docs/"
    )


def test_readme_starts_with_the_two_commands():
    top = "\n".join(README.read_text(encoding="utf-8").splitlines()[:TOP_LINES])
    for command in FRONT_DOOR_COMMANDS:
        assert command in top, f"{command} is not in README.md's first {TOP_LINES} lines"


def test_readme_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    linked = {(README.parent / target).resolve() for target, _ in relative_links(text)}
    orphans = [page.name for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not orphans, f"docs pages README.md does not link: {orphans}"


FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[tuple[str, str]]:
    """(path, anchor) of every relative link outside fenced code; path '' is a link within the page."""
    links = []
    for match in LINK.finditer(FENCE.sub("", text)):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        links.append((path, anchor))
    return links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = unicodedata.normalize("NFC", text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for path, anchor in relative_links(page.read_text(encoding="utf-8")):
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{path}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{path}#{anchor}: no such heading in {target.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_lines_stay_readable(page):
    long = [
        f"line {number}: {len(line)} characters"
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > MAX_LINE
    ]
    assert not long, f"{page.relative_to(ROOT)}: lines over {MAX_LINE} characters: {long}"


def test_slug_matches_github():
    assert slug("Who spoke: `--diarize`") == "who-spoke---diarize"
    assert slug("Teams: one mirror, one lock, one cache") == "teams-one-mirror-one-lock-one-cache"
    assert slug("Running jobs: `./run-pipeline.sh`") == "running-jobs-run-pipelinesh"
