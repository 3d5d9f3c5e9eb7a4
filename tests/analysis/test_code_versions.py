"""analysis.code_versions: whether runs recorded at different commits ran the same training code, checked
against a real git repository the test builds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from analysis.code_versions import training_code_id, training_code_lines


def _git(repo: Path, *args: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True, env={**os.environ, **identity}).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Four commits: code; a result added (same code); the config docs changed (same code); the code changed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    code = {"algorithms/baq.py": "LR = 3e-4\n", "suite/loop.py": "STEPS = 10\n", "pyproject.toml": "[project]\n"}
    shas = {"code": _commit(repo, code, "code")}
    shas["result"] = _commit(repo, {"results/a/runs/run.json": "{}\n"}, "a result")
    shas["docs"] = _commit(repo, {"experiments/a.toml": "# header\n", "analysis/plot.py": "X = 1\n"}, "docs")
    shas["changed"] = _commit(repo, {"algorithms/baq.py": "LR = 1e-4\n"}, "code changed")
    return repo, shas


def test_commits_that_only_add_results_or_analysis_share_the_training_code(history) -> None:
    repo, shas = history
    ids = {name: training_code_id(sha, repo) for name, sha in shas.items()}
    assert ids["code"] == ids["result"] == ids["docs"] != ids["changed"]
    assert len(ids["code"].split()) == 3  # one content hash per path of TRAINING_CODE
    lines = training_code_lines([shas["code"], shas["result"], shas["docs"], shas["code"]], any_dirty=False,
                                repo=repo)
    assert lines == ["  - Runs come from 3 commits with the same training code: `algorithms`, `suite`, "
                     "`pyproject.toml` are identical at each, so the runs differ only by their config and seed."]


def test_a_code_change_between_commits_is_flagged(history) -> None:
    repo, shas = history
    lines = training_code_lines([shas["code"], shas["result"], shas["changed"]], any_dirty=True, repo=repo)
    assert len(lines) == 1
    assert lines[0].startswith("  - Runs come from 3 commits with 2 different versions of the training code")
    assert "dirty tree" in lines[0]


def test_commits_outside_the_history_or_unknown_are_reported_unchecked(history) -> None:
    repo, shas = history
    missing = "0123456789abcdef0123456789abcdef01234567"
    assert training_code_id(missing, repo) is None
    assert training_code_id("unknown", repo) is None
    assert training_code_id("--all", repo) is None  # not a sha: never handed to git
    lines = training_code_lines([shas["code"], missing, "unknown"], any_dirty=False, repo=repo)
    assert lines[0].startswith("  - Runs come from 3 commits; 2 of them (`0123456789ab`, `unknown`) not in")
    assert "not checked here" in lines[0]


def test_one_commit_needs_no_line_and_a_folder_outside_git_checks_nothing(history, tmp_path: Path) -> None:
    repo, shas = history
    assert training_code_lines([shas["code"]] * 4, any_dirty=False, repo=repo) == []
    outside = tmp_path / "not_a_repo"
    outside.mkdir()
    assert training_code_id(shas["code"], outside) is None
