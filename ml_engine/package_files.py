"""The engine's own files on disk, also when it is imported from a zip.

``spark-submit --py-files ml_engine.zip`` imports the package from inside the archive, where
``__file__`` names no real directory: packaged configs and schemas cannot be opened as files,
and MLflow cannot copy the code next to a model. :func:`package_dir` gives a real directory in
both cases, extracting the package once per archive (its path, size and modification time) to
the temporary directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _archive_of(path: Path) -> tuple[Path, str]:
    """The zip file that ``path`` lies inside of and ``path`` relative to it."""
    for parent in path.parents:
        if parent.is_file() and zipfile.is_zipfile(parent):
            return parent, path.relative_to(parent).as_posix()
    raise FileNotFoundError(f"{path} is neither a directory nor inside a zip file")


@cache
def package_dir() -> Path:
    """The directory of the ``ml_engine`` package, extracted from its zip when need be."""
    if _HERE.is_dir():
        return _HERE
    archive, inner = _archive_of(_HERE)
    stat = archive.stat()
    key = hashlib.sha256(f"{archive}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    target = Path(tempfile.gettempdir()) / f"ml-engine-package-{key[:16]}"
    if not (target / inner).is_dir():
        # Extracted beside, then renamed into place: concurrent jobs never see half a tree.
        staging = Path(tempfile.mkdtemp(prefix="ml-engine-package-", dir=target.parent))
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging, [n for n in zf.namelist() if n.startswith(inner + "/")])
        try:
            os.rename(staging, target)
        except OSError:  # another process was first; its copy is the same archive's
            shutil.rmtree(staging, ignore_errors=True)
    return target / inner
