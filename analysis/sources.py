"""Where a report's runs come from: an MLflow store, bundle folders (docs/results.md), or both.

Runs are merged by cell: a cell that a bundle and the store both hold must be the same run with the same
content (it was exported from that store); anything else is a one-line error, never a silent choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from suite.bundle import RunRecord, add_record, read_bundle, required_records, sort_records, store_records
from suite.errors import UserError


@dataclass
class Sources:
    """The merged runs of one experiment and a phrase naming where they came from (for the README)."""

    experiment: str
    records: list[RunRecord]
    described: str
    matrix: dict | None  # the expected cells a bundle recorded, when it was exported from a matrix file


def _store_exists(uri: str) -> bool:
    """A sqlite store that is not there is not created just to be read (a fresh clone has none)."""
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def _from_store(experiment: str, uri: str | None, required: bool) -> list[RunRecord] | None:
    """The store's runs of `experiment`; None when there is no such store or experiment (an error when
    `required`: the store is the only source)."""
    from mlflow.tracking import MlflowClient

    if uri is not None and not _store_exists(uri):
        return None
    client = MlflowClient(tracking_uri=uri)
    return required_records(client, experiment) if required else store_records(client, experiment)


def collect(experiment: str | None, *, tracking_uri: str | None, bundles: list[Path],
            use_store: bool = True, shown_uri: str = "") -> Sources:
    """The runs of `experiment` from the store at `tracking_uri` (when `use_store` and it holds the
    experiment) and from the bundle folders. `experiment` None takes the bundles' own."""
    bundle = read_bundle(bundles) if bundles else None
    if bundle is not None:
        if experiment is not None and bundle.experiment != experiment:
            raise UserError(f"bundle {', '.join(map(str, bundles))} holds runs of experiment "
                            f"{bundle.experiment!r}; accepted: runs of {experiment!r}")
        experiment = bundle.experiment
    if experiment is None:
        raise UserError("no experiment to report: give a matrix file, an MLflow experiment name or a bundle")
    stored = _from_store(experiment, tracking_uri, required=not bundles) if use_store else None
    merged = _merge(stored or [], bundle.records if bundle else [], shown_uri)
    if not merged:
        where = f"the MLflow store at {shown_uri}" if use_store else "the bundle"
        raise UserError(f"no runs of experiment {experiment!r} in {where}"
                        + ("" if bundles else " and no bundle folder (results/<name>/runs/; `baq export` "
                           "writes one)"))
    parts = []
    if bundles:
        parts.append(f"bundle{'s' if len(bundles) > 1 else ''} {', '.join(f'`{b}`' for b in bundles)}")
    if stored is not None:
        parts.append(f"MLflow store `{shown_uri}`")
    described = (f"MLflow experiment `{experiment}` at `{shown_uri}`" if not bundles
                 else f"Runs of `{experiment}` from the {' and the '.join(parts)}")
    return Sources(experiment, merged, described, bundle.matrix if bundle else None)


def _merge(stored: list[RunRecord], bundled: list[tuple[RunRecord, Path]], shown_uri: str) -> list[RunRecord]:
    """The store's runs (all of them, duplicates of a cell included, as the report has always read them)
    plus each bundled run whose cell the store does not hold; a cell in both must be the same content."""
    store_by_cell: dict[str, list[RunRecord]] = {}
    for record in stored:
        store_by_cell.setdefault(record.cell, []).append(record)
    merged, seen = list(stored), {}
    for record, path in bundled:
        add_record(seen, record, path)
        here = store_by_cell.get(record.cell)
        if here is None:
            merged.append(record)
            continue
        twin = next((r for r in here if r.run_id == record.run_id), None)
        if twin is None or twin.content() != record.content():
            shown = twin or here[-1]
            raise UserError(f"cell {record.cell} is in both {path} and MLflow run {shown.run_id} at {shown_uri} "
                            "with different content; accepted: a bundle exported from this store's run "
                            "(re-run `baq export`) or one of the two removed")
    return sort_records(merged)
