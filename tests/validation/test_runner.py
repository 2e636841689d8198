"""Great Expectations stays quiet and local: nothing written or created by importing it or opening a context."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_importing_and_opening_a_context_creates_no_files(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("GX_ANALYTICS_ENABLED", None)
    script = (
        "import validation.gates, validation.runner as r; r.Runner(); "
        "import os; assert os.environ['GX_ANALYTICS_ENABLED'] == 'False'"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, timeout=300)
    assert list(tmp_path.iterdir()) == []
