"""Where behaviour files come from: one or several folders, each with an `index.json` and per-task files.

`$BAQ_BEHAVIOR_DIR` lists the folders, separated by `os.pathsep` (':' on POSIX). Unset, the suite reads
`shared/behavior` beside the repo checkout and `~/.cache/baq-suite/behavior` (where `baq behavior train` writes),
each if it exists. A task (`<env>` of `local:<env>-<quality>`) comes from the first folder whose index has it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from suite.errors import UserError

INDEX = "index.json"


def default_output_dir() -> Path:
    """The folder `baq behavior train` writes to by default; `local:` reads it when $BAQ_BEHAVIOR_DIR is unset."""
    return Path.home() / ".cache" / "baq-suite" / "behavior"


def beside_repo() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "behavior"


def behavior_dirs() -> list[Path]:
    """The behaviour folders, in the order they are searched; a UserError when there is none."""
    configured = os.environ.get("BAQ_BEHAVIOR_DIR")
    if configured:
        paths = [Path(part).expanduser() for part in configured.split(os.pathsep) if part]
        for path in paths:
            if not (path / INDEX).is_file():
                raise UserError(f"BAQ_BEHAVIOR_DIR entry {path} has no {INDEX}; every entry must be a folder "
                                f"holding {INDEX} (entries separated by {os.pathsep!r})")
        if paths:
            return paths
    found = [path for path in (beside_repo(), default_output_dir()) if (path / INDEX).is_file()]
    if not found:
        raise UserError(f"no behaviour files found at {beside_repo()} or {default_output_dir()}; set "
                        "BAQ_BEHAVIOR_DIR to folders holding index.json, or make them: baq behavior train ENV_ID")
    return found


def read_index(root: Path) -> dict:
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {root / INDEX}: {err}") from None
    if not isinstance(index, dict):
        raise UserError(f"{root / INDEX} must map task names to entries, got {type(index).__name__}")
    return index


def find_task(env: str, extra: list[Path] | tuple[Path, ...] = ()) -> tuple[Path, dict] | None:
    """(folder, index entry) of the first behaviour folder that has `env`, also searching `extra` folders last;
    None when no folder has it (or there are no folders)."""
    try:
        roots = behavior_dirs()
    except UserError:
        roots = []
    for root in [*roots, *[Path(p) for p in extra if (Path(p) / INDEX).is_file()]]:
        index = read_index(root)
        if env in index:
            return root, index[env]
    return None


def task(env: str) -> tuple[Path, dict]:
    """Like `find_task`, but a UserError naming the folders searched and the tasks they have."""
    roots = behavior_dirs()
    found = find_task(env)
    if found is None:
        where = ", ".join(str(root / INDEX) for root in roots)
        raise UserError(f"env {env!r} is not in {where}; it has: {', '.join(known_tasks()) or 'nothing'}")
    return found


def known_tasks() -> list[str]:
    """Every task of every behaviour folder, first appearance first."""
    names: list[str] = []
    for root in behavior_dirs():
        names += [name for name in read_index(root) if name not in names]
    return names
