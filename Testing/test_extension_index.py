"""What the Slicer Extensions Index checks, checked statically on the repository.

A LICENSE.txt at the root; the icon and screenshot URLs in the top CMakeLists.txt resolve to
images in this repository (raw URLs of the repository named by EXTENSION_HOMEPAGE); the README
shows a screenshot and has one sentence per module; sample data is registered through the
SampleData module. Each check is a function that returns its problems, and each is shown to
catch a broken copy.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif"}


def _cmake_set(text: str, name: str) -> str:
    m = re.search(rf'set\(\s*{name}\s+"([^"]*)"', text)
    return m.group(1) if m else ""


def _image_kind(path: Path) -> str | None:
    head = path.read_bytes()[:8]
    return next((kind for magic, kind in IMAGE_MAGIC.items() if head.startswith(magic)), None)


def license_problems(root: Path) -> list:
    p = root / "LICENSE.txt"
    if not p.is_file():
        return ["LICENSE.txt is missing at the repository root"]
    text = p.read_text(encoding="utf-8")
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    if 'license = { text = "BSD-3-Clause" }' in pyproject and "Redistribution and use in source and binary forms" not in text:
        return ["LICENSE.txt is not the BSD 3-Clause licence that pyproject.toml declares"]
    return []


def url_problems(root: Path) -> list:
    """EXTENSION_ICONURL / EXTENSION_SCREENSHOTURLS: raw URLs of this repository's images."""
    cmake = (root / "CMakeLists.txt").read_text(encoding="utf-8")
    home = _cmake_set(cmake, "EXTENSION_HOMEPAGE")
    m = re.match(r"https://github\.com/([^/]+)/([^/#]+)", home)
    if not m:
        return [f"EXTENSION_HOMEPAGE {home!r} is not a GitHub repository address"]
    prefix = re.compile(rf"https://raw\.githubusercontent\.com/{re.escape(m.group(1))}/{re.escape(m.group(2))}/[^/]+/(.+)$")
    problems = []
    icon = _cmake_set(cmake, "EXTENSION_ICONURL")
    shots = _cmake_set(cmake, "EXTENSION_SCREENSHOTURLS").split()
    if not icon:
        problems.append("EXTENSION_ICONURL is empty")
    if not shots:
        problems.append("EXTENSION_SCREENSHOTURLS is empty")
    for url in ([icon] if icon else []) + shots:
        hit = prefix.match(url)
        if not hit:
            problems.append(f"{url}: not a raw URL of {m.group(1)}/{m.group(2)} (the EXTENSION_HOMEPAGE repository)")
            continue
        path = root / hit.group(1)
        if not path.is_file():
            problems.append(f"{url}: {hit.group(1)} is not in the repository")
        elif _image_kind(path) is None:
            problems.append(f"{url}: {hit.group(1)} is not a PNG, JPEG or GIF image")
    return problems


def _modules(root: Path) -> list:
    """Module folders added by the top CMakeLists.txt (each builds one scripted module)."""
    cmake = (root / "CMakeLists.txt").read_text(encoding="utf-8")
    return re.findall(r"^add_subdirectory\((\w+)\)", cmake, flags=re.M)


def _module_title(root: Path, module: str) -> str:
    tree = ast.parse((root / module / f"{module}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
                and node.targets[0].attr == "title" and isinstance(node.value, ast.Call) and node.value.args
                and isinstance(node.value.args[0], ast.Constant)):
            return node.value.args[0].value
    return module


def readme_problems(root: Path) -> list:
    text = (root / "README.md").read_text(encoding="utf-8")
    problems = []
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    local = [i for i in images if not re.match(r"https?://", i)]
    if not images:
        problems.append("README.md shows no screenshot (no ![...](image))")
    for img in local:
        p = root / img
        if not p.is_file() or _image_kind(p) is None:
            problems.append(f"README.md: screenshot {img} is not an image in the repository")
    section = re.search(r"^## Modules\n(.*?)(?=^## )", text, flags=re.S | re.M)
    if not section:
        return problems + ["README.md has no '## Modules' section (one sentence per module)"]
    bullets = dict(re.findall(r"^- \*\*(.+?)\*\*[^:]*:\s*(.+)$", section.group(1), flags=re.M))
    for module in _modules(root):
        title = _module_title(root, module)
        sentence = bullets.get(title)
        if not sentence:
            problems.append(f"README.md '## Modules' has no sentence for the module {title!r}")
        elif len(re.findall(r"[.!?](\s|$)", sentence.strip())) != 1:
            problems.append(f"README.md: the {title!r} entry should be one sentence")
    return problems


def sample_data_problems(root: Path) -> list:
    """Each module registers sample data through SampleData.SampleDataLogic at startupCompleted."""
    problems = []
    for module in _modules(root):
        path = root / module / f"{module}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        registering = [name for name, fn in funcs.items()
                       if any(isinstance(c, ast.Attribute) and c.attr == "registerCustomSampleDataSource"
                              for c in ast.walk(fn))]
        if not registering:
            problems.append(f"{path.name}: no SampleData.SampleDataLogic.registerCustomSampleDataSource call")
            continue
        connected = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                     and c.func.attr == "connect" and len(c.args) == 2 and isinstance(c.args[0], ast.Constant)
                     and c.args[0].value == "startupCompleted()" and isinstance(c.args[1], ast.Name)
                     and c.args[1].id in registering]
        if not connected:
            problems.append(f"{path.name}: {registering[0]} is not connected to slicer.app startupCompleted()")
        if "SampleData" not in (path.read_text(encoding="utf-8")):
            problems.append(f"{path.name}: the module does not depend on SampleData")
    return problems


CHECKS = (license_problems, url_problems, readme_problems, sample_data_problems)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_repository_passes(check):
    assert check(ROOT) == []


@pytest.fixture
def copy(tmp_path):
    """A copy of the files these checks read, to break."""
    for rel in ("LICENSE.txt", "pyproject.toml", "CMakeLists.txt", "README.md", "MotorBandSign/MotorBandSign.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / "Resources", tmp_path / "Resources")
    return tmp_path


def _edit(path: Path, old: str, new: str):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_missing_license_is_caught(copy):
    (copy / "LICENSE.txt").unlink()
    assert license_problems(copy) == ["LICENSE.txt is missing at the repository root"]


def test_screenshot_url_to_a_missing_image_is_caught(copy):
    (copy / "Resources" / "report_axial.png").unlink()
    problems = url_problems(copy)
    assert len(problems) == 1 and "Resources/report_axial.png is not in the repository" in problems[0]


def test_icon_url_that_is_not_an_image_is_caught(copy):
    (copy / "Resources" / "Icons" / "MotorBandSign.png").write_text("not an image")
    assert any("is not a PNG, JPEG or GIF image" in p for p in url_problems(copy))


def test_url_of_another_repository_is_caught(copy):
    _edit(copy / "CMakeLists.txt", "raw.githubusercontent.com/MotorBandSign/SlicerMotorBandSign/main/Resources/Icons",
          "raw.githubusercontent.com/someone/else/main/Resources/Icons")
    assert any("not a raw URL of MotorBandSign/SlicerMotorBandSign" in p for p in url_problems(copy))


def test_readme_without_screenshot_or_module_sentence_is_caught(copy):
    text = (copy / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    (copy / "README.md").write_text(text.replace("- **Motor Band Sign**", "- **Other**"), encoding="utf-8")
    assert readme_problems(copy) == ["README.md shows no screenshot (no ![...](image))",
                                     "README.md '## Modules' has no sentence for the module 'Motor Band Sign'"]


def test_sample_data_not_registered_is_caught(copy):
    _edit(copy / "MotorBandSign" / "MotorBandSign.py", 'slicer.app.connect("startupCompleted()", registerSampleData)', "pass")
    assert sample_data_problems(copy) == ["MotorBandSign.py: registerSampleData is not connected to slicer.app startupCompleted()"]
