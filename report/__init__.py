"""Render analysis results (REPORT.md, report.html, results.json, PNG plots); never computes."""
