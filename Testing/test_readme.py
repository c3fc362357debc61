"""The README's Python console example runs as written (on a headless slicer-core scene)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_quick_start_is_two_make_commands():
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    cmds = re.findall(r"```\n(.*?)```", quick, flags=re.S)[0].split()
    assert cmds == ["make", "demo", "make", "test"]


@pytest.mark.slow
def test_console_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = _blocks()[0]
    assert "slicer_logic.NodeLogic" in block
    ns = {}
    exec(compile(block, "README.md", "exec"), ns)
    result = ns["result"]
    assert result.metrics["pattern"] == "bilateral"  # the demo case has a bilateral band
    assert (tmp_path / "motorband-report.html").stat().st_size > 10_000
