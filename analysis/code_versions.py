"""Whether runs recorded at different commits ran the same training code.

A run records the commit of the checkout it ran from (`git.sha`). Runs of one study are started across
many commits when their results are committed as they finish, so "more than one commit" alone says
little. What decides a run's numbers is the code that trains (the `algorithms` and `suite` packages and
the pinned dependencies in `pyproject.toml`); git names each of those by a hash of its content at every
commit, so equal hashes at two commits mean identical training code. The check needs the commits in the
history of the checkout the analysis runs from; a commit that is not there is reported as unchecked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# The paths whose content decides what a run computes (analysis code and results do not).
TRAINING_CODE = ("algorithms", "suite", "pyproject.toml")
_CHECKOUT = Path(__file__).resolve().parent.parent


def training_code_id(sha: str, repo: Path | None = None) -> str | None:
    """The content hashes of TRAINING_CODE at commit `sha`, joined; None when `repo` (default: the checkout
    this package lives in) has no such commit or is not a git checkout."""
    if not re.fullmatch(r"[0-9a-f]{7,40}", sha or ""):
        return None
    revisions = [f"{sha}:{path}" for path in TRAINING_CODE]
    try:
        found = subprocess.run(["git", "rev-parse", *revisions],
                               cwd=str(repo or _CHECKOUT), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    hashes = found.stdout.split()
    if found.returncode != 0 or len(hashes) != len(TRAINING_CODE):
        return None
    return " ".join(hashes)


def training_code_lines(shas: list[str], *, any_dirty: bool, repo: Path | None = None) -> list[str]:
    """README lines (Markdown list items) saying whether the runs' commits share their training code; empty
    when the runs come from one commit."""
    distinct = sorted(set(shas))
    if len(distinct) < 2:
        return []
    ids = {sha: training_code_id(sha, repo) for sha in distinct}
    unchecked = [sha for sha, code in ids.items() if code is None]
    versions = {code for code in ids.values() if code is not None}
    paths = ", ".join(f"`{path}`" for path in TRAINING_CODE)
    dirty = (" Some runs had uncommitted changes (dirty tree), which no commit shows: compare those with care."
             if any_dirty else "")
    if unchecked:
        named = ", ".join(f"`{sha[:12] or '(unknown)'}`" for sha in unchecked)
        return [f"  - Runs come from {len(distinct)} commits; {len(unchecked)} of them ({named}) not in the "
                f"history of this checkout, so whether all ran the same training code ({paths}) is not "
                f"checked here: compare them with care.{dirty}"]
    if len(versions) == 1:
        return [f"  - Runs come from {len(distinct)} commits with the same training code: {paths} are identical "
                f"at each, so the runs differ only by their config and seed.{dirty}"]
    return [f"  - Runs come from {len(distinct)} commits with {len(versions)} different versions of the training "
            f"code ({paths}): compare them with care.{dirty}"]
