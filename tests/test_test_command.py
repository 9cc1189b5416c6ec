"""The README's test command is what CI runs, and it collects the suite from a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run the tests", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S)[1].strip()


def test_ci_runs_the_readme_command() -> None:
    command = readme_test_command()
    assert command == "pip install -e '.[dev]' && pytest"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "pytest -q" in ci  # the same runner as the README: a bare `pytest`, not `python -m`


def test_a_bare_pytest_imports_the_tests_package(tmp_path: Path) -> None:
    """`pytest` (unlike `python -m pytest`) does not put the working folder on sys.path; the
    suite's `from tests.... import` lines work all the same (pyproject's `pythonpath`)."""
    pytest_bin = shutil.which("pytest") or str(Path(sys.executable).with_name("pytest"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [pytest_bin, "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/test_runner.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ModuleNotFoundError" not in done.stdout
    assert re.search(r"\d+ tests collected", done.stdout)
