"""mkdocs hook (named in mkdocs.yml): the repository files that the docs link to become part of the site.

The pages in docs/ link to files beside them in the repository (``../README.md``,
``../examples/ddp.py``, ``../benchmarks/README.md``), so that the links work on GitHub and in an
editor. mkdocs builds docs/ alone, so those links would be dead in the site. This hook adds every
such file to the site under ``repo/<its path>`` (a Markdown file as a page, whose own links are
followed the same way; anything else as a file to download) and points the links there.
``mkdocs build --strict`` then has no dead link to warn about.
"""
from __future__ import annotations

import os
import posixpath
import re

from mkdocs.structure.files import File, Files, InclusionLevel

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
_LINK = re.compile(r"(?<!!)(\[[^\]]*\]\()([^)\s#]+)(#[^)\s]*)?(\))")  # [text](target#anchor), not images


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("/")


def _inside(path: str, folder: str) -> bool:
    return not os.path.relpath(path, folder).startswith(os.pardir)


def _site_uri(path: str) -> str:
    """Where a file of the repository lives in the site: its place under docs/, or ``repo/<path>``."""
    if _inside(path, DOCS):
        return os.path.relpath(path, DOCS).replace(os.sep, "/")
    return "repo/" + os.path.relpath(path, ROOT).replace(os.sep, "/")


def _linked_files(page_path: str, text: str) -> list[str]:
    """The existing repository files (outside docs/) that the page at ``page_path`` links to."""
    found = []
    for match in _LINK.finditer(text):
        target = match.group(2)
        if not _is_relative(target):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(page_path), target))
        if os.path.isfile(path) and _inside(path, ROOT) and not _inside(path, DOCS):
            found.append(path)
    return found


def on_files(files: Files, config) -> Files:
    pending = [f.abs_src_path for f in files.documentation_pages()]
    added: set = set()
    while pending:
        page_path = pending.pop()
        with open(page_path, encoding="utf-8") as f:
            text = f.read()
        for path in _linked_files(page_path, text):
            if path in added:
                continue
            added.add(path)
            files.append(File.generated(config, _site_uri(path), abs_src_path=path,
                                        inclusion=InclusionLevel.NOT_IN_NAV))
            if path.endswith(".md"):
                pending.append(path)
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    page_path = page.file.abs_src_path
    here = posixpath.dirname(page.file.src_uri)

    def relink(match: re.Match) -> str:
        target = match.group(2)
        if not _is_relative(target):
            return match.group(0)
        path = os.path.normpath(os.path.join(os.path.dirname(page_path), target))
        if not (os.path.isfile(path) and _inside(path, ROOT)):
            return match.group(0)  # mkdocs reports it as it would without this hook
        new = posixpath.relpath(_site_uri(path), here or ".")
        return f"{match.group(1)}{new}{match.group(3) or ''}{match.group(4)}"

    return _LINK.sub(relink, markdown)
