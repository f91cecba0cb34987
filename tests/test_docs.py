"""The documentation stays true: the API reference is current, links resolve, runnable examples run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_api_reference_is_up_to_date(tmp_path):
    out = tmp_path / "api.md"
    subprocess.run([sys.executable, str(DOCS / "gen_api.py"), "--output", str(out)], check=True,
                   capture_output=True, text=True)
    assert out.read_text() == (DOCS / "api.md").read_text(), (
        "docs/api.md is out of date: run `python docs/gen_api.py` and commit the result.")


def test_api_reference_names_every_public_name():
    import ember
    import ember.callbacks
    import ember.loggers

    text = (DOCS / "api.md").read_text()
    for module in (ember, ember.callbacks, ember.loggers):
        for name in module.__all__:
            if name.startswith("__"):
                continue
            assert f"`{module.__name__}.{name}`" in text, f"{module.__name__}.{name} is missing from docs/api.md"


def _links():
    # the READMEs that docs/mkdocs_hooks.py brings into the site are pages there too
    for page in PAGES + [ROOT / "README.md", ROOT / "examples" / "README.md", ROOT / "benchmarks" / "README.md"]:
        for target in _LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # external URLs and same-page anchors
            yield page, target


def _anchors(page: Path) -> set:
    """The ids mkdocs gives the headings of a Markdown page (Python-Markdown's default slugify)."""
    ids = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", page.read_text(), re.M):
        text = unicodedata.normalize("NFKD", heading.replace("`", "")).encode("ascii", "ignore").decode()
        ids.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower()))
    return ids


@pytest.mark.parametrize("page,target", list(_links()), ids=lambda v: getattr(v, "name", v))
def test_relative_links_resolve(page, target):
    """What `mkdocs build --strict` calls a dead link, checked without mkdocs: the target must be a file of
    this repository (docs/mkdocs_hooks.py brings README.md, examples/ and benchmarks/ into the site) and an
    anchor into a Markdown page must name one of its headings."""
    where = page.relative_to(ROOT)
    file, _, anchor = target.partition("#")
    path = (page.parent / file).resolve()
    assert path.is_file(), f"{where} links to {target}, which is not a file"
    assert ROOT in path.parents, f"{where} links to {target}, outside the repository: the site cannot hold it"
    if anchor and path.suffix == ".md":
        assert anchor in _anchors(path), f"{where} links to {target}: {file} has no heading with that id"


def test_mkdocs_build_strict_has_no_warning(tmp_path):
    """The site builds as the README says, with no dead link, when mkdocs is installed (extra `[docs]`)."""
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr
    assert (tmp_path / "site" / "repo" / "examples" / "ddp.py").is_file()  # a linked file outside docs/
    assert (tmp_path / "site" / "repo" / "index.html").is_file()  # README.md, linked from the home page


def _runnable_blocks():
    for page in PAGES:
        for i, code in enumerate(_BLOCK.findall(page.read_text())):
            if code.startswith("# runnable"):
                yield pytest.param(code, id=f"{page.stem}-{i}")


def test_there_are_runnable_examples():
    assert len(list(_runnable_blocks())) >= 5


@pytest.mark.parametrize("code", list(_runnable_blocks()))
def test_runnable_example(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
