"""A matrix's cells: the training runs of a validated matrix file (suite/matrix_spec.py), each a `TrainConfig`.

A matrix is algorithms × datasets × seeds (× sweep values), trained with one budget. The spec validates the
file; here every cell's config is built and validated too (the algorithms' parameters, the budget's value
types), before anything runs, each problem a one-line `UserError` naming the file. A cell's identity is the hash
of its resolved config (algorithm defaults filled in), so the same cell in a rerun — or reached through a
different file layout — is recognised as the same work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from suite.algorithm import apply_overrides
from suite.errors import UserError
from suite.matrix_spec import VARIANT_LOOP_KEYS, MatrixSpec, read_spec
from suite.train import TrainConfig

HASH_CHARS = 16


@dataclass(frozen=True)
class Cell:
    """One training of the matrix: one MLflow run, one working directory."""

    algo: str
    dataset: str
    seed: int
    overrides: dict[str, Any]  # matrix overrides and sweep values for this algorithm, as written
    config: TrainConfig
    hash: str

    @property
    def overrides_json(self) -> str:
        return overrides_json(self.overrides)

    @property
    def label(self) -> str:
        extra = " ".join(f"{k}={_short(v)}" for k, v in self.overrides.items())
        return f"{self.algo} {self.dataset} s{self.seed}" + (f" {extra}" if extra else "")

    @property
    def total_steps(self) -> int:
        return self.config.offline_steps + self.config.online_steps


@dataclass
class Matrix(MatrixSpec):
    """A matrix spec with its cells: one validated `TrainConfig` per algorithm variant × dataset × seed.
    `restrict` (the spec's) gives a Matrix again, whose cells are expanded anew."""

    ONLY_KEYS: ClassVar[tuple[str, ...]] = (*MatrixSpec.ONLY_KEYS, "cell")
    # `--only cell=PREFIX,...`: per such option, the hash prefixes of which a kept cell must match one.
    cell_prefixes: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    _cells: list[Cell] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, spec: MatrixSpec) -> Matrix:
        """The matrix of `spec`, its budget's values checked against the training config's fields."""
        try:
            apply_overrides(TrainConfig(), spec.budget, where="[budget]")
        except UserError as err:
            raise UserError(f"{spec.path}: {err}") from None
        return cls(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(MatrixSpec)})

    def cells(self) -> list[Cell]:
        if self._cells is None:
            self._cells = [cell for cell in self._expand() if all(
                any(cell.hash.startswith(prefix) for prefix in prefixes) for prefixes in self.cell_prefixes)]
        return list(self._cells)

    def restrict(self, only: list[str]) -> Matrix:
        """The spec's `restrict`, and `cell=PREFIX[,PREFIX...]`: the cells whose hash starts with one of the
        prefixes (the hashes `baq run FILE --dry-run` and `baq status FILE` print), to run or rerun single
        cells. A prefix that starts no cell of the file is a `UserError`."""
        by_cell = [item for item in only if item.partition("=")[0].strip() == "cell"]
        narrowed = super().restrict([item for item in only if item not in by_cell])
        hashes = [cell.hash for cell in self.cells()]
        for item in by_cell:
            prefixes = tuple(p.strip().lower() for p in item.partition("=")[2].split(","))
            unknown = [p for p in prefixes if not p or not any(h.startswith(p) for h in hashes)]
            if unknown:
                raise UserError(f"--only cell={unknown[0]}: no cell of {self.path} has a hash starting so; "
                                f"`baq run {self.path} --dry-run` lists its cells")
            narrowed.cell_prefixes += (prefixes,)
        if not narrowed.cells():
            raise UserError(f"--only {' '.join(only)} leaves no cell of {self.path}")
        return narrowed

    def _expand(self) -> list[Cell]:
        cells: list[Cell] = []
        seen: dict[str, Cell] = {}
        for algo in self.algorithms:
            for params in self.variants(algo):
                for dataset in self.datasets:
                    for seed in self.seeds:
                        cell = self._cell(algo, params, dataset, seed)
                        if cell.hash in seen:
                            raise UserError(
                                f"{self.path}: cells '{seen[cell.hash].label}' and '{cell.label}' resolve to "
                                "the same config; remove the duplicate sweep value or override"
                            )
                        seen[cell.hash] = cell
                        cells.append(cell)
        return cells

    def _cell(self, algo: str, params: dict[str, Any], dataset: str, seed: int) -> Cell:
        loop = {key: value for key, value in params.items() if key in VARIANT_LOOP_KEYS}
        algo_params = {key: value for key, value in params.items() if key not in VARIANT_LOOP_KEYS}
        cfg = TrainConfig(algo=algo, dataset=dataset, seed=seed, device=self.device, algo_params=algo_params)
        cfg = apply_overrides(cfg, self.budget, where="[budget]")
        try:
            cfg = apply_overrides(cfg, loop, where=f"{algo}'s variant")
            cfg.validate()
        except UserError as err:
            raise UserError(f"{self.path}: {algo} {_describe(params)}: {err}") from None
        return Cell(algo, dataset, seed, params, cfg, cell_hash(cfg))


def cell_hash(cfg: TrainConfig) -> str:
    """Identity of a cell: sha256 of its resolved config (defaults included), canonical JSON."""
    text = json.dumps(cfg.resolved(), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def overrides_json(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=list)


def load_matrix(path: str | Path) -> Matrix:
    """Read and validate a matrix file; every cell is expanded and validated before this returns."""
    matrix = Matrix.of(read_spec(path))
    matrix.cells()
    return matrix


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe(params: dict[str, Any]) -> str:
    return overrides_json(params) if params else "(defaults)"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain aligned columns: readable in a terminal, in a pipe and in a log file alike."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def format_dry_run(matrix: Matrix) -> str:
    cells = matrix.cells()
    rows = [[str(i), c.algo, c.dataset, str(c.seed), c.overrides_json if c.overrides else "-", c.hash]
            for i, c in enumerate(cells, 1)]
    table = format_table(["#", "algo", "dataset", "seed", "overrides", "cell"], rows)
    budget = ", ".join(f"{k}={v}" for k, v in matrix.budget.items())
    return (f"matrix {matrix.name} ({matrix.path}): experiment {matrix.name!r}, device {matrix.device}\n"
            f"budget: {budget}\n{table}\n{len(cells)} cells")
