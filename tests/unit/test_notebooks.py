"""Every notebook runs top to bottom (smaller inputs, same code) and leaves its figures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(notebook, tmp_path):
    env = os.environ | {"NOTEBOOK_OUT": str(tmp_path), "NOTEBOOK_VEHICLES": "80", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(notebook)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.glob("*.png")), "the notebook drew nothing"
