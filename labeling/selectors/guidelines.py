"""Guidelines reads: the project's Markdown guidelines and per-label notes, rendered to sanitised HTML.

The Markdown source is stored (``Project.guidelines``, ``Project.label_guidelines``); the HTML is rendered
on read by markdown-it-py (CommonMark plus tables and strikethrough) and sanitised by nh3 (the Ammonia
sanitiser): an allow-list of tags and attributes, links only to http(s) and mailto, so no script, style,
event handler, inline style or ``javascript:`` link reaches a page. Pages get the HTML from the server,
so the Content-Security-Policy stays strict (no client-side Markdown, no inline script).
"""

from __future__ import annotations

import functools
from typing import Any

import nh3
from markdown_it import MarkdownIt

from labeling.models import Project

_MARKDOWN = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable(["table", "strikethrough"])
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "kbd", "li", "mark", "ol", "p", "pre", "s", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "ol": {"start"}, "td": {"align"}, "th": {"align"}}
_URL_SCHEMES = {"http", "https", "mailto"}


# Rendering is a pure function of the source, so it is memoised per process: markdown-it-py is pure
# Python (a 20,000-character text took 60 ms, plus 6 ms of nh3, on a busy 2-core machine), and every
# labeling and review page load reads the guidelines.
@functools.lru_cache(maxsize=64)
def markdown_render(source: str) -> str:
    """Markdown -> sanitised HTML (safe to put in a page as is)."""
    if not source:
        return ""
    return nh3.clean(
        _MARKDOWN.render(source), tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )



def guidelines_get(*, project: Project) -> dict[str, Any]:
    """The guidelines (source and HTML) and, per label in set order, its text, key and note."""
    notes = project.label_guidelines or {}
    return {
        "markdown": project.guidelines,
        "html": markdown_render(project.guidelines),
        "labels": [
            {
                "name": item["name"],
                "text": item.get("text") or item["name"],
                "key": item.get("key", ""),
                "markdown": notes.get(item["name"], ""),
                "html": markdown_render(notes.get(item["name"], "")),
            }
            for item in project.labels
        ],
    }
