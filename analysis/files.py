"""Atomic file writers: every output lands under its final name only once it is complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file in `path`'s folder, then rename it over `path`.

    The temp file lives in the same folder so that os.replace is a same-filesystem rename, which is atomic:
    a reader (or a crashed report) never sees a half-written table or figure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates the file owner-only; results are meant to be shared like any other file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write `frame` as CSV (no index) to `path` atomically."""
    return _write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_figure(fig, path_without_suffix: Path, dpi: int) -> list[Path]:
    """Save a matplotlib figure as PDF and PNG next to each other, atomically; returns both paths."""
    paths = []
    for fmt in ("pdf", "png"):
        target = Path(path_without_suffix).with_suffix(f".{fmt}")
        # No creation date in the PDF: the same input and seed give byte-identical files.
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}

        def _save(tmp: Path, fmt: str = fmt, metadata: dict = metadata) -> None:
            # "tight" on top of constrained layout: a long legend wider than the panels is never clipped.
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight", pad_inches=0.03)

        paths.append(_write_atomic(target, _save))
    return paths
