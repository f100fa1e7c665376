"""Every script in examples/ runs to completion; the docs include them, so they must stay working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_examples_folder_is_not_empty():
    assert EXAMPLES, f"no example scripts found in {ROOT / 'examples'}"


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs(script):
    # A subprocess, so that the strategies an example registers stay out of this test session.
    result = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{script.name} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
