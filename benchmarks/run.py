"""`make bench`: run every benchmark, each writing its figures into docs/benchmarks.md."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

if __name__ == "__main__":
    scripts = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run.py")
    failed = [p.name for p in scripts
              if subprocess.run([sys.executable, str(p), "--write-docs", *sys.argv[1:]]).returncode != 0]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
