"""Run bundles: the durable, plain-text form of a run (docs/results.md).

A bundle folder (`results/<matrix>/runs/`) holds, per run, `<stem>.run.json` (what the run is: experiment,
cell hash, MLflow run id and name, status, start and end time, params, tags) and `<stem>.metrics.csv` (every
metric's history, one row per logged step, one column per metric), plus `matrix.json` (the cells the matrix
expects) when it was exported from a matrix file. JSON and CSV rather than one binary or one JSON: the JSON
is small and diffs line by line; the CSV opens in pandas or a spreadsheet as it is. Floats are written with
Python's shortest round-trip `repr`, keys sorted, rows by step: the same store exported twice gives the same
bytes, and a bundle read back gives exactly the values the store holds.

A `RunRecord` is one run in memory, whether read from an MLflow store (`store_records`) or from a bundle
(`read_bundle`); the report reads records, so a bundle and the store it came from give the same report.
No torch here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.errors import UserError
from suite.files import atomic_write_text
from suite.tracking import search_all

FORMAT = "baq-suite run bundle"
SCHEMA = 1
RUN_SUFFIX = ".run.json"
METRICS_SUFFIX = ".metrics.csv"
MATRIX_FILE = "matrix.json"
_REQUIRED = {"format": str, "schema": int, "experiment": str, "cell": str, "run_id": str, "run_name": str,
             "status": str, "finished": bool, "start_time": int, "params": dict, "tags": dict,
             "metrics_file": str, "metrics_sha256": str}


@dataclass(frozen=True)
class RunRecord:
    """One run as the suite records it. `metrics` maps a key to its (step, value) history, one value per
    step (a step logged twice, as a resumed run may, keeps the later value), steps ascending."""

    experiment: str
    run_id: str
    run_name: str
    status: str  # MLflow's run status: FINISHED, FAILED, KILLED, RUNNING or SCHEDULED
    start_time: int
    end_time: int | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, tuple[tuple[int, float], ...]]

    @property
    def cell(self) -> str:
        """The run's identity in a matrix: its cell hash (a run outside any matrix: its run id)."""
        return self.tags.get("baq.cell") or f"run-{self.run_id}"

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @property
    def superseded(self) -> bool:
        return self.tags.get("baq.superseded") == "true"

    def stem(self) -> str:
        """File name stem: readable (algorithm, task, seed) and unique (the cell)."""
        algo = self.tags.get("baq.algo", "run")
        task = self.tags.get("baq.dataset", "").split(":", 1)[-1].replace("/", "-")
        seed = self.tags.get("baq.seed", "")
        readable = "-".join(p for p in (algo, task, f"s{seed}" if seed else "") if p)
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in readable)
        return f"{safe}-{self.cell}"

    def metrics_csv(self) -> str:
        return _metrics_csv(self)

    def manifest(self, metrics_text: str | None = None) -> str:
        """The `.run.json` text (sorted keys, one entry a line)."""
        text = self.metrics_csv() if metrics_text is None else metrics_text
        doc = {"format": FORMAT, "schema": SCHEMA, "experiment": self.experiment, "cell": self.cell,
               "run_id": self.run_id, "run_name": self.run_name, "status": self.status,
               "finished": self.finished, "error": self.tags.get("baq.error", ""),
               "start_time": self.start_time, "end_time": self.end_time, "params": self.params,
               "tags": self.tags, "metrics_file": self.stem() + METRICS_SUFFIX,
               "metrics_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    def content(self) -> tuple[str, str]:
        """Both files' text: what "the same content" means (NaN-safe, unlike comparing the dataclasses)."""
        text = self.metrics_csv()
        return self.manifest(text), text


def _number(value: float) -> str:
    return repr(float(value))


def _phase(step: int, offline_steps: int | None) -> str:
    if offline_steps is None:
        return ""
    return "offline" if step <= offline_steps else "online"


def _metrics_csv(record: RunRecord) -> str:
    keys = sorted(record.metrics)
    by_step: dict[int, dict[str, float]] = {}
    for key in keys:
        for step, value in record.metrics[key]:
            by_step.setdefault(step, {})[key] = value
    offline = _int_or_none(record.tags.get("baq.offline_steps"))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "phase", *keys])
    for step in sorted(by_step):
        row = by_step[step]
        writer.writerow([step, _phase(step, offline),
                         *(_number(row[k]) if k in row else "" for k in keys)])
    return out.getvalue()


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# --- reading an MLflow store --------------------------------------------------------------------------------
def history(client: Any, run_id: str, key: str) -> tuple[tuple[int, float], ...]:
    """One value per step, steps ascending; a step logged twice keeps the later value (by timestamp)."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return tuple({int(m.step): float(m.value) for m in points}.items())


def record_of(client: Any, run: Any, experiment: str) -> RunRecord:
    """A store's run as a record: MLflow's own `mlflow.*` tags are left out (the run name is kept apart)."""
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    metrics = {key: history(client, run.info.run_id, key) for key in sorted(run.data.metrics)}
    return RunRecord(experiment=experiment, run_id=run.info.run_id, run_name=run.info.run_name or "",
                     status=run.info.status, start_time=int(run.info.start_time or 0),
                     end_time=int(run.info.end_time) if run.info.end_time else None,
                     params=dict(sorted(run.data.params.items())), tags=dict(sorted(tags.items())),
                     metrics=metrics)


def store_records(client: Any, experiment: str) -> list[RunRecord] | None:
    """Every active run of `experiment` in the store, oldest first; None when the store has no such
    experiment."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = search_all(client, found.experiment_id)
    return sort_records([record_of(client, run, experiment) for run in runs])


def required_records(client: Any, experiment: str) -> list[RunRecord]:
    """`store_records`, with a missing experiment a one-line error that lists the store's experiments."""
    records = store_records(client, experiment)
    if records is None:
        names = sorted(e.name for e in client.search_experiments())
        raise UserError(f"no MLflow experiment named {experiment!r} at {client.tracking_uri}; "
                        f"experiments there: {', '.join(names) or '(none)'}")
    return records


def sort_records(records: list[RunRecord]) -> list[RunRecord]:
    return sorted(records, key=lambda r: (r.start_time, r.run_id))


def select_for_export(records: list[RunRecord], include_unfinished: bool) -> tuple[list[RunRecord], int]:
    """One run per cell: its newest finished run, else (with `include_unfinished`) its newest run. Superseded
    runs (duplicates the runner took out of the matrix) are never exported. Returns (chosen, cells left out)."""
    by_cell: dict[str, list[RunRecord]] = {}
    for record in records:
        if not record.superseded:
            by_cell.setdefault(record.cell, []).append(record)
    chosen, left_out = [], 0
    for runs in by_cell.values():
        finished = [r for r in runs if r.finished]
        pool = finished or (runs if include_unfinished else [])
        if pool:
            chosen.append(max(pool, key=lambda r: (r.start_time, r.run_id)))
        else:
            left_out += 1
    return sort_records(chosen), left_out


# --- bundle folders -----------------------------------------------------------------------------------------
def safe_name(experiment: str) -> str:
    """Folder name for an experiment: letters, digits, `.`, `_` and `-`; anything else becomes `_`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._")
    return name or "experiment"


def bundle_folder(results_dir: Path, experiment: str) -> Path:
    """Where `baq export` writes an experiment's runs: `<results>/<name>/runs/`."""
    return Path(results_dir) / safe_name(experiment) / "runs"


def finished_in_bundle(folder: Path) -> dict[str, float | None]:
    """Cell → final normalized score of every finished run in a bundle folder (none when it is absent): the
    runner counts these cells as done, so a committed result is not trained again on another machine."""
    if not Path(folder).is_dir():
        return {}
    out = {}
    for record, _ in _read_folder(Path(folder)):
        if record.finished:
            scores = record.metrics.get("eval/normalized_score", ())
            out[record.cell] = scores[-1][1] if scores else None
    return out


@dataclass
class Bundle:
    """What one or more bundle folders hold: records with the file each came from, and the matrix's
    expected cells when the export was made from a matrix file."""

    records: list[tuple[RunRecord, Path]]
    matrix: dict | None
    experiment: str | None


def write_bundle(records: list[RunRecord], folder: Path, matrix: dict | None = None) -> dict[str, int]:
    """Write `records` into `folder`; a run already there is rewritten only when its content changed.

    A file of the same cell from another run (another machine's) is a conflict: one-line error, and nothing
    is written. Returns counts of new, updated and unchanged runs."""
    folder = Path(folder)
    existing = {record.cell: (record, path) for record, path in _read_folder(folder)} if folder.is_dir() else {}
    for record in records:
        if record.cell in existing and existing[record.cell][0].run_id != record.run_id:
            other = existing[record.cell]
            raise UserError(f"cell {record.cell} is already in {other[1]} from MLflow run {other[0].run_id}, "
                            f"not run {record.run_id}; accepted: one run per cell (delete that file to "
                            "replace it)")
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    for record in records:
        manifest, metrics = record.content()
        json_path = folder / (record.stem() + RUN_SUFFIX)
        old = existing.get(record.cell)
        if old is not None and old[0].content() == (manifest, metrics) and old[1] == json_path:
            counts["unchanged"] += 1
            continue
        counts["updated" if old else "new"] += 1
        # The metrics first, the manifest last: a reader keys on manifests, so a killed export leaves at most
        # an orphan CSV, never a manifest whose metrics are missing.
        atomic_write_text(folder / (record.stem() + METRICS_SUFFIX), metrics)
        atomic_write_text(json_path, manifest)
        if old is not None and old[1] != json_path:
            old[1].unlink(missing_ok=True)
            old[1].with_name(old[1].name.removesuffix(RUN_SUFFIX) + METRICS_SUFFIX).unlink(missing_ok=True)
    if matrix is not None:
        atomic_write_text(folder / MATRIX_FILE, json.dumps(matrix, indent=1, sort_keys=True) + "\n")
    return counts


def read_bundle(folders: list[Path]) -> Bundle:
    """The runs of one or more bundle folders (e.g. exported on different machines). The same cell in two
    files counts once when the content is the same and is a one-line error when it differs; folders of
    different experiments, or with different expected cells, are an error too."""
    records: dict[str, tuple[RunRecord, Path]] = {}
    matrices: list[tuple[dict, Path]] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"bundle folder {folder} does not exist; accepted: a folder of *{RUN_SUFFIX} files "
                            "written by `baq export`")
        found = _read_folder(folder)
        if not found:
            raise UserError(f"bundle folder {folder} has no *{RUN_SUFFIX} files; accepted: a folder written by "
                            "`baq export`")
        for record, path in found:
            add_record(records, record, path)
        if (folder / MATRIX_FILE).exists():
            matrices.append((_read_json(folder / MATRIX_FILE), folder / MATRIX_FILE))
    experiments = sorted({r.experiment for r, _ in records.values()})
    if len(experiments) > 1:
        raise UserError(f"bundle folders {', '.join(map(str, folders))} hold runs of several experiments "
                        f"({', '.join(experiments)}); accepted: the runs of one matrix")
    for matrix, path in matrices[1:]:
        if matrix != matrices[0][0]:
            raise UserError(f"{path} and {matrices[0][1]} expect different cells; accepted: bundles of one "
                            "matrix file")
    ordered = sorted(records.values(), key=lambda item: (item[0].start_time, item[0].run_id))
    return Bundle(ordered, matrices[0][0] if matrices else None, experiments[0] if experiments else None)


def add_record(records: dict[str, tuple[RunRecord, Path | str]], record: RunRecord, where: Path | str) -> None:
    """Add `record` (from `where`) under its cell; the same cell again must have the same content."""
    if record.cell in records:
        first, first_where = records[record.cell]
        if first.content() != record.content():
            raise UserError(f"cell {record.cell} is in both {first_where} and {where} with different content; "
                            "accepted: one run per cell (keep one of the two files)")
        return
    records[record.cell] = (record, where)


def _read_folder(folder: Path) -> list[tuple[RunRecord, Path]]:
    return [(read_run(path), path) for path in sorted(folder.glob("*" + RUN_SUFFIX))]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"bundle file {path} is not readable JSON ({err}); accepted: a file written by "
                        "`baq export`, complete") from None


def read_run(path: Path) -> RunRecord:
    """One `<stem>.run.json` with its metrics CSV, checked against the format, schema and checksum."""
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"bundle file {path} is not a run bundle (no \"format\": \"{FORMAT}\")")
    if doc.get("schema") != SCHEMA:
        raise UserError(f"bundle file {path} has schema version {doc.get('schema')!r}; accepted: {SCHEMA}")
    for key, kind in _REQUIRED.items():
        if not isinstance(doc.get(key), kind) or (kind is int and isinstance(doc.get(key), bool)):
            raise UserError(f"bundle file {path}: field {key!r} is missing or not a {kind.__name__}")
    metrics_path = path.with_name(doc["metrics_file"])
    try:
        text = metrics_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"bundle file {path}: its metrics file {metrics_path} is not readable ({err})") from None
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != doc["metrics_sha256"]:
        raise UserError(f"bundle file {metrics_path} does not match the sha256 in {path.name}: truncated or "
                        "edited; accepted: the file as `baq export` wrote it")
    end = doc.get("end_time")
    record = RunRecord(experiment=doc["experiment"], run_id=doc["run_id"], run_name=doc["run_name"],
                       status=doc["status"], start_time=doc["start_time"],
                       end_time=end if isinstance(end, int) else None,
                       params={str(k): str(v) for k, v in doc["params"].items()},
                       tags={str(k): str(v) for k, v in doc["tags"].items()},
                       metrics=_parse_metrics(text, metrics_path))
    if record.cell != doc["cell"]:
        raise UserError(f"bundle file {path}: cell {doc['cell']!r} does not match its baq.cell tag")
    return record


def _parse_metrics(text: str, path: Path) -> dict[str, tuple[tuple[int, float], ...]]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][:2] != ["step", "phase"]:
        raise UserError(f"bundle file {path} does not start with the header step,phase,...")
    keys = rows[0][2:]
    series: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise UserError(f"bundle file {path}:{line} has {len(row)} fields, the header {len(rows[0])}")
        try:
            step = int(row[0])
            for key, cell in zip(keys, row[2:], strict=True):
                if cell != "":
                    series[key].append((step, float(cell)))
        except ValueError:
            raise UserError(f"bundle file {path}:{line} holds a value that is not a number") from None
    return {k: tuple(v) for k, v in series.items()}
