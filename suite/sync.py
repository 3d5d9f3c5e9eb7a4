"""Delivering the spools runs left behind (suite.spool) when the tracking store was away as they ended or died:
`baq train` and `baq run` do it for their run directories before they train, `baq sync` on request."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.delivery import deliver_all, describe
from suite.errors import UserError
from suite.spool import SPOOL_DIR, Spool, SpoolBusy, spool_files


@dataclass
class SyncResult:
    path: Path  # the spool file
    run_id: str
    tracking_uri: str
    delivered: int
    left: int
    error: str | None = None

    def line(self) -> str:
        run_dir = self.path.parent.parent
        if self.error is None:
            return f"{run_dir}: run {self.run_id}: delivered {self.delivered} records to {self.tracking_uri}"
        return (f"{run_dir}: run {self.run_id}: {self.left} records not delivered to {self.tracking_uri}"
                f"{f' ({self.delivered} delivered)' if self.delivered else ''}: {self.error}")


class _Stores:
    """One client per tracking URI; a store that failed once is not tried again in the same pass (a dead
    server would otherwise cost its connect timeout once per run)."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def client(self, uri: str) -> Any:
        if uri in self.errors:
            raise RuntimeError(self.errors[uri])
        if uri not in self.clients:
            from suite.tracking import open_client

            try:
                self.clients[uri] = open_client(uri)[0]
            except UserError as err:
                self.errors[uri] = str(err)
                raise
        return self.clients[uri]


def sync_spool(path: Path, stores: _Stores | None = None) -> SyncResult:
    """Deliver one spool file; it is removed once the store has every record."""
    stores = stores or _Stores()
    run_id = path.stem
    try:
        spool = Spool.open(path)
    except SpoolBusy as busy:
        return SyncResult(path, run_id, "?", 0, -1, f"skipped: {busy} (its training is still running)")
    except (OSError, ValueError) as err:
        return SyncResult(path, run_id, "?", 0, -1, f"unreadable spool: {err}")
    uri, before = spool.header["tracking_uri"], spool.backlog
    try:
        deliver_all(stores.client(uri), spool)
    except Exception as exc:
        spool.close()
        error = str(exc) if isinstance(exc, UserError | RuntimeError) else describe(exc)
        return SyncResult(path, run_id, uri, before - spool.backlog, spool.backlog, error)
    spool.remove()
    return SyncResult(path, run_id, uri, before, 0)


def sync_run_dirs(run_dirs: Iterable[Path]) -> list[SyncResult]:
    """Deliver the spools of these run directories (their own, not those of directories below them)."""
    stores = _Stores()
    paths = [p for d in run_dirs for p in sorted((Path(d) / SPOOL_DIR).glob("*.jsonl"))]
    return [sync_spool(p, stores) for p in paths]


def deliver_before_training(run_dir: Path, tracking_uri: str) -> None:
    """What earlier starts of `run_dir` left spooled must reach the store before the run goes on (its end,
    delivered late, would otherwise overwrite the new status). UserError when the store does not take it."""
    for result in sync_run_dirs([run_dir]):
        if result.error is None:
            continue
        if result.tracking_uri != tracking_uri:  # an earlier run in another store: it does not block this one
            print(f"baq: warning: {result.line()}", file=sys.stderr, flush=True)
            continue
        raise UserError(f"{result.left} tracking records that an earlier start of {run_dir} kept in "
                        f"{result.path} could not be delivered ({result.error}); they must reach "
                        f"{tracking_uri} before the run continues: retry, or run `baq sync {run_dir}`")


def sync_command(target: Path, run_dirs: list[Path] | None = None) -> int:
    """`baq sync`: deliver every spool in `run_dirs` (a matrix's cell directories) or else below the
    directory `target`. 0 when everything found was delivered, 1 otherwise."""
    if run_dirs is None and not target.is_dir():
        raise UserError(f"nothing to sync at {target}: expected a run directory, a directory of runs (default: "
                        "$BAQ_RESULTS_DIR or ./results) or a matrix file (.toml)")
    files = ([f for d in run_dirs for f in sorted((Path(d) / SPOOL_DIR).glob("*.jsonl"))]
             if run_dirs is not None else spool_files(target))
    if not files:
        print(f"no spooled tracking records for {target}: everything was delivered")
        return 0
    stores = _Stores()
    results = [sync_spool(f, stores) for f in files]
    for result in results:
        print(result.line(), flush=True)
    failed = [r for r in results if r.error is not None]
    print(f"{len(results) - len(failed)} of {len(results)} runs delivered"
          + (f"; {len(failed)} still spooled (rerun `baq sync` once the store answers)" if failed else ""))
    return 1 if failed else 0
