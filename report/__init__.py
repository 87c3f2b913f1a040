"""Render analysis results (REPORT.md, report.html, results.json, PNG plots); never computes."""
from __future__ import annotations

from .lead import Answer, answers
from .render import render

__all__ = ["Answer", "answers", "render"]
