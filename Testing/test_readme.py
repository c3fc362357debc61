"""The README's quick start matches the Makefile, and its Python console example runs as written
(on a headless slicer-core scene)."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_quick_start_is_two_make_commands():
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    cmds = re.findall(r"```\n(.*?)```", quick, flags=re.S)[0].split()
    assert cmds == ["make", "demo", "make", "test"]


def _recipe(target: str) -> list:
    """The command lines of a Makefile target, $(BIN) expanded to .venv/bin."""
    text = MAKEFILE.read_text(encoding="utf-8")
    m = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", text, flags=re.M)
    assert m, f"no {target} target in the Makefile"
    return [line.strip().replace("$(BIN)", ".venv/bin") for line in m.group(1).splitlines()]


def test_make_demo_writes_the_demo_case_then_runs_the_main_job():
    """`make demo`: Testing/phantoms/demo.py writes demo-case/, then `motorband run` (flags the
    command accepts) reads its magnitude and phase and writes demo-out/, as the README says."""
    from MotorBandSignLib import cli

    writer, run = _recipe("demo")
    w = shlex.split(writer)
    assert w[:2] == [".venv/bin/python", "Testing/phantoms/demo.py"] and (ROOT / w[1]).is_file()
    case_dir = w[w.index("--out") + 1]
    r = shlex.split(run)
    assert r[0] == ".venv/bin/motorband"
    a = cli._parser().parse_args(r[1:])
    assert a.command == "run"
    assert (a.magnitude, a.phase) == (f"{case_dir}/magnitude.nii.gz", f"{case_dir}/phase.nii.gz")
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert f"`{a.out}/report.html`" in quick and f"`{case_dir}/`" in quick
    assert case_dir in _recipe("clean")[0].split() and a.out in _recipe("clean")[0].split()
    assert "/" + case_dir + "/" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_demo_script_writes_the_files_make_demo_reads(tmp_path, capsys):
    """Testing/phantoms/demo.py --out DIR writes the demo case and prints the magnitude and phase paths."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("phantoms_demo", ROOT / "Testing" / "phantoms" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = tmp_path / "demo-case"
    assert demo.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("magnitude", "phase", "truth", "truth_regions", "band", "parcellation", "t1"):
        assert (out / f"{name}.nii.gz").stat().st_size > 0, name
    assert (out / "case.json").is_file()
    assert str(out / "magnitude.nii.gz") in printed and str(out / "phase.nii.gz") in printed


@pytest.mark.slow
def test_console_example_runs(tmp_path, monkeypatch):
    from phantoms import demo

    # load_demo_nodes reads the demo case `make demo` writes; here the simulator writes it.
    demo.write_demo(tmp_path / "demo-case")
    monkeypatch.setenv("MOTORBANDSIGN_DEMO_DIR", str(tmp_path / "demo-case"))
    monkeypatch.chdir(tmp_path)
    block = _blocks()[0]
    assert "slicer_logic.NodeLogic" in block
    ns = {}
    exec(compile(block, "README.md", "exec"), ns)
    result = ns["result"]
    assert result.metrics["pattern"] == "bilateral"  # the demo case has a bilateral band
    assert (tmp_path / "motorband-report.html").stat().st_size > 10_000
