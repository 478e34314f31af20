"""User text (experiment, run, setting and suite names, filters, titles) made inert where kdtrack
writes Markdown: report.md and the run and experiment descriptions the MLflow UI renders. A
backslash before a character that could open an HTML tag, a link or a code span makes it show as
typed (CommonMark escapes any ASCII punctuation this way)."""
from __future__ import annotations

import re

_MARKUP = re.compile(r"([\\`<\[\]])")
_HTML = re.compile(r"([\\<])")


def inert(text: str) -> str:
    """`text` with every character that could start markup escaped: `<script>`, `[a](b)` and
    backticks show as typed."""
    return _MARKUP.sub(r"\\\1", text)


def inert_html(text: str) -> str:
    """`text` with only HTML (and backslashes) escaped: for table cells, whose intervals read
    `[0.1, 0.2]` and stay readable in the committed file."""
    return _HTML.sub(r"\\\1", text)
