"""The documentation site: `mkdocs build --strict` with mkdocs.yml and docs/hooks.py, and what it must hold.

One build (module fixture) of a copy of the docs tree with an extra page that is in no nav, as a new page
dropped into docs/ would be; the repository's docs/ is never written to. The hook's link rewriting and
docstring clean-up are also tested as plain functions.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import inspect
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A page no nav lists, linking out of docs/ as the existing pages do.
NEW_PAGE = """# A page not in the nav

The [critic results](../benchmarks/results/critic.md), the [readme](../README.md) and
[`pgrad/algorithms/presets.py`](../pgrad/algorithms/presets.py).
"""


def _hooks():
    spec = importlib.util.spec_from_file_location("pgrad_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "mkdocs.yml", tree)
    shutil.copytree(ROOT / "docs", tree / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("benchmarks", "pgrad", "README.md"):
        (tree / name).symlink_to(ROOT / name)
    (tree / "docs" / "zz_new_page.md").write_text(NEW_PAGE)
    out = tree / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tree / "mkdocs.yml"), "-d", str(out)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


def _text(page: Path) -> str:
    """A built page's article as plain text, whitespace collapsed."""
    source = page.read_text(encoding="utf-8")
    article = re.search(r"<article[^>]*>(.*)</article>", source, re.DOTALL).group(1)
    article = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", article, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", article)).split())


def _words(text: str) -> str:
    """Docstring text as it reads once rendered: markdown code marks gone, whitespace collapsed."""
    return " ".join(text.replace("`", " ").split())


def _fields(module: str, cls: str = "Config") -> dict[str, tuple[str | None, ast.expr | None]]:
    """A dataclass's fields, inherited ones included: name -> (its docstring, its default's expression).

    Read from the source with `ast`, following the bases through the module's imports, so that this test
    process never imports torch (the build does, in its own process)."""
    tree = ast.parse((ROOT / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8"))
    where = {}  # a name imported here -> (module, class or submodule name)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            where.update({alias.asname or alias.name: (node.module, alias.name) for alias in node.names})
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    found: dict[str, tuple[str | None, ast.expr | None]] = {}
    for base in klass.bases:
        if isinstance(base, ast.Name):  # NetworkConfig, SHACConfig (`import Config as SHACConfig`)
            source, name = where.get(base.id, (module, base.id))
            found.update(_fields(source, name))
        elif isinstance(base, ast.Attribute):  # npg.Config (`from ...score_function import npg`)
            source, name = where[base.value.id]
            found.update(_fields(f"{source}.{name}", base.attr))
    for node, after in itertools.pairwise([*klass.body, None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = (
                after.value.value
                if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                else None
            )
            found[node.target.id] = (inspect.cleandoc(doc) if isinstance(doc, str) else None, node.value)
    return found


def _algorithm_modules() -> dict[str, str]:
    from pgrad.algorithms import REGISTRY  # no torch: the registry names modules, it imports none

    return {name: target.split(":")[0] for name, target in REGISTRY.items()}


def test_build_stays_offline_and_strict() -> None:
    text = (ROOT / "mkdocs.yml").read_text()
    plugins = re.search(r"^plugins:\n((?:  .*\n)+)", text, re.MULTILINE).group(1)
    assert re.findall(r"^  - (\w+)", plugins, re.MULTILINE) == ["search", "mkdocstrings"]  # no privacy/social
    assert re.search(r"^strict: true$", text, re.MULTILINE)
    assert "mkdocs build --strict" in (ROOT / "Makefile").read_text()


def test_home_page_gives_each_family_its_estimator(site: Path) -> None:
    page = (site / "index.html").read_text()
    for family in ("Score function", "Learned critic (pathwise)", "Differentiable simulator"):
        assert f">{family}<" in page
    assert page.count('<div class="arithmatex">') == 3  # one display formula per family
    assert "javascripts/mathjax.js" in page and "mathjax@3" in page
    assert "make demo" in _text(site / "index.html")


def test_family_pages_show_their_math(site: Path) -> None:
    assert "∇θJ = E_τ[ G(τ) Σₜ ∇θ log πθ(aₜ|sₜ) ]" in _text(site / "score_function" / "index.html")
    assert "∇a Q" in _text(site / "critic" / "index.html") or "∇ₐQ" in _text(site / "critic" / "index.html")
    for page in ("differentiable", "differentiable_envs", "estimators", "replay", "harness", "lab"):
        assert (site / page / "index.html").exists(), page


def test_every_algorithm_page_has_its_config_field_docstrings(site: Path) -> None:
    modules = _algorithm_modules()
    for name, module in modules.items():
        page = (site / "reference" / "algorithms" / name / "index.html").read_text()
        text = _text(site / "reference" / "algorithms" / name / "index.html")
        fields = _fields(module)
        assert len(fields) >= 5, name
        for field, (doc, _) in fields.items():
            assert f'.Config.{field}"' in page, (name, field)  # its heading's anchor
            assert doc is None or _words(doc) in text, (name, field, doc)
        module_doc = ast.get_docstring(ast.parse((ROOT / f"{module.replace('.', '/')}.py").read_text()))
        assert _words(module_doc.splitlines()[0]) in text, name  # the estimator's statement
    index = (site / "reference" / "algorithms" / "index.html").read_text()
    assert all(f'href="{name}/"' in index for name in modules)
    home = (site / "index.html").read_text()  # the nav, on every page
    assert all(f'href="reference/algorithms/{name}/"' in home for name in modules)


def test_cli_reference_lists_every_train_flag(site: Path) -> None:
    page = (site / "reference" / "cli" / "index.html").read_text()
    text = html.unescape(page)

    def flag(field: str) -> str:
        return "--" + field.replace("_", "-")

    assert all(flag(f) in text for f in _fields("pgrad.run.config", "RunConfig"))
    sections = re.split(r'<h3 id="train-', text)
    for name, module in _algorithm_modules().items():
        section = next(s for s in sections if s.startswith(f'{name}"'))
        missing = [flag(f) for f in _fields(module) if flag(f) not in section]
        assert not missing, (name, missing)
    for command in ("eval", "resume", "lab"):
        assert f'id="{command}"' in page
    assert "usage: pgrad eval DIR" in text


def test_cli_reference_shows_the_algorithms_own_defaults(site: Path) -> None:
    from pgrad.algorithms.presets import PRESETS

    lr = ast.literal_eval(_fields("pgrad.algorithms.score_function.ppo")["lr"][1])
    assert PRESETS["ppo"]["CartPole-v1"]["lr"] != lr  # else this proves nothing
    text = html.unescape((site / "reference" / "cli" / "index.html").read_text())
    ppo = text.split('<h3 id="train-ppo"')[1].split("<h3")[0]
    lr_flag = ppo.split("--lr FLOAT")[1].split("--")[0]
    assert f"(default: {lr})" in " ".join(lr_flag.split())


def test_api_reference_has_the_public_functions_and_run_options(site: Path) -> None:
    page = (site / "reference" / "api" / "index.html").read_text()
    text = _text(site / "reference" / "api" / "index.html")
    for name in ("train", "resume", "load", "evaluate"):
        assert f'id="pgrad.api.{name}"' in page, name
    for field, (doc, _) in _fields("pgrad.run.config", "RunConfig").items():
        assert _words(doc) in text, (field, doc)  # e.g. run_dir's `runs/<algo>-...` placeholders
    assert (
        'id="pgrad.estimators.advantages.gae"'
        in (site / "reference" / "estimators" / "index.html").read_text()
    )


def test_benchmark_results_are_published_from_their_folder(site: Path) -> None:
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert results
    index = (site / "benchmarks" / "index.html").read_text()
    home = (site / "index.html").read_text()  # the nav, on every page
    for path in results:
        assert (site / "benchmarks" / path.stem / "index.html").exists(), path.name
        assert f'href="{path.stem}/"' in index, path.name
        assert f'href="benchmarks/{path.stem}/"' in home, path.name
    for image in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert (site / "benchmarks" / image.name).read_bytes() == image.read_bytes()
    # docs/critic.md links to ../benchmarks/results/critic.md: the published page in the site
    assert 'href="../benchmarks/critic/"' in (site / "critic" / "index.html").read_text()


def test_every_image_of_every_page_is_in_the_site(site: Path) -> None:
    figures = [*(ROOT / "docs" / "lab").glob("*.png"), *(ROOT / "benchmarks" / "results").glob("*.png")]
    seen = 0
    for page in site.rglob("*.html"):
        for src in re.findall(r'<img[^>]*\bsrc="([^"]+)"', page.read_text()):
            if re.match(r"^[a-z]+:", src):
                continue
            seen += 1
            assert (page.parent / src).resolve().is_file(), (page.relative_to(site), src)
    assert seen >= len(figures)  # the lab's figures and the benchmarks' plots, each shown once at least


def test_a_new_page_outside_the_nav_builds_and_links_out(site: Path) -> None:
    page = (site / "zz_new_page" / "index.html").read_text()
    assert 'href="../benchmarks/critic/"' in page
    assert "<code>README.md</code>" in page and "<code>pgrad/algorithms/presets.py</code>" in page
    assert not (site / "hooks.py").exists()  # the hook is not published


def test_rewrite_links_out_of_docs(tmp_path: Path) -> None:
    rewrite_links = _hooks().rewrite_links
    (tmp_path / "docs" / "lab").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.md").write_text("# x")
    (tmp_path / "tool.py").write_text("")
    published = {
        tmp_path / "benchmarks" / "results" / "x.md": "benchmarks/x.md",
        tmp_path / "docs" / "a.md": "a.md",
    }
    page = tmp_path / "docs" / "lab" / "p.md"
    md = (
        "[r](../../benchmarks/results/x.md#row) ![i](../../benchmarks/results/x.md) [a](../a.md) "
        "[t](../../tool.py) [`tool.py`](../../tool.py) [gone](../../nope.md) [u](https://e.org/x.md) "
        "[h](#h)\n"
        "```\n[r](../../benchmarks/results/x.md)\n```\n"
    )
    out = rewrite_links(md, page, "lab/p.md", published, tmp_path)
    assert out.splitlines()[0] == (
        "[r](../benchmarks/x.md#row) ![i](../benchmarks/x.md) [a](../a.md) "
        "t (`tool.py`) `tool.py` [gone](../../nope.md) [u](https://e.org/x.md) [h](#h)"
    )
    assert out.splitlines()[2] == "[r](../../benchmarks/results/x.md)"  # fenced code stays
    with_repo = rewrite_links(
        "[t](../../tool.py#L3)", page, "lab/p.md", published, tmp_path, "https://g/o/r/"
    )
    assert with_repo == "[t](https://g/o/r/blob/HEAD/tool.py#L3)"
    # a page published from outside docs/ (benchmarks/results/x.md) linking back into docs/
    source = tmp_path / "benchmarks" / "results" / "x.md"
    back = rewrite_links("[a](../../docs/a.md)", source, "benchmarks/x.md", published, tmp_path)
    assert back == "[a](../a.md)"


def test_docstrings_read_as_markdown() -> None:
    markdown_docstring = _hooks().markdown_docstring
    text = (
        "Same as :mod:`pgrad.estimators.returns`, raises :class:`~pgrad.errors.ConfigError`.\n"
        "Folder (default: runs/<algo>-s<seed>), kept `step_<n>`.\n"
        "\n"
        "    code <kept> as written\n"
        "\n"
        "Args:\n"
        "    path: a <dir> of runs.\n"
        "\n"
        "    seed: the <seed>, after a blank line: still the section, not code.\n"
    )
    assert markdown_docstring(text).splitlines() == [
        "Same as `pgrad.estimators.returns`, raises `ConfigError`.",
        "Folder (default: runs/&lt;algo&gt;-s&lt;seed&gt;), kept `step_<n>`.",
        "",
        "    code <kept> as written",
        "",
        "Args:",
        "    path: a &lt;dir&gt; of runs.",
        "",
        "    seed: the &lt;seed&gt;, after a blank line: still the section, not code.",
    ]
