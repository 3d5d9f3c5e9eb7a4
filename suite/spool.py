"""The tracking spool: what a run sends to MLflow, kept on disk in the run's directory until the store has it.

A run's MLflowSink appends every record (metrics of a step, params, tags, an artifact, the run's end) to its
spool first; a background thread (suite.delivery) sends the records to the store in order and counts the
ones the store acknowledged. A record is appended with one write() and flushed at once, so a crash or
`kill -9` loses nothing already logged, and whatever the store had not acknowledged is sent by the next
`baq train` / `baq run` on the run directory, or by `baq sync`.

Layout: `<run_dir>/spool/<run_id>.jsonl`: a header line `{"run_id", "tracking_uri", "experiment"}`, then one
JSON record per line; `<run_id>.sent`: how many records the store has acknowledged (replaced atomically after
each delivery). A last line cut short (power lost mid-write) is not a record and is ignored. While a process
delivers a spool it holds an exclusive flock on the .jsonl file, so no two processes send the same records.
Both files go once every record has been delivered and the run has ended.

Records (`"k"` is the kind): `metrics` {"step", "time" (ms), "values": {key: value}}, `params` {"values"},
`tags` {"values"}, `artifact` {"path", "dir"}, `end` {"status", "time"}.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

SPOOL_DIR = "spool"
Record = dict[str, Any]


class SpoolBusy(RuntimeError):
    """Another process (the run's own training, or a `baq sync`) is delivering this spool."""


class Spool:
    """The undelivered records of one run, in memory and (with a path) on disk. Thread-safe: the training
    thread appends while the delivery thread takes and acknowledges."""

    def __init__(self, header: Record, path: Path | None = None, records: list[Record] | None = None,
                 sent: int = 0) -> None:
        self.header, self.path = header, path
        self._pending: deque[Record] = deque(records or [])
        self._sent = sent  # records acknowledged by the store, counted from the first
        self._lock = threading.Lock()
        self._fd: int | None = None

    # --- opening -----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path | None, run_id: str, tracking_uri: str, experiment: str) -> Spool:
        """The spool of `run_id` in `run_dir`, locked (in memory only when `run_dir` is None). Records an earlier
        process left undelivered for the same run are normally delivered before the run continues
        (suite.sync); any still there stay first in line."""
        header = {"run_id": run_id, "tracking_uri": tracking_uri, "experiment": experiment}
        if run_dir is None:
            return cls(header)
        path = Path(run_dir) / SPOOL_DIR / f"{run_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls._locked(path, header)

    @classmethod
    def open(cls, path: Path) -> Spool:
        """An existing spool file with its undelivered records, locked for delivery (SpoolBusy if another
        process holds it)."""
        return cls._locked(path, None)

    @classmethod
    def _locked(cls, path: Path, header: Record | None) -> Spool:
        fd = _locked_fd(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            data = path.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                os.truncate(path, complete)  # a line cut short is no record; later lines must start clean
            if complete:
                header, records, sent = read(path)
            elif header is None:
                raise ValueError(f"{path} has no header line")
            else:
                records, sent = [], 0
                _sent_path(path).unlink(missing_ok=True)
                os.write(fd, (json.dumps(header) + "\n").encode())
        except BaseException:
            os.close(fd)
            raise
        spool = cls(header, path, records[sent:], sent)
        spool._fd = fd
        return spool

    # --- the training side -------------------------------------------------------------------------------
    def append(self, record: Record) -> None:
        with self._lock:
            self._write_line(record)
            self._pending.append(record)

    def sync_to_disk(self) -> None:
        """fsync: the records survive a power loss too (a crash of the process is covered by each write)."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    # --- the delivery side -------------------------------------------------------------------------------
    def peek(self, limit: int) -> list[Record]:
        """The first `limit` undelivered records (copies of the references; the records are not changed)."""
        with self._lock:
            return [self._pending[i] for i in range(min(limit, len(self._pending)))]

    def acknowledge(self, n: int) -> None:
        """The store has the first `n` undelivered records."""
        with self._lock:
            for _ in range(n):
                self._pending.popleft()
            self._sent += n
            if self.path is not None and n:
                _replace_text(_sent_path(self.path), f"{self._sent}\n")

    @property
    def backlog(self) -> int:
        with self._lock:
            return len(self._pending)

    def remove(self) -> None:
        """Delete the files (everything is delivered) and release the lock."""
        with self._lock:
            if self.path is not None:
                _sent_path(self.path).unlink(missing_ok=True)
                self.path.unlink(missing_ok=True)
                if self.path.parent.is_dir() and not any(self.path.parent.iterdir()):
                    self.path.parent.rmdir()
            self._close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def _write_line(self, record: Record) -> None:
        if self._fd is not None:
            data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")


def _replace_text(path: Path, text: str) -> None:
    """Write beside, then rename: a reader sees the old count or the new one. No fsync: a count lost with
    the power only makes records be sent again, which delivery makes harmless (suite.delivery)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _sent_path(path: Path) -> Path:
    return path.with_suffix(".sent")


def _locked_fd(path: Path, flags: int) -> int:
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolBusy(f"{path} is being delivered by another process") from None
    return fd


def read(path: Path) -> tuple[Record, list[Record], int]:
    """(header, every complete record, how many the store acknowledged) of a spool file, without locking."""
    lines = path.read_bytes().split(b"\n")
    complete = lines[:-1]  # the piece after the last newline is empty or a write cut short
    if not complete:
        raise ValueError(f"{path} has no header line")
    header = json.loads(complete[0])
    records = [json.loads(line) for line in complete[1:] if line.strip()]
    try:
        sent = int(_sent_path(path).read_text().strip() or 0)
    except FileNotFoundError:
        sent = 0
    return header, records, min(sent, len(records))


def spool_files(root: Path) -> list[Path]:
    """Every spool file in `root` (a run directory) or in the run directories below it."""
    root = Path(root)
    return sorted({*root.glob(f"{SPOOL_DIR}/*.jsonl"), *root.rglob(f"{SPOOL_DIR}/*.jsonl")})


def pending(run_dir: Path) -> tuple[int, str | None]:
    """(records not yet in the store, status of a run end among them or None) over the spools of a run
    directory: ("FINISHED" means the run finished here and the store does not know it yet)."""
    count, end = 0, None
    for path in sorted((Path(run_dir) / SPOOL_DIR).glob("*.jsonl")):
        try:
            _, records, sent = read(path)
        except (OSError, ValueError):
            continue
        count += len(records) - sent
        ends = [r["status"] for r in records[sent:] if r.get("k") == "end"]
        end = ends[-1] if ends else end
    return count, end
