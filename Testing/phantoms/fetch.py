"""Fetch and unpack a package from PyPI into the project's cache, for its bundled data files.

Some test anatomies come from data files that open-licence packages ship inside their
distributions (e.g. an individual brain's labels in ``clabtoolkit``). This module brings such a
distribution here with pip itself (``pip download --no-deps``; pip's configured index is the only
host contacted), unpacks it once and returns the unpacked folder. Nothing is imported from the
package: only its files are read.

Layout (cache = ``$MOTORBANDSIGN_CACHE`` or ``~/.cache/motorbandsign``)::

    <cache>/individual/downloads/<the wheel or sdist as pip saved it>
    <cache>/individual/NAME-VERSION/          (the wheel unpacked)
    <cache>/individual/NAME-VERSION-sdist/    (the sdist unpacked, its single top folder stripped)
    <cache>/individual/NAME-VERSION/.unpacked (marker, written last)

Use::

    from phantoms.fetch import package_dir
    root = package_dir("clabtoolkit", "0.6.0")
    root / "clabtoolkit" / "data" / ...
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

__all__ = ["cache_root", "package_dir"]

MARKER = ".unpacked"


def cache_root() -> Path:
    """``$MOTORBANDSIGN_CACHE`` or ``~/.cache/motorbandsign``, subfolder ``individual/`` (created)."""
    base = Path(os.environ.get("MOTORBANDSIGN_CACHE", Path.home() / ".cache" / "motorbandsign"))
    d = base / "individual"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _norm(name: str) -> str:
    """PEP 503 normalised name with '_' (as in wheel and modern sdist file names), lower case."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_archive(downloads: Path, name: str, version: str, sdist: bool) -> Path | None:
    if not downloads.is_dir():
        return None
    want = f"{_norm(name)}-{version}".lower()
    for p in sorted(downloads.iterdir()):
        fn = p.name
        if sdist:
            if not (fn.endswith(".tar.gz") or fn.endswith(".zip")):
                continue
            stem = fn[: -len(".tar.gz")] if fn.endswith(".tar.gz") else fn[: -len(".zip")]
        else:
            if not fn.endswith(".whl"):
                continue
            stem = "-".join(fn[: -len(".whl")].split("-")[:2])
        parts = stem.rsplit("-", 1)
        if len(parts) == 2 and f"{_norm(parts[0])}-{parts[1]}".lower() == want:
            return p
    return None


def _pip_command(name: str, version: str, downloads: Path, sdist: bool) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    if sdist:
        cmd += ["--no-binary", name]
    else:
        cmd += ["--only-binary", ":all:"]
    cmd += [f"{name}=={version}", "-d", str(downloads)]
    return cmd


def _safe_target(root: Path, member: str) -> Path:
    target = (root / member).resolve()
    if not str(target).startswith(str(root.resolve()) + os.sep) and target != root.resolve():
        raise RuntimeError(f"refusing to unpack {member!r} outside {root}")
    return target


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a wheel/zip or a tar.gz into dest; an sdist's single top-level folder is stripped."""
    fn = archive.name
    if fn.endswith(".whl") or fn.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for m in zf.namelist():
                _safe_target(dest, m)
            zf.extractall(dest)
    elif fn.endswith(".tar.gz") or fn.endswith(".tgz"):
        with tarfile.open(archive, "r:gz") as tf:
            for m in tf.getmembers():
                _safe_target(dest, m.name)
            try:
                tf.extractall(dest, filter="data")
            except TypeError:  # Python without extraction filters
                tf.extractall(dest)
    else:
        raise RuntimeError(f"unknown archive type: {archive}")
    if not fn.endswith(".whl"):
        entries = [p for p in dest.iterdir()]
        if len(entries) == 1 and entries[0].is_dir():
            top = entries[0]
            for p in list(top.iterdir()):
                os.replace(p, dest / p.name)
            top.rmdir()


def package_dir(name: str, version: str, *, sdist: bool = False) -> Path:
    """Return ``<cache>/individual/NAME-VERSION/``, the unpacked wheel of NAME==VERSION.

    With ``sdist=True`` the source distribution is used instead and unpacked into
    ``NAME-VERSION-sdist/`` (so that wheel and sdist never share a folder).

    Downloads with ``python -m pip download --no-deps [--no-binary NAME] NAME==VERSION -d
    <cache>/individual/downloads`` if the archive is not there yet, then unpacks it atomically
    (temporary folder, then ``os.replace``) and writes a marker file last. Idempotent: a folder
    with its marker is returned at once. Raises RuntimeError naming the package and the pip
    command to run by hand if the download fails.
    """
    root = cache_root()
    final = root / (f"{name}-{version}" + ("-sdist" if sdist else ""))
    if (final / MARKER).is_file():
        return final

    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = _find_archive(downloads, name, version, sdist)
    if archive is None:
        cmd = _pip_command(name, version, downloads, sdist)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            ok = proc.returncode == 0
            detail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        except (OSError, subprocess.SubprocessError) as exc:
            ok, detail = False, repr(exc)
        archive = _find_archive(downloads, name, version, sdist) if ok else None
        if archive is None:
            raise RuntimeError(
                f"could not download {name}=={version} ({'sdist' if sdist else 'wheel'}) from the "
                f"package index. Run by hand:\n  {' '.join(cmd)}\n"
                + (f"pip said:\n{detail}" if detail else "")
            )

    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-{version}.", dir=root))
    try:
        _extract(archive, tmp)
        os.chmod(tmp, 0o755)
        (tmp / MARKER).write_text(f"{archive.name}\n")
        if final.exists():  # a folder without its marker: an interrupted older attempt
            if (final / MARKER).is_file():
                return final
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if (final / MARKER).is_file():  # another process won the race
                return final
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
