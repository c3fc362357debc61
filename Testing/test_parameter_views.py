"""The views of ``params.Parameters`` agree with it: the Slicer module's declared parameter node
class (one field per dataclass field, same type, choices and default), the panel's .ui (tooltips
and spin-box ranges = ``params.HELP`` / ``params.RANGES``), the web form's specs; and the
``motorband web`` command's guards (local address only unless asked; trame only for ``web``).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from MotorBandSignLib import cli, params, slicer_logic
from MotorBandSignLib.params import Parameters

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "MotorBandSign" / "MotorBandSign.py"
UI = ROOT / "MotorBandSign" / "Resources" / "UI" / "MotorBandSign.ui"


# -- the declared @parameterNodeWrapper class ----------------------------------------------------


def declared_fields(source: str) -> list:
    """(name, annotation text, default) of the fields of the @parameterNodeWrapper class."""
    tree = ast.parse(source)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)
               and any(ast.unparse(d) == "parameterNodeWrapper" for d in n.decorator_list)]
    assert len(classes) == 1, "MotorBandSign.py must declare exactly one @parameterNodeWrapper class"
    out = []
    for node in classes[0].body:
        if isinstance(node, ast.AnnAssign):
            default = ast.literal_eval(node.value) if node.value is not None else None
            out.append((node.target.id, ast.unparse(node.annotation), default))
    return out


def expected_fields() -> list:
    out = [(name, classes[0], None) for name, (classes, _what) in slicer_logic.NODE_PARAMETERS.items()]
    for spec in slicer_logic.parameter_specs():
        ann = f"Annotated[str, Choice({list(spec.choices)!r})]" if spec.choices else spec.gui_type.__name__
        out.append((spec.name, ann, spec.default))
    return out


def field_problems(source: str) -> list:
    declared, expected = declared_fields(source), expected_fields()
    problems = []
    names_d, names_e = [d[0] for d in declared], [e[0] for e in expected]
    if names_d != names_e:
        problems.append(f"fields differ: missing {sorted(set(names_e) - set(names_d))}, "
                        f"extra {sorted(set(names_d) - set(names_e))}" if set(names_d) != set(names_e)
                        else "fields are not in the order of NODE_PARAMETERS then Parameters")
    by_name = {d[0]: d for d in declared}
    for name, ann, default in expected:
        if name not in by_name:
            continue
        _, d_ann, d_default = by_name[name]
        if d_ann != ann:
            problems.append(f"{name}: declared {d_ann}, Parameters gives {ann}")
        if d_default != default or type(d_default) is not type(default):
            problems.append(f"{name}: default {d_default!r}, Parameters resolves to {default!r}")
    return problems


def test_declared_parameter_node_matches_parameters_one_for_one():
    source = MODULE.read_text(encoding="utf-8")
    assert "type(" not in source.split("class MotorBandSignParameterNode")[0].split("@parameterNodeWrapper")[-1]
    assert field_problems(source) == []
    declared = [d[0] for d in declared_fields(source)]
    assert declared[len(slicer_logic.NODE_PARAMETERS):] == [f.name for f in dataclasses.fields(Parameters)]


@pytest.mark.parametrize("old, new, problem", [
    ('    z_threshold: float = 2.0\n', '', "missing ['z_threshold']"),
    ('band_ratio: float = 0.845', 'band_ratio: float = 0.84', "band_ratio: default 0.84, Parameters resolves to 0.845"),
    ('homodyne_window: int = 64', 'homodyne_window: float = 64.0', "homodyne_window: declared float, Parameters gives int"),
    ('Choice(["right", "left"])', 'Choice(["right"])', "handedness: declared Annotated[str, Choice(['right'])]"),
])
def test_drift_between_the_declaration_and_parameters_is_caught(old, new, problem):
    source = MODULE.read_text(encoding="utf-8")
    assert old in source
    problems = field_problems(source.replace(old, new, 1))
    assert any(problem in p for p in problems), problems


# -- tooltips and ranges: params.HELP / params.RANGES = the .ui = the web form ------------------


def ui_widgets() -> dict:
    """SlicerParameterName -> (toolTip, minimum, maximum) of the panel's .ui."""
    import html

    out = {}
    text = UI.read_text(encoding="utf-8")
    for m in re.finditer(r'<widget class="\w+" name="\w+">(.*?)</widget>', text, re.S):
        body = m.group(1)
        name = re.search(r'SlicerParameterName".*?<string>(.*?)</string>', body, re.S)
        if not name:
            continue
        tip = re.search(r'name="toolTip">\s*<string>(.*?)</string>', body, re.S)
        lo = re.search(r'name="minimum">\s*<\w+>(.*?)<', body)
        hi = re.search(r'name="maximum">\s*<\w+>(.*?)<', body)
        out[name.group(1)] = (html.unescape(tip.group(1)) if tip else None,
                              float(lo.group(1)) if lo else None, float(hi.group(1)) if hi else None)
    return out


def test_every_field_has_help_and_numeric_fields_have_ranges():
    names = [f.name for f in dataclasses.fields(Parameters)]
    assert sorted(params.HELP) == sorted(names)
    resolved = Parameters().resolved()
    for spec in slicer_logic.parameter_specs():
        assert spec.help == params.HELP[spec.name] and spec.help.endswith(".")
        if spec.gui_type in (int, float) and spec.name in params.RANGES:
            lo, hi = spec.range
            assert lo <= getattr(resolved, spec.name) <= hi, spec
    assert {s.name for s in slicer_logic.parameter_specs() if s.gui_type in (int, float)} == set(params.RANGES)


def test_ui_tooltips_and_ranges_are_params_help_and_ranges():
    widgets = ui_widgets()
    for name in params.HELP:
        assert widgets[name][0] == params.HELP[name], name
    for name, (lo, hi) in params.RANGES.items():
        assert widgets[name][1:] == (lo, hi), name


# -- motorband web: guards ----------------------------------------------------------------------


def test_web_refuses_another_address_without_allow_remote(capsys):
    assert cli.main(["web", "--host", "0.0.0.0"]) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 would let other machines reach the app, which has no authentication" in err
    assert "--allow-remote" in err and "Traceback" not in err
    assert cli.main(["web", "--port", "70000"]) == cli.EXIT_INPUT
    assert "--port 70000: give a port between 1 and 65535" in capsys.readouterr().err


def test_the_library_imports_without_trame():
    """Only MotorBandSignLib.web needs trame: every other module imports with trame blocked."""
    lib = ROOT / "MotorBandSign" / "MotorBandSignLib"
    modules = sorted(p.stem for p in lib.glob("*.py") if p.stem not in ("web", "__main__"))
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('trame', 'trame_slicer', 'trame_server', 'wslink'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            f"for m in {modules!r}:\n"
            "    __import__('MotorBandSignLib.' + m)\n"
            "from MotorBandSignLib import cli\n"
            "print(cli.main(['web']))\n")
    env_path = f"{ROOT / 'MotorBandSign'}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(cli.EXIT_INPUT)
    assert "the web app needs trame-slicer" in proc.stderr and "pip install 'motorbandsign[web]'" in proc.stderr
