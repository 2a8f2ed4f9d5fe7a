"""Shared by the benchmarks: medians over repeated runs, and each benchmark's section of docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).parents[1] / "docs" / "benchmarks.md"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    cores = len([line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores ({cpu}), Python {platform.python_version()}, commit {commit or '?'}, " \
           f"{datetime.now(UTC):%Y-%m-%d}"


def update_section(name: str, markdown: str) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->`, or append it."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"<!-- {name}:start -->\n{markdown.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
