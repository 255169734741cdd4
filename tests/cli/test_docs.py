"""The documentation: the site builds in strict mode, its reference pages list every option, reject reason,
sample member and exit status the code declares, every `unigeo` command shown in the README and the docs
is one the command line accepts, and the command blocks marked to run do run."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from unigeo.cli import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?:<!-- test: ([^\n]*?) -->\n)?```(\w*)\n(.*?)```", re.S)
SHELLS = ("bash", "sh", "console", "")
INLINE = re.compile(r"(?<!`)`((?:\.venv/bin/)?unigeo [^`]+)`")


def blocks() -> Iterator[tuple[Path, str | None, str, str]]:
    """(page, test marker, language, code) of every fenced block of the README and the docs."""
    for page in PAGES:
        for m in BLOCK.finditer(page.read_text()):
            yield page, m[1], m[2], m[3]


def shell_commands(code: str) -> Iterator[list[str]]:
    """The token lists of the commands in a shell block: continuations joined, comments dropped, split at
    ``&&``, ``;`` and ``|``."""
    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        command: list[str] = []
        for t in tokens:
            if t in ("&&", ";", "|", "||"):
                if command:
                    yield command
                command = []
            else:
                command.append(t)
        if command:
            yield command


def unigeo_invocations() -> Iterator[tuple[str, list[str]]]:
    """(where, the arguments after ``unigeo``) of every unigeo command in a shell block or inline code."""
    for page, _, lang, code in blocks():
        if lang not in SHELLS:
            continue
        for tokens in shell_commands(code):
            for i, t in enumerate(tokens):
                if t == "unigeo" or t.endswith("/unigeo") or (t == "-m" and tokens[i + 1:i + 2] == ["unigeo"]):
                    start = i + (2 if t == "-m" else 1)
                    yield f"{page.name}: {' '.join(tokens)}", tokens[start:]
                    break
    for page in PAGES:
        text = BLOCK.sub("", page.read_text())
        for m in INLINE.finditer(text):
            words = m[1].replace("\\|", "|").replace("[", " ").replace("]", " ").split()
            yield f"{page.name}: `{m[1]}`", words[1:]


def _known_flags(command: click.Command) -> set[str]:
    ctx = click.Context(command)
    flags = {"--help", "-h"}
    for p in command.get_params(ctx):
        flags.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("-"))
    return flags


def test_every_command_shown_is_one_the_command_line_accepts() -> None:
    """A renamed or removed command or flag fails here until the README and the docs follow it."""
    from apache_beam.options.pipeline_options import PipelineOptions

    beam = set(PipelineOptions([]).get_all_options(retain_unknown_options=True))
    checked = 0
    for where, args in unigeo_invocations():
        words = [a for a in args if a not in ("-v", "-q", "-vv")]
        if not words or words[0].startswith("-"):
            assert not words or words[0] in ("--help", "-h", "--version"), where
            continue
        name = words[0]
        if name == "..." or name.isupper():  # a placeholder: `unigeo ...`, `unigeo COMMAND --help`
            continue
        assert name in cli.commands, f"{where}: no command {name!r}"
        command = cli.commands[name]
        known = _known_flags(command)
        for word in words[1:]:
            for flag in word.split("|"):
                flag = flag.split("=", 1)[0]
                if not flag.startswith("--"):
                    continue
                if flag in known:
                    continue
                assert name == "build" and flag[2:].replace("-", "_") in beam, f"{where}: {name} has no {flag}"
        checked += 1
    assert checked >= 20


def test_every_command_block_says_whether_the_tests_run_it() -> None:
    """A shell block that shows a command is marked ``<!-- test: run ... -->`` or ``<!-- test: skip: why -->``
    on the line before it, so that a new example is either run below or skipped for a stated reason."""
    unmarked = [f"{page.name}: {code.splitlines()[0]}" for page, marker, lang, code in blocks()
                if lang in (*SHELLS, "python") and marker is None and code.strip()]
    assert not unmarked, unmarked
    for page, marker, _, _ in blocks():
        if marker is not None:
            assert marker.startswith("run") or re.match(r"skip: \S.{10,}", marker), (page.name, marker)


def _run_block(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


RUN_BLOCKS = [(page, marker, code) for page, marker, _, code in blocks() if marker and marker.startswith("run")]


@pytest.mark.slow
@pytest.mark.parametrize(("page", "marker", "code"), RUN_BLOCKS,
                         ids=[f"{p.name}:{c.splitlines()[0][:40]}" for p, _, c in RUN_BLOCKS])
def test_the_blocks_marked_run_run_as_shown(page: Path, marker: str, code: str, tmp_path: Path,
                                            tiny_world: Path) -> None:
    env = _env()
    cwd = tmp_path
    if marker == "run in the repository":
        if not (ROOT / ".venv" / "bin" / "activate").exists():
            pytest.skip("no .venv in the repository (the test command creates it)")
        cwd = ROOT
    elif marker.startswith("run with "):
        # The placeholders of the page, filled with the test's values: NAME=value pairs and CONFIG.
        values = dict(re.findall(r"([A-Z]+)=(\S+)", marker))
        values["IMAGE"] = "us-central1-docker.pkg.dev/unigeo-test/unigeo/worker:0.1.0"
        code = re.sub(r"^CONFIG=.*$", f"CONFIG={tiny_world / 'sources.yaml'}", code, flags=re.M)
        env.update(values)
    r = _run_block(code, cwd, env)
    assert r.returncode == 0, f"{page.name}:\n{code}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    if "DataflowRunner" in code:
        report = json.loads(r.stdout[r.stdout.index("{"):])
        assert report["runner"] == "DataflowRunner" and report["transforms"] > 50
    if "unigeo audit data" in code:
        assert json.loads((tmp_path / "data" / "manifest.json").read_text())["shards"]
        assert (tmp_path / "data" / "report" / "index.html").is_file()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as the test command builds it (strict: a broken link or a missing page fails)."""
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def _page(site: Path, name: str) -> str:
    return (site / "reference" / name / "index.html").read_text()


def test_the_options_page_lists_every_option_of_every_command(site: Path) -> None:
    html = _page(site, "options")
    for name, command in cli.commands.items():
        section = html.split(f'<h2 id="unigeo-{name}">')[1].split("<h2 ")[0]
        for flag in _known_flags(command) - {"-h", "--help"}:
            assert f"<code>{flag}</code>" in section, (name, flag)


def test_the_reasons_page_lists_every_reject_reason(site: Path) -> None:
    from unigeo.core import reasons

    html = _page(site, "reasons")
    declared = [v for k, v in vars(reasons).items() if k.isupper() and isinstance(v, str)]
    assert len(declared) > 20
    for reason in declared:
        assert f"<code>{reason}</code>" in html, reason


def test_the_sample_page_lists_every_member_and_json_field(site: Path) -> None:
    from unigeo.cli.reference import json_fields
    from unigeo.core.sample import MEMBER_DOCS, json_schema

    html = _page(site, "sample")
    for member in MEMBER_DOCS:
        assert f"<code>{member}</code>" in html, member
    fields = [row[0].strip("`") for row in json_fields()]
    assert set(json_schema()["properties"]) <= set(fields)
    for field in fields:
        assert f"<code>{field}</code>" in html, field


def test_the_exit_codes_page_and_every_help_agree(site: Path) -> None:
    from click.testing import CliRunner

    from unigeo.cli.exits import EXIT_STATUS

    html = _page(site, "exit-codes")
    assert set(EXIT_STATUS) == set(cli.commands)
    for name, codes in EXIT_STATUS.items():
        help_text = "".join(CliRunner().invoke(cli, [name, "--help"]).output.split())  # click rewraps it
        for code, meaning in codes.items():
            assert "".join(meaning.split()) in help_text, (name, code)
        assert html.count(f"<code>unigeo {name}</code>") == len(codes)


def test_the_benchmark_pages_show_every_result_with_its_machine_and_load(site: Path) -> None:
    results = sorted((ROOT / "bench" / "results").glob("*.json"))
    assert results, "bench/results holds no result"
    html = (site / "reference" / "benchmarks" / "index.html").read_text()
    for path in results:
        result = json.loads(path.read_text())
        p = result["provenance"]
        assert {"commit", "date", "cores", "machine", "load_average_start", "load_average_end"} <= set(p)
        assert f"<code>{p['commit']}</code>" in html and f"python -m bench.{result['benchmark']}" in html


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
