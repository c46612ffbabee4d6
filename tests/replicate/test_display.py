"""The terminal progress display draws one line per resource with its documents so far."""

from __future__ import annotations

import io

from rich.console import Console

from tidemark.replicate import TerminalProgress


def test_the_progress_display_shows_each_resource_with_its_document_count():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with TerminalProgress(console) as progress:
        progress("ed-fi:schools", "extract", 500)
        progress("ed-fi:schools", "extract", 250)
        progress("ed-fi:sessions", "deletes", 3)
    text = out.getvalue()
    assert "ed-fi:schools" in text and "750 documents" in text
    assert "ed-fi:sessions" in text and "deletes" in text
