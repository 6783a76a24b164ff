"""The documentation site (mkdocs.yml, docs/) builds in strict mode and covers every tutorial."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SNIPPET = re.compile(r"""^\s*--8<--\s+["']([^"']+)["']""", re.MULTILINE)


def _snippet_paths() -> set[str]:
    return {ref for md in DOCS.rglob("*.md") for ref in SNIPPET.findall(md.read_text("utf-8"))}


def test_snippets_exist_and_every_tutorial_is_in_the_docs():
    refs = _snippet_paths()
    missing = sorted(ref for ref in refs if not (ROOT / ref).is_file())
    assert not missing, f"docs include files that do not exist: {missing}"
    tutorials = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tutorials").glob("*.py")
        if not p.name.startswith("_")
    }
    assert tutorials, "no tutorials found"
    forgotten = sorted(tutorials - refs)
    assert not forgotten, f"tutorials not included in docs/ (add them to tutorials.md): {forgotten}"


def test_site_builds_strict(tmp_path):
    """Every page, mkdocstrings block and snippet resolves; a warning fails the build (the
    docs packages are in the `test` extra: a missing one fails here too)."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for page in ("index.html", "estimators/svi/index.html", "zoo/index.html", "cli/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "index.html").read_text("utf-8")
    assert 'id="ppgen.fit.fit"' in api and 'id="ppgen.Fit"' in api
    svi = (site / "estimators" / "svi" / "index.html").read_text("utf-8")
    assert 'id="ppgen.inference.SVI"' in svi and 'class="arithmatex"' in svi
    tutorials = html.unescape(re.sub(r"<[^>]+>", "", (site / "tutorials/index.html").read_text()))
    assert "Tutorial 1: one program, four estimators" in tutorials  # the snippet was included


def test_every_command_line_zoo_name_is_in_the_cli_page():
    from ppgen.cli import zoo_specs

    page = (DOCS / "cli.md").read_text("utf-8")
    missing = [name for name in zoo_specs() if f"| `{name}` |" not in page]
    assert not missing, f"docs/cli.md's table lacks {missing}; add a row per `ppgen models` line"
