"""Static conformance of the Slicer module, checked where Slicer itself cannot run.

Each check is a function ``check_*(root) -> list[str]`` of problems found in a source tree
(``root`` = the repository). The tests assert that every check returns ``[]`` on this
repository AND that it reports the expected problem on a deliberately broken copy (a renamed
widget, a missing CMake entry, an ``import qt`` in the library, ...): a check that cannot fail
proves nothing.

Checked: the .ui parses; every ``self.ui.<name>`` in MotorBandSign.py is an objectName of the
.ui; every SlicerParameterName is a field of ``params.Parameters`` (or a node reference of
``slicer_logic.NODE_PARAMETERS``), every field has a widget of a fitting class; every widget
class is a real Qt/CTK/Slicer widget (Testing/widget_classes.txt, with its source); every
``self.logic.<method>(...)`` the widget calls exists on the Logic with a signature the call
fits, and the Logic's public methods have the signatures of ``slicer_logic.NodeLogic``; every
Python file and resource under MotorBandSign/ is listed in MotorBandSign/CMakeLists.txt (and
every listed file exists); the top-level CMakeLists.txt has the extension metadata; and
MotorBandSignLib imports nothing Qt or app-only.
"""

from __future__ import annotations

import ast
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = "MotorBandSign"
KNOWN_CLASSES_FILE = Path(__file__).with_name("widget_classes.txt")


def _module_dir(root: Path) -> Path:
    return Path(root) / MODULE


def _ui_path(root: Path) -> Path:
    return _module_dir(root) / "Resources" / "UI" / f"{MODULE}.ui"


def _parse_ui(root: Path):
    """(tree, problems): the parsed .ui, or None and why not."""
    path = _ui_path(root)
    if not path.exists():
        return None, [f"{path.relative_to(root)}: missing"]
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        return None, [f"{path.relative_to(root)}: does not parse as XML ({exc})"]
    r = tree.getroot()
    if r.tag != "ui" or r.find("widget") is None:
        return None, [f"{path.relative_to(root)}: not a Qt Designer file (no <ui><widget>)"]
    return tree, []


def _module_ast(root: Path):
    path = _module_dir(root) / f"{MODULE}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _class(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


# ---------------------------------------------------------------------------------------------
# .ui: parses, names used exist
# ---------------------------------------------------------------------------------------------


def ui_object_names(tree) -> set:
    names = set()
    for el in tree.getroot().iter():
        if el.tag in ("widget", "layout", "action", "spacer") and el.get("name"):
            names.add(el.get("name"))
    return names


def check_ui_names(root) -> list:
    """The .ui parses and every ``self.ui.<name>`` in MotorBandSign.py is an objectName in it."""
    root = Path(root)
    tree, problems = _parse_ui(root)
    if tree is None:
        return problems
    names = ui_object_names(tree)
    used = {}
    for node in ast.walk(_module_ast(root)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            used.setdefault(node.attr, node.lineno)
    for name, line in sorted(used.items()):
        if name not in names:
            problems.append(f"MotorBandSign.py:{line}: self.ui.{name} is not an objectName in {MODULE}.ui")
    dup = [n for n in names if sum(1 for el in tree.getroot().iter() if el.get("name") == n) > 1]
    problems += [f"{MODULE}.ui: objectName {n!r} used twice" for n in sorted(dup)]
    return problems


# ---------------------------------------------------------------------------------------------
# SlicerParameterName <-> params.Parameters
# ---------------------------------------------------------------------------------------------


def parameters_fields(root) -> dict:
    """Field name -> annotation text of ``class Parameters`` in params.py (AST, no import)."""
    path = _module_dir(root) / "MotorBandSignLib" / "params.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = _class(tree, "Parameters")
    if cls is None:
        return {}
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def node_parameters(root) -> set:
    """Keys of ``NODE_PARAMETERS`` in slicer_logic.py (AST)."""
    path = _module_dir(root) / "MotorBandSignLib" / "slicer_logic.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "NODE_PARAMETERS" and isinstance(node.value, ast.Dict):
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return set()


def ui_parameter_bindings(tree) -> dict:
    """SlicerParameterName -> (widget class, objectName)."""
    out = {}
    for w in tree.getroot().iter("widget"):
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                s = p.find("string")
                out[(s.text or "").strip() if s is not None else ""] = (w.get("class"), w.get("name"))
    return out


#: Widget classes the parameter node wrapper connects to each kind of value
#: (Slicer docs, developer_guide/parameter_nodes/gui_connection.md, "Available connectors").
CONNECTORS = {
    "bool": {"QCheckBox", "ctkCheckBox"},
    "int": {"QSpinBox", "QSlider"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "ctkDoubleSpinBox", "ctkDoubleSlider", "qMRMLSpinBox"},
    "str": {"QLineEdit", "QComboBox", "ctkComboBox", "QTextEdit"},
    "tuple": {"QLineEdit"},  # numbers as text, see slicer_logic.TEXT_TUPLES
    "node": {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyComboBox", "qMRMLSubjectHierarchyTreeView"},
}


def _kind(annotation: str) -> str:
    base = [a.strip() for a in annotation.split("|") if a.strip() != "None"][0]
    base = base.split("[")[0]
    return base if base in CONNECTORS else "str"


def check_parameter_names(root) -> list:
    """Every SlicerParameterName is a Parameters field (or a node reference), of a fitting widget;
    every Parameters field and node reference has a widget."""
    root = Path(root)
    tree, problems = _parse_ui(root)
    if tree is None:
        return problems
    fields = parameters_fields(root)
    nodes = node_parameters(root)
    if not fields:
        return ["params.py: no dataclass Parameters with annotated fields found"]
    bindings = ui_parameter_bindings(tree)
    for name, (cls, obj) in sorted(bindings.items()):
        if name in fields:
            kind = _kind(fields[name])
        elif name in nodes:
            kind = "node"
        else:
            problems.append(f"{MODULE}.ui: {obj} has SlicerParameterName {name!r}, which is not a field of "
                            "params.Parameters nor a node reference in slicer_logic.NODE_PARAMETERS")
            continue
        if cls not in CONNECTORS[kind]:
            problems.append(f"{MODULE}.ui: {obj} ({cls}) cannot hold {name!r} ({kind}); "
                            f"use one of {', '.join(sorted(CONNECTORS[kind]))}")
    for name in list(fields) + sorted(nodes):
        if name not in bindings:
            problems.append(f"{MODULE}.ui: no widget has SlicerParameterName {name!r} "
                            "(every parameter is shown in the panel and saved with the scene)")
    return problems


# ---------------------------------------------------------------------------------------------
# Widget classes are real
# ---------------------------------------------------------------------------------------------


def known_widget_classes(path: Path = KNOWN_CLASSES_FILE) -> set:
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.add(line.split()[0])
    return out


def check_widget_classes(root, known: set | None = None) -> list:
    """Every widget class in the .ui (and every declared custom widget) is a known Qt/CTK/Slicer widget."""
    root = Path(root)
    tree, problems = _parse_ui(root)
    if tree is None:
        return problems
    known = known_widget_classes() if known is None else known
    for w in tree.getroot().iter("widget"):
        if w.get("class") not in known:
            problems.append(f"{MODULE}.ui: widget {w.get('name')!r} has unknown class {w.get('class')!r}")
    for c in tree.getroot().iter("customwidget"):
        cls = c.findtext("class")
        if cls not in known:
            problems.append(f"{MODULE}.ui: custom widget class {cls!r} is not a known widget class")
    used = {w.get("class") for w in tree.getroot().iter("widget")}
    declared = {c.findtext("class") for c in tree.getroot().iter("customwidget")}
    for cls in sorted(used - declared):
        if cls and not cls.startswith("Q"):
            problems.append(f"{MODULE}.ui: {cls} is used but not declared in <customwidgets> (Designer/uic need it)")
    return problems


# ---------------------------------------------------------------------------------------------
# Logic methods the widget calls exist, with fitting signatures
# ---------------------------------------------------------------------------------------------


def _signature(fn: ast.FunctionDef) -> dict:
    a = fn.args
    pos = [x.arg for x in a.posonlyargs + a.args]
    if pos and pos[0] == "self":
        pos = pos[1:]
    n_def = len(a.defaults)
    required = pos[: len(pos) - n_def] if n_def else list(pos)
    kwonly = [x.arg for x in a.kwonlyargs]
    kw_required = [x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    defaults = [ast.unparse(d) for d in a.defaults]
    return {"positional": pos, "required": required, "kwonly": kwonly, "kw_required": kw_required,
            "varargs": a.vararg is not None, "varkw": a.kwarg is not None, "defaults": defaults}


def _methods(cls: ast.ClassDef) -> dict:
    out = {}
    for n in cls.body:
        if isinstance(n, ast.FunctionDef):
            out[n.name] = n
        elif isinstance(n, ast.AsyncFunctionDef):
            out[n.name] = n
    return out


def _call_fits(sig: dict, call: ast.Call) -> str | None:
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None  # *args / **kwargs at the call: cannot check statically
    npos = len(call.args)
    if npos > len(sig["positional"]) and not sig["varargs"]:
        return f"{npos} positional arguments, the method takes {len(sig['positional'])}"
    given = set(sig["positional"][:npos]) | {k.arg for k in call.keywords}
    for k in call.keywords:
        if k.arg in sig["positional"][:npos]:
            return f"argument {k.arg!r} given twice"
        if k.arg not in sig["positional"] and k.arg not in sig["kwonly"] and not sig["varkw"]:
            return f"unknown keyword argument {k.arg!r}"
    missing = [r for r in sig["required"] + sig["kw_required"] if r not in given]
    if missing:
        return f"missing required argument(s) {', '.join(missing)}"
    return None


def _node_logic_signatures(root) -> dict:
    path = _module_dir(root) / "MotorBandSignLib" / "slicer_logic.py"
    cls = _class(ast.parse(path.read_text(encoding="utf-8")), "NodeLogic")
    return {} if cls is None else {k: _signature(v) for k, v in _methods(cls).items()}


#: Logic methods that must keep NodeLogic's signature exactly (they only delegate).
DELEGATED = ("prepare", "compute", "show", "process", "remeasure", "saveReport")


def check_logic_calls(root) -> list:
    """Every ``self.logic.<m>(...)`` in the widget names a Logic method and fits its signature;
    the delegating Logic methods have the signatures of slicer_logic.NodeLogic."""
    root = Path(root)
    tree = _module_ast(root)
    problems = []
    logic = _class(tree, f"{MODULE}Logic")
    widget = _class(tree, f"{MODULE}Widget")
    if logic is None or widget is None:
        return [f"MotorBandSign.py: classes {MODULE}Logic and {MODULE}Widget are required"]
    methods = _methods(logic)
    base_methods = {"getParameterNode", "isValidInputOutputData", "setDelayDisplay"}  # ScriptedLoadableModuleLogic
    calls = 0
    for node in ast.walk(widget):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "logic"
                and isinstance(node.func.value.value, ast.Name) and node.func.value.value.id == "self"):
            calls += 1
            name = node.func.attr
            if name not in methods:
                if name not in base_methods:
                    problems.append(f"MotorBandSign.py:{node.lineno}: the widget calls self.logic.{name}(), "
                                    f"which {MODULE}Logic does not define")
                continue
            why = _call_fits(_signature(methods[name]), node)
            if why:
                problems.append(f"MotorBandSign.py:{node.lineno}: self.logic.{name}(...) does not fit its signature: {why}")
    if calls == 0:
        problems.append("MotorBandSign.py: the widget never calls its logic")
    core = _node_logic_signatures(root)
    for name in DELEGATED:
        if name not in methods:
            problems.append(f"MotorBandSign.py: {MODULE}Logic.{name} is missing")
        elif name not in core:
            problems.append(f"slicer_logic.py: NodeLogic.{name} is missing")
        else:
            mine, theirs = _signature(methods[name]), core[name]
            for key in ("positional", "required", "defaults", "kwonly"):
                if mine[key] != theirs[key]:
                    problems.append(f"{MODULE}Logic.{name} and NodeLogic.{name} differ in {key}: "
                                    f"{mine[key]} vs {theirs[key]}")
    return problems


# ---------------------------------------------------------------------------------------------
# CMake lists every file
# ---------------------------------------------------------------------------------------------


def _cmake_set(text: str, var: str, module_name: str) -> list | None:
    m = re.search(r"set\(\s*" + re.escape(var) + r"\b(.*?)\)", text, re.S)
    if m is None:
        return None
    body = re.sub(r"#[^\n]*", "", m.group(1))
    return [t.replace("${MODULE_NAME}", module_name) for t in body.split()]


IGNORED_PARTS = {"__pycache__", ".pytest_cache"}


def module_files(root) -> tuple:
    """(python files, resource files) under MotorBandSign/, relative to it."""
    mdir = _module_dir(root)
    py, res = [], []
    for p in sorted(mdir.rglob("*")):
        rel = p.relative_to(mdir)
        if not p.is_file() or IGNORED_PARTS & set(rel.parts) or rel.suffix == ".pyc" \
                or any(part.endswith(".egg-info") for part in rel.parts) or rel.name == "CMakeLists.txt" \
                or rel.name.startswith("."):
            continue
        (py if rel.suffix == ".py" else res).append(rel.as_posix())
    return py, res


def check_cmake_lists(root) -> list:
    """MotorBandSign/CMakeLists.txt lists every .py (SCRIPTS) and every other file (RESOURCES)
    under MotorBandSign/, lists nothing that does not exist, and builds and tests the module."""
    root = Path(root)
    path = _module_dir(root) / "CMakeLists.txt"
    if not path.exists():
        return ["MotorBandSign/CMakeLists.txt: missing"]
    text = path.read_text(encoding="utf-8")
    problems = []
    m = re.search(r"set\(\s*MODULE_NAME\s+(\w+)\s*\)", text)
    name = m.group(1) if m else None
    if name != MODULE:
        problems.append(f"MotorBandSign/CMakeLists.txt: MODULE_NAME must be {MODULE}, is {name}")
    scripts = _cmake_set(text, "MODULE_PYTHON_SCRIPTS", MODULE) or []
    resources = _cmake_set(text, "MODULE_PYTHON_RESOURCES", MODULE) or []
    py, res = module_files(root)
    for f in py:
        if f not in scripts:
            problems.append(f"MotorBandSign/CMakeLists.txt: {f} is not listed in MODULE_PYTHON_SCRIPTS")
    for f in res:
        if f not in resources:
            problems.append(f"MotorBandSign/CMakeLists.txt: {f} is not listed in MODULE_PYTHON_RESOURCES")
    for f in scripts + resources:
        if not (_module_dir(root) / f).is_file():
            problems.append(f"MotorBandSign/CMakeLists.txt: lists {f}, which does not exist")
    for needle, why in ((r"slicerMacroBuildScriptedModule\(", "slicerMacroBuildScriptedModule call"),
                        (r"WITH_GENERIC_TESTS", "WITH_GENERIC_TESTS"),
                        (r"SCRIPTS\s+\$\{MODULE_PYTHON_SCRIPTS\}", "SCRIPTS ${MODULE_PYTHON_SCRIPTS}"),
                        (r"RESOURCES\s+\$\{MODULE_PYTHON_RESOURCES\}", "RESOURCES ${MODULE_PYTHON_RESOURCES}"),
                        (r"if\(BUILD_TESTING\)\s*(#[^\n]*\s*)*slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)",
                         "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py) under if(BUILD_TESTING)")):
        if not re.search(needle, text):
            problems.append(f"MotorBandSign/CMakeLists.txt: no {why}")
    return problems


EXTENSION_FIELDS = ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                    "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS")


def check_extension_cmake(root) -> list:
    """The top-level CMakeLists.txt has what the extension index and the build need."""
    path = Path(root) / "CMakeLists.txt"
    if not path.exists():
        return ["CMakeLists.txt: missing"]
    text = path.read_text(encoding="utf-8")
    problems = []
    for f in EXTENSION_FIELDS:
        if not re.search(r"set\(\s*" + f + r"\s+\"[^\"]+\"\s*\)", text):
            problems.append(f"CMakeLists.txt: {f} is not set")
    for needle in (r"find_package\(\s*Slicer\s+REQUIRED\s*\)", r"include\(\s*\$\{Slicer_USE_FILE\}\s*\)",
                   r"add_subdirectory\(\s*MotorBandSign\s*\)", r"include\(\s*\$\{Slicer_EXTENSION_GENERATE_CONFIG\}\s*\)",
                   r"include\(\s*\$\{Slicer_EXTENSION_CPACK\}\s*\)"):
        if not re.search(needle, text):
            problems.append(f"CMakeLists.txt: missing {needle.replace(chr(92), '')}")
    return problems


# ---------------------------------------------------------------------------------------------
# MotorBandSignLib is Qt-free and app-free
# ---------------------------------------------------------------------------------------------

#: Modules that exist only in the Slicer application (or are Qt).
FORBIDDEN_MODULES = ("qt", "ctk", "PythonQt", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper",
                     "slicer.i18n", "slicer.qSlicer", "qSlicer", "qMRML", "slicer.testing", "SampleData")
#: Attributes of ``slicer`` that exist only in the application.
FORBIDDEN_ATTRS = ("slicer.app", "slicer.modules", "slicer.util.loadUI", "slicer.util.getModuleLogic",
                   "slicer.util.getModule", "slicer.util.getModuleWidget", "slicer.util.getModuleGui",
                   "slicer.util.selectModule", "slicer.util.mainWindow", "slicer.util.delayDisplay",
                   "slicer.util.infoDisplay", "slicer.util.errorDisplay", "slicer.util.warningDisplay",
                   "slicer.util.confirmOkCancelDisplay", "slicer.util.settingsValue", "slicer.util.tempDirectory",
                   "slicer.util.loadVolume", "slicer.util.saveNode", "slicer.util.loadScene", "slicer.util.saveScene",
                   "slicer.util.pip_install", "slicer.util.childWidgetVariables", "slicer.util.tryWithErrorDisplay",
                   "slicer.util.arrayFromSegmentBinaryLabelmap", "slicer.util.updateSegmentBinaryLabelmapFromArray",
                   "slicer.util.arrayFromSegment", "slicer.util.arrayFromSegmentInternalBinaryLabelmap")
#: Only the adapter may import slicer / vtk (docs/CONTRACT.md).
MRML_MODULES = ("slicer", "vtk", "vtkmodules", "slicer_core")
MRML_ADAPTER = "mrml.py"


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _forbidden_module(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") or (f.endswith("qSlicer") and name.startswith(f))
               for f in FORBIDDEN_MODULES) or name.startswith("qMRML") or name.startswith("qSlicer")


def check_lib_imports(root) -> list:
    """No module of MotorBandSignLib imports Qt, CTK or app-only Slicer, or uses slicer.app/modules/...;
    only mrml.py imports slicer or vtk."""
    lib = _module_dir(root) / "MotorBandSignLib"
    problems = []
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(_module_dir(root)).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            problems.append(f"{rel}: syntax error ({exc})")
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                if _forbidden_module(n) or n in FORBIDDEN_ATTRS:
                    problems.append(f"{rel}:{node.lineno}: imports {n} (Qt/app-only; MotorBandSignLib must run headless)")
            if names and path.name != MRML_ADAPTER:
                top = names[0].split(".")[0]
                if top in MRML_MODULES:
                    problems.append(f"{rel}:{node.lineno}: imports {names[0]}; only {MRML_ADAPTER} may touch MRML/VTK")
            if isinstance(node, ast.Attribute):
                d = _dotted(node)
                if d and any(d == f or d.startswith(f + ".") for f in FORBIDDEN_ATTRS):
                    # report the outermost match once
                    problems.append(f"{rel}:{node.lineno}: uses {d} (exists only in the Slicer application)")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _forbidden_module(arg.value):
                    problems.append(f"{rel}:{node.lineno}: imports {arg.value} dynamically")
    # one report per line and name (nested attributes match several times)
    seen, out = set(), []
    for p in problems:
        key = re.sub(r"(uses slicer\.\w+)(\.\w+)*", r"\1", p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


#: Array / image libraries: the module file's Widget and Logic must not compute with them.
COMPUTE_NAMES = ("np", "numpy", "scipy", "ndimage", "sitk", "SimpleITK", "skimage")


def check_logic_is_thin(root) -> list:
    """MotorBandSign.py's Widget and Logic compute nothing themselves (no numpy/scipy/SimpleITK);
    only the Test class may build test data with them."""
    tree = _module_ast(Path(root))
    problems = []
    for cls_name in (f"{MODULE}Widget", f"{MODULE}Logic"):
        cls = _class(tree, cls_name)
        if cls is None:
            continue
        for node in ast.walk(cls):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for mod in mods:
                    if mod.split(".")[0] in COMPUTE_NAMES:
                        problems.append(f"MotorBandSign.py:{node.lineno}: {cls_name} imports {mod}; "
                                        "computation belongs in MotorBandSignLib")
            elif isinstance(node, ast.Name) and node.id in COMPUTE_NAMES:
                problems.append(f"MotorBandSign.py:{node.lineno}: {cls_name} uses {node.id}; "
                                "computation belongs in MotorBandSignLib")
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for mod in mods:
                if mod.split(".")[0] in COMPUTE_NAMES:
                    problems.append(f"MotorBandSign.py:{node.lineno}: imports {mod} at module level")
    return list(dict.fromkeys(problems))  # one report per line and name


ALL_CHECKS = (check_ui_names, check_parameter_names, check_widget_classes, check_logic_calls,
              check_cmake_lists, check_extension_cmake, check_lib_imports, check_logic_is_thin)


# ---------------------------------------------------------------------------------------------
# Tests: clean on the repository ...
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_check_passes_on_repository(check):
    assert check(ROOT) == []


def test_known_widget_classes_list_has_its_source():
    text = KNOWN_CLASSES_FILE.read_text(encoding="utf-8")
    assert "github.com/Slicer/Slicer at " in text and "github.com/commontk/CTK at " in text
    known = known_widget_classes()
    assert {"qMRMLWidget", "qMRMLNodeComboBox", "qMRMLTableView", "ctkCollapsibleButton", "QPushButton"} <= known
    assert "qMRMLNodeComboBoxx" not in known and "vtkMRMLScene" not in known


def test_ui_uses_the_slicer_widgets_the_panel_needs():
    tree, problems = _parse_ui(ROOT)
    assert problems == []
    classes = {w.get("name"): w.get("class") for w in tree.getroot().iter("widget")}
    assert classes["MotorBandSign"] == "qMRMLWidget"
    assert classes["resultsTableView"] == "qMRMLTableView"
    for name in ("magnitudeSelector", "phaseSelector", "t1Selector", "parcellationSelector"):
        assert classes[name] == "qMRMLNodeComboBox"
    adv = [w for w in tree.getroot().iter("widget") if w.get("name") == "advancedCollapsibleButton"][0]
    collapsed = [p for p in adv.findall("property") if p.get("name") == "collapsed"]
    assert collapsed and collapsed[0].findtext("bool") == "true"
    apply_ = [w for w in tree.getroot().iter("widget") if w.get("name") == "applyButton"][0]
    assert any(p.get("name") == "enabled" and p.findtext("bool") == "false" for p in apply_.findall("property"))
    # every MRML widget gets the scene from the top-level qMRMLWidget
    receivers = {c.findtext("receiver") for c in tree.getroot().iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml_widgets = {n for n, c in classes.items() if c in ("qMRMLNodeComboBox", "qMRMLTableView")}
    assert mrml_widgets <= receivers


def test_module_metadata():
    tree = _module_ast(ROOT)
    src = (ROOT / MODULE / f"{MODULE}.py").read_text(encoding="utf-8")
    assert 'self.parent.title = _("Motor Band Sign")' in src
    assert '"Quantification"' in src
    for ref in ("Zejlon", "Haacke", "Eckstein", "case report"):
        assert ref in src, ref
    for cls in (MODULE, f"{MODULE}Widget", f"{MODULE}Logic", f"{MODULE}Test"):
        assert _class(tree, cls) is not None, cls
    assert 'sampleName="Motor band demo"' in src and "customDownloader=loadDemoCase" in src


# ---------------------------------------------------------------------------------------------
# ... and each check fails on a deliberately broken copy
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def broken(tmp_path):
    """A copy of the parts of the repository the checks read, to break on purpose."""
    dst = tmp_path / "repo"
    shutil.copytree(ROOT / MODULE, dst / MODULE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    shutil.copy(ROOT / "CMakeLists.txt", dst / "CMakeLists.txt")
    for check in ALL_CHECKS:
        assert check(dst) == [], check.__name__  # the copy is clean before it is broken
    return dst


def _edit(path: Path, old: str, new: str, count: int = 1):
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def test_renamed_widget_is_caught(broken):
    _edit(broken / MODULE / "Resources/UI/MotorBandSign.ui", 'name="remeasureButton"', 'name="remeasureButton2"')
    problems = check_ui_names(broken)
    assert len(problems) == 1 and "self.ui.remeasureButton is not an objectName" in problems[0]


def test_unparsable_ui_is_caught(broken):
    _edit(broken / MODULE / "Resources/UI/MotorBandSign.ui", "</ui>", "</uix>")
    for check in (check_ui_names, check_parameter_names, check_widget_classes):
        problems = check(broken)
        assert len(problems) == 1 and "does not parse as XML" in problems[0]


def test_renamed_parameter_is_caught(broken):
    _edit(broken / MODULE / "Resources/UI/MotorBandSign.ui", "<string>z_threshold</string>", "<string>z_thresh</string>")
    problems = check_parameter_names(broken)
    assert any("SlicerParameterName 'z_thresh', which is not a field of params.Parameters" in p for p in problems)
    assert any("no widget has SlicerParameterName 'z_threshold'" in p for p in problems)
    assert len(problems) == 2


def test_renamed_dataclass_field_is_caught(broken):
    _edit(broken / MODULE / "MotorBandSignLib/params.py", "    bank_depth_mm: float | None = None",
          "    bank_depth: float | None = None")
    problems = check_parameter_names(broken)
    assert any("'bank_depth_mm', which is not a field" in p for p in problems)
    assert any("no widget has SlicerParameterName 'bank_depth'" in p for p in problems)


def test_wrong_widget_for_parameter_type_is_caught(broken):
    ui = broken / MODULE / "Resources/UI/MotorBandSign.ui"
    _edit(ui, '<widget class="QCheckBox" name="softplusCheckBox">', '<widget class="QLineEdit" name="softplusCheckBox">')
    problems = check_parameter_names(broken)
    assert problems == [f"{MODULE}.ui: softplusCheckBox (QLineEdit) cannot hold 'softplus' (bool); use one of QCheckBox, ctkCheckBox"]


def test_unknown_widget_class_is_caught(broken):
    _edit(broken / MODULE / "Resources/UI/MotorBandSign.ui", '<widget class="qMRMLTableView" name="resultsTableView">',
          '<widget class="qMRMLTableWidgetView" name="resultsTableView">')
    problems = check_widget_classes(broken)
    assert f"{MODULE}.ui: widget 'resultsTableView' has unknown class 'qMRMLTableWidgetView'" in problems


def test_renamed_logic_method_is_caught(broken):
    _edit(broken / MODULE / f"{MODULE}.py", "    def remeasure(self, result, segmentationNode, parameters):",
          "    def reMeasure(self, result, segmentationNode, parameters):")
    problems = check_logic_calls(broken)
    assert any("calls self.logic.remeasure(), which MotorBandSignLogic does not define" in p for p in problems)
    assert any("MotorBandSignLogic.remeasure is missing" in p for p in problems)


def test_call_not_fitting_signature_is_caught(broken):
    _edit(broken / MODULE / f"{MODULE}.py", "written = self.logic.saveReport(self._result, path)",
          "written = self.logic.saveReport(self._result, path, overwrite=True)")
    problems = check_logic_calls(broken)
    assert len(problems) == 1 and "self.logic.saveReport(...) does not fit its signature: unknown keyword argument 'overwrite'" in problems[0]


def test_logic_signature_drift_from_node_logic_is_caught(broken):
    _edit(broken / MODULE / "MotorBandSignLib/slicer_logic.py",
          "    def remeasure(self, result: NodeResult, segmentationNode, parameters) -> NodeResult:",
          "    def remeasure(self, result: NodeResult, segmentationNode, parameters, keepOld=False) -> NodeResult:")
    problems = check_logic_calls(broken)
    assert any("MotorBandSignLogic.remeasure and NodeLogic.remeasure differ in positional" in p for p in problems)


def test_missing_cmake_entry_is_caught(broken):
    _edit(broken / MODULE / "CMakeLists.txt", "  MotorBandSignLib/mrml.py\n", "")
    assert check_cmake_lists(broken) == [
        "MotorBandSign/CMakeLists.txt: MotorBandSignLib/mrml.py is not listed in MODULE_PYTHON_SCRIPTS"]


def test_new_unlisted_files_are_caught(broken):
    (broken / MODULE / "MotorBandSignLib" / "newstep.py").write_text("X = 1\n", encoding="utf-8")
    (broken / MODULE / "Resources" / "Icons" / "Extra.png").write_bytes(b"\x89PNG")
    problems = check_cmake_lists(broken)
    assert "MotorBandSign/CMakeLists.txt: MotorBandSignLib/newstep.py is not listed in MODULE_PYTHON_SCRIPTS" in problems
    assert "MotorBandSign/CMakeLists.txt: Resources/Icons/Extra.png is not listed in MODULE_PYTHON_RESOURCES" in problems


def test_listed_but_missing_file_is_caught(broken):
    (broken / MODULE / "MotorBandSignLib" / "volume.py").unlink()
    problems = check_cmake_lists(broken)
    assert problems == ["MotorBandSign/CMakeLists.txt: lists MotorBandSignLib/volume.py, which does not exist"]


def test_missing_unittest_registration_is_caught(broken):
    _edit(broken / MODULE / "CMakeLists.txt", "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)", "")
    problems = check_cmake_lists(broken)
    assert len(problems) == 1 and "slicer_add_python_unittest" in problems[0]


def test_missing_extension_field_is_caught(broken):
    text = (broken / "CMakeLists.txt").read_text(encoding="utf-8")
    (broken / "CMakeLists.txt").write_text(re.sub(r"set\(EXTENSION_ICONURL [^\n]*\n", "", text), encoding="utf-8")
    assert check_extension_cmake(broken) == ["CMakeLists.txt: EXTENSION_ICONURL is not set"]


def test_qt_import_in_library_is_caught(broken):
    p = broken / MODULE / "MotorBandSignLib" / "scoring.py"
    p.write_text(p.read_text(encoding="utf-8") + "\nimport qt\n", encoding="utf-8")
    problems = check_lib_imports(broken)
    assert len(problems) == 1 and problems[0].startswith("MotorBandSignLib/scoring.py:") and "imports qt" in problems[0]


def test_app_only_slicer_use_in_library_is_caught(broken):
    p = broken / MODULE / "MotorBandSignLib" / "mrml.py"
    p.write_text(p.read_text(encoding="utf-8") + "\n\ndef _bad():\n    return slicer.modules.volumes.logic()\n", encoding="utf-8")
    q = broken / MODULE / "MotorBandSignLib" / "slicer_logic.py"
    q.write_text(q.read_text(encoding="utf-8") + "\nfrom slicer.util import loadUI\n", encoding="utf-8")
    problems = check_lib_imports(broken)
    assert any(p.startswith("MotorBandSignLib/mrml.py:") and "uses slicer.modules" in p for p in problems)
    assert any(p.startswith("MotorBandSignLib/slicer_logic.py:") and "imports slicer.util.loadUI" in p for p in problems)
    assert any("slicer_logic.py" in p and "only mrml.py may touch MRML/VTK" in p for p in problems)


def test_vtk_outside_adapter_is_caught(broken):
    p = broken / MODULE / "MotorBandSignLib" / "heatmap.py"
    p.write_text("import vtk\n" + p.read_text(encoding="utf-8"), encoding="utf-8")
    assert check_lib_imports(broken) == [
        "MotorBandSignLib/heatmap.py:1: imports vtk; only mrml.py may touch MRML/VTK"]


def test_computation_in_the_logic_is_caught(broken):
    _edit(broken / MODULE / f"{MODULE}.py", '        """Write the HTML report; returns the path written."""\n',
          '        """Write the HTML report; returns the path written."""\n        import numpy as np\n'
          '        np.save(path, np.zeros(3))\n')
    problems = check_logic_is_thin(broken)
    assert len(problems) == 2
    assert "MotorBandSignLogic imports numpy" in problems[0] and "MotorBandSignLogic uses np" in problems[1]
