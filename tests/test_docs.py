"""Docs that cannot drift: CI runs the README's test command, and the README's commands exist."""
from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from emovec.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("## Open a store", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    install_and_run, test = readme_commands()
    ci_lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci_lines[-1] == test
    assert "torch==2.13.0" in install_and_run and "torch==2.13.0" in test


def test_readme_quick_start_uses_real_commands() -> None:
    install_and_run, _ = readme_commands()
    runner = CliRunner()
    for sub in re.findall(r"\.venv/bin/emovec ([a-z]+(?: [a-z]+)?)", install_and_run):
        args = sub.split()
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, (sub, result.output)
