"""The worked example in libs/flexfleet/settlement/README.md runs and prints what it says it prints."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "libs" / "flexfleet" / "settlement" / "README.md"


def test_readme_example_runs_and_prints_its_comments() -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text("utf-8"), re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    expected = [m.split("   (")[0].rstrip() for m in re.findall(r"^# (.*)$", code, re.M)]
    assert out.getvalue().splitlines() == expected
