"""mkdocs hooks: the pages of the site that are read from the repository and the code at build time.

- **Benchmarks.** `benchmarks/results/*.md` and their images are published as `benchmarks/NAME.md` (they stay
  where the benchmark scripts write them; nothing is copied into docs/), after a generated index.
- **Command line.** `reference/cli.md` is the output of `pgrad ... --help` for every command, captured from
  `pgrad.cli.main` in this process, so the page is what the installed pgrad prints.
- **Algorithms.** `reference/algorithms/NAME.md` for every algorithm in `pgrad.algorithms.REGISTRY`: its
  module docstring (the ∇θJ estimator), its `Config` with each field's docstring (mkdocstrings), its presets.
- **Links.** A link from a page to a file outside docs/ (`../benchmarks/results/critic.md`) keeps working on
  GitHub and is rewritten for the site: to the published page when there is one, else to the file in the
  repository (`repo_url` set in mkdocs.yml) or, without one, to the file's path as code.
- **Docstrings.** `DocstringMarkdown`, a griffe extension (mkdocs.yml loads it into mkdocstrings), reads
  pgrad's docstrings as the markdown they are meant as: Sphinx roles (:func:`x`) become code, and `<name>`
  placeholders outside code stay text instead of vanishing as HTML tags.
- **Nav.** The nav sections that start with `benchmarks/index.md` and `reference/algorithms/index.md` get
  their pages appended, so a new results file or algorithm shows up without editing mkdocs.yml.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
import warnings
from pathlib import Path
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.pgrad")

BENCHMARK_RESULTS = Path("benchmarks/results")  # relative to the repository (mkdocs.yml's folder)
BENCHMARK_ASSETS = (".png", ".svg", ".jpg", ".gif")
BENCHMARKS_INDEX = "benchmarks/index.md"
ALGORITHMS_INDEX = "reference/algorithms/index.md"
CLI_PAGE = "reference/cli.md"
HELP_COLUMNS = "100"  # tyro wraps --help to the terminal width (COLUMNS)


def _root(config: MkDocsConfig) -> Path:
    return _path(config.config_file_path).parent


def _benchmark_pages(config: MkDocsConfig) -> list[Path]:
    return sorted((_root(config) / BENCHMARK_RESULTS).glob("*.md"))


def _title(path: Path) -> str:
    """A markdown file's first `# ` heading (its file name without one)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


# --- nav --------------------------------------------------------------------------------------------------


def _section_with(nav: Any, first: str) -> list | None:
    """The nav list whose first entry is the page `first` (bare or titled)."""
    if isinstance(nav, list):
        if nav and (nav[0] == first or (isinstance(nav[0], dict) and first in nav[0].values())):
            return nav
        items = nav
    elif isinstance(nav, dict):
        items = list(nav.values())
    else:
        return None
    for item in items:
        found = _section_with(item, first)
        if found is not None:
            return found
    return None


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    from pgrad.algorithms import FAMILIES, list_algorithms

    benchmarks = _section_with(config.nav, BENCHMARKS_INDEX)
    algorithms = _section_with(config.nav, ALGORITHMS_INDEX)
    if benchmarks is None or algorithms is None:
        raise PluginError(
            f"mkdocs.yml: the nav needs sections starting with {BENCHMARKS_INDEX} and {ALGORITHMS_INDEX}"
        )
    del benchmarks[1:], algorithms[1:]  # on_config runs again on every `mkdocs serve` rebuild
    benchmarks.extend(f"benchmarks/{path.name}" for path in _benchmark_pages(config))
    rows = list_algorithms()
    for family in FAMILIES:
        pages = [
            {row["name"]: f"reference/algorithms/{row['name']}.md"} for row in rows if row["family"] == family
        ]
        algorithms.append({family.capitalize(): pages})
    return config


# --- files ------------------------------------------------------------------------------------------------


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _root(config)
    results = root / BENCHMARK_RESULTS
    for path in sorted(results.iterdir()):
        if path.suffix == ".md" or path.suffix in BENCHMARK_ASSETS:
            files.append(File.generated(config, f"benchmarks/{path.name}", abs_src_path=str(path)))
    files.append(File.generated(config, BENCHMARKS_INDEX, content=_benchmarks_index(config)))
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    files.append(File.generated(config, ALGORITHMS_INDEX, content=_algorithms_index()))
    for name, text in _algorithm_pages().items():
        files.append(File.generated(config, f"reference/algorithms/{name}.md", content=text))
    return files


def _benchmarks_index(config: MkDocsConfig) -> str:
    root = _root(config)
    lines = [
        "# Benchmarks",
        "",
        "Each page is a results file the benchmark scripts write into `benchmarks/results/` (shown here as",
        "they left it): the machine, the settings, every run's numbers and the plots. Rerun one with",
        "`python benchmarks/NAME.py`; `make bench` runs pgrad against Stable-Baselines3 "
        "(`benchmarks/score_function.py`).",
        "",
        "| results | script |",
        "| --- | --- |",
    ]
    for path in _benchmark_pages(config):
        script = root / "benchmarks" / f"{path.stem}.py"
        run = f"`python benchmarks/{script.name}`" if script.exists() else ""
        lines.append(f"| [{_title(path)}]({path.name}) | {run} |")
    return "\n".join(lines) + "\n"


# --- command line -----------------------------------------------------------------------------------------


def _help(argv: list[str]) -> str:
    """What `pgrad ARGV` prints on stdout, run in this process; a failing command fails the build."""
    from pgrad.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_columns, saved_showwarning = os.environ.get("COLUMNS"), warnings.showwarning
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # tyro's --help exits 0
                code = exc.code
    finally:
        warnings.showwarning = saved_showwarning  # main installs pgrad's own
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns
    if code not in (0, None):
        raise PluginError(f"`pgrad {' '.join(argv)}` exited with {code}: {err.getvalue().strip()}")
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip("\n")


def _block(text: str) -> list[str]:
    return ["```text", text, "```", ""]


def _split_train_help(text: str, name: str) -> tuple[str, str]:
    """`pgrad train NAME --help` as (its run options, its algorithm options), cut at tyro's group titles."""
    lines = text.splitlines()
    titles = [line.strip() for line in lines]
    if "run options" not in titles or "algo options" not in titles:
        raise PluginError(
            f"`pgrad train {name} --help`: no 'run options' / 'algo options' groups to split at"
        )
    run, algo = titles.index("run options"), titles.index("algo options")
    return "\n".join(lines[run:algo]).rstrip(), "\n".join(lines[algo:]).rstrip()


def cli_reference() -> str:
    """The command-line reference page: every command's `--help`, as the installed pgrad prints it."""
    from pgrad.algorithms import REGISTRY
    from pgrad.cli import COMMANDS
    from pgrad.lab.studies import STUDIES

    page = [
        "# Command line",
        "",
        "Every command's `--help`, as `pgrad` prints it: this page is generated from the code when the site",
        "is built (`docs/hooks.py`). Bad input prints one `pgrad: error: ...` line and exits with status 2;",
        "`--debug` anywhere on the line shows the traceback instead.",
        "",
        "## `pgrad` {#pgrad}",
        "",
        *_block(_help(["--help"])),
        "## `pgrad list` {#list}",
        "",
        "Algorithms and how each estimates ∇θJ (the [algorithm reference](algorithms/index.md) has one page",
        "each).",
        "",
        *_block(_help(["list"])),
        "## `pgrad train` {#train}",
        "",
        "`pgrad train ALGO [run options] [ALGO's options]`. The run options are the same for every",
        "algorithm; `--config FILE.toml|FILE.json` reads options from a file (a run's `run.json` works;",
        "flags given override it) and `--env-kwargs JSON` / `--env-arg KEY=VALUE` pass the env",
        "constructor's arguments. Defaults below are the algorithm's own (`--no-preset`): on an env with a",
        "preset (see the algorithm's page), a run starts from the preset's values instead.",
        "",
        "### Run options {#train-run-options}",
        "",
    ]
    sections = []
    for i, name in enumerate(REGISTRY):
        text = _help(["train", name, "--no-preset", "--help"])
        run, algo = _split_train_help(text, name)
        if i == 0:
            page += _block(run)
        sections += [
            f"### `pgrad train {name}` {{#train-{name}}}",
            "",
            f"Its options, after the run options; the math: [{name}](algorithms/{name}.md).",
            "",
            *_block(algo),
        ]
    page += sections
    page += ["## `pgrad eval` {#eval}", "", *_block(_help(["eval", "--help"]))]
    page += ["## `pgrad resume` {#resume}", "", *_block(_help(["resume", "--help"]))]
    page += [
        "## `pgrad lab` {#lab}",
        "",
        "The [gradient lab](../lab/README.md): estimators and algorithms against the exact gradient.",
        "",
        *_block(_help(["lab", "list"])),
    ]
    for study in [*STUDIES, "claims", "algorithms"]:
        page += [f"### `pgrad lab {study}` {{#lab-{study}}}", "", *_block(_help(["lab", study, "--help"]))]
    for name, command in COMMANDS.items():
        if name in ("train", "eval", "resume", "list", "lab"):
            continue
        if command.__qualname__.startswith("_workflow") and not _workflow_exists(name):
            log.info("CLI reference: pgrad.workflow.%s does not exist yet; `pgrad %s` left out", name, name)
            continue
        page += [f"## `pgrad {name}` {{#{name}}}", "", *_block(_help([name, "--help"]))]
    return "\n".join(page)


def _workflow_exists(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"pgrad.workflow.{name}") is not None


# --- algorithms -------------------------------------------------------------------------------------------


def _algorithms_index() -> str:
    from pgrad.algorithms import list_algorithms

    lines = [
        "# Algorithms",
        "",
        "One page per algorithm, generated from its file when the site is built: the module docstring states",
        "its estimate of ∇θJ, then its `Config`, one field per option (`pgrad train NAME --help` shows the",
        "same options as flags, `pgrad.train(NAME, ..., field=value)` takes them by name).",
        "",
        "| algorithm | family | estimate of ∇θJ |",
        "| --- | --- | --- |",
    ]
    for row in list_algorithms():
        lines.append(f"| [`{row['name']}`]({row['name']}.md) | {row['family']} | {row['summary']} |")
    return "\n".join(lines) + "\n"


def _algorithm_pages() -> dict[str, str]:
    from pgrad.algorithms import REGISTRY, list_algorithms
    from pgrad.algorithms.presets import PRESETS

    rows = {row["name"]: row for row in list_algorithms()}
    pages = {}
    for name, target in REGISTRY.items():
        module = target.split(":")[0]
        row = rows[name]
        lines = [
            f"# `{name}`",
            "",
            f"**{row['family']}** · {row['summary']}",
            "",
            f"`pgrad train {name} --env ENV_ID [options]`: every flag in the "
            f"[command-line reference](../cli.md#train-{name}). Source: `{module.replace('.', '/')}.py`.",
            "",
            f"::: {module}",
            "    options:",
            "      show_root_heading: false",
            "      show_root_toc_entry: false",
            "      members: false",
            "",
            f"::: {module}.Config",
            "    options:",
            "      heading_level: 2",
            "      show_root_full_path: false",
            "      show_signature: false",
            "      show_bases: false",
            "      show_labels: false",
            "      separate_signature: false",
            "      inherited_members: true",
            "      members_order: source",
            "",
        ]
        presets = PRESETS.get(name, {})
        if presets:
            lines += [
                "## Presets",
                "",
                "A run on one of these envs starts from these options (`pgrad.algorithms.presets`); options",
                "given override them and `--no-preset` keeps the defaults above.",
                "",
                "| env | options |",
                "| --- | --- |",
            ]
            for env, options in presets.items():
                values = ", ".join(f"`{key}={value!r}`" for key, value in options.items())
                lines.append(f"| `{env}` | {values} |")
            lines.append("")
        pages[name] = "\n".join(lines)
    return pages


# --- links out of docs/ -----------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^()\s]+)\)")


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.abs_src_path is None:  # generated pages link in site terms already
        return markdown
    published = {_path(f.abs_src_path): f.src_uri for f in files if f.abs_src_path is not None}
    return rewrite_links(
        markdown, _path(page.file.abs_src_path), page.file.src_uri, published, _root(config), config.repo_url
    )


def _path(path: str | Path) -> Path:
    """An absolute path with `..` folded, symlinks kept (a link is read as the folder tree shows it)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def rewrite_links(
    markdown: str,
    source: Path,
    src_uri: str,
    published: dict[Path, str],
    root: Path,
    repo_url: str | None = None,
) -> str:
    """`markdown`'s relative links, written for the file at `source` in the repository, as links of the site
    page `src_uri`: to the site page or asset published from the target file (`published`: file -> its
    src_uri), else (a file of the repository under `root` that the site does not publish) to `repo_url`'s
    copy of it or, without `repo_url`, its path as code. Other links, and links in fenced code, stay."""

    def rewrite(match: re.Match) -> str:
        bang, text, target = match.groups()
        path, hash_, anchor = target.partition("#")
        if not path or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", path) or path.startswith("/"):
            return match.group(0)  # an anchor, a URL or an absolute link: mkdocs checks them as they are
        real = _path(source.parent / path)
        if real in published:
            relative = posixpath.relpath(published[real], posixpath.dirname(src_uri) or ".")
            return f"{bang}[{text}]({relative}{hash_}{anchor})"
        if not real.exists() or not real.is_relative_to(root):
            return match.group(0)  # broken: the strict build reports it
        repo_path = real.relative_to(root).as_posix()
        if repo_url:
            return f"{bang}[{text}]({repo_url.rstrip('/')}/blob/HEAD/{repo_path}{hash_}{anchor})"
        code = f"`{repo_path}`"
        return code if text.strip("`") == repo_path else f"{text} ({code})"

    parts, last = [], 0
    for fence in _FENCE.finditer(markdown):  # links inside fenced code stay as written
        parts += [_LINK.sub(rewrite, markdown[last : fence.start()]), fence.group(0)]
        last = fence.end()
    parts.append(_LINK.sub(rewrite, markdown[last:]))
    return "".join(parts)


# --- docstrings -------------------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|obj|exc):`(~?)([^`]+)`")
_PLACEHOLDER = re.compile(r"<([A-Za-z_][\w-]*)>")
_CODE_SPAN = re.compile(r"(`+[^`]*`+)")
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Attributes|Examples?|Notes?):\s*$")


def markdown_docstring(text: str) -> str:
    """A docstring as markdown: Sphinx roles as code (`~` keeps the last name), `<name>` escaped outside
    code spans and indented code blocks (Google-style sections are indented too, and are not code)."""
    text = _ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    lines, in_code, in_section, previous = [], False, False, ""
    for line in text.split("\n"):
        indented = line.startswith("    ")
        if not indented and line.strip():
            in_section = bool(_SECTION.match(line))
        in_code = indented and not in_section and (in_code or not previous.strip())
        if not in_code:
            parts = _CODE_SPAN.split(line)
            parts[::2] = [_PLACEHOLDER.sub(r"&lt;\1&gt;", part) for part in parts[::2]]
            line = "".join(parts)
        lines.append(line)
        previous = line
    return "\n".join(lines)


class DocstringMarkdown(griffe.Extension):
    """Griffe extension: every docstring through `markdown_docstring` before mkdocstrings renders it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
