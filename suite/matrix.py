"""Experiment-matrix files (experiments/*.toml): parse, validate, expand into cells.

A matrix is algorithms × datasets × seeds (× sweep values), trained with one budget. Everything is validated
before anything runs; every problem is a one-line `UserError` naming the file, the bad value and what is
accepted. A cell's identity is the hash of its resolved config (algorithm defaults filled in), so the same
cell in a rerun — or reached through a different file layout — is recognised as the same work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.algorithm import algorithm_names, apply_overrides
from suite.data import SOURCES, variants
from suite.errors import UserError
from suite.train import TrainConfig

TOP_LEVEL_KEYS = ("name", "description", "algorithms", "datasets", "seeds", "device", "budget", "overrides",
                  "sweep")
REQUIRED_BUDGET_KEYS = ("offline_steps", "online_steps", "eval_interval", "eval_episodes", "utd")
OPTIONAL_BUDGET_KEYS = ("batch_size", "log_interval", "checkpoint_interval", "max_episode_steps", "compile",
                        "mixing_ratio", "retain_offline", "warmup_steps", "critic_layernorm",
                        "eval_at_start")
DATASET_SOURCES = SOURCES
# Names double as MLflow experiment names and directory names under results/.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Minari's id grammar: (namespace/)*name-v<version>, e.g. mujoco/halfcheetah/medium-v0.
_MINARI_ID = re.compile(r"^([A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+-v\d+$")
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
class Matrix:
    name: str
    path: Path
    algorithms: list[str]
    datasets: list[str]
    seeds: list[int]
    budget: dict[str, Any]
    device: str = "cpu"
    description: str = ""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per algorithm: a list of sweep tables; each table expands to the cartesian product of its lists.
    sweeps: dict[str, list[dict[str, list[Any]]]] = field(default_factory=dict)
    _cells: list[Cell] | None = field(default=None, repr=False)

    def cells(self) -> list[Cell]:
        if self._cells is None:
            self._cells = self._expand()
        return list(self._cells)

    def _expand(self) -> list[Cell]:
        cells: list[Cell] = []
        seen: dict[str, Cell] = {}
        for algo in self.algorithms:
            for variant in self._variants(algo):
                params = {**self.overrides.get(algo, {}), **variant}
                for dataset in self.datasets:
                    for seed in self.seeds:
                        cfg = TrainConfig(algo=algo, dataset=dataset, seed=seed, device=self.device,
                                          algo_params=dict(params))
                        cfg = apply_overrides(cfg, self.budget, where="[budget]")
                        try:
                            cfg.validate()
                        except UserError as err:
                            raise UserError(f"{self.path}: {algo} {_describe(params)}: {err}") from None
                        cell = Cell(algo, dataset, seed, params, cfg, cell_hash(cfg))
                        if cell.hash in seen:
                            raise UserError(
                                f"{self.path}: cells '{seen[cell.hash].label}' and '{cell.label}' resolve to "
                                "the same config; remove the duplicate sweep value or override"
                            )
                        seen[cell.hash] = cell
                        cells.append(cell)
        return cells

    def restrict(self, only: list[str]) -> Matrix:
        """The same matrix narrowed to some algorithms, datasets and seeds (`baq run/status --only`), e.g.
        ["algo=cql", "seed=0,1"]: a key's comma-separated values are alternatives, several keys must all
        match. Name, budget and overrides stay, so the cells keep their hashes, MLflow runs and directories and
        the full file's report includes them. A key or value the file does not have is a `UserError`."""
        axes: dict[str, list[Any]] = {"algo": self.algorithms, "dataset": self.datasets, "seed": self.seeds}
        chosen: dict[str, set[str]] = {}
        for item in only:
            key, sep, values = item.partition("=")
            key = key.strip()
            if not sep or key not in axes:
                raise UserError(f"--only expects KEY=VALUE[,VALUE...] with KEY one of {', '.join(axes)}, "
                                f"got {item!r}")
            wanted = {v.strip() for v in values.split(",")}
            listed = [str(v) for v in axes[key]]
            unknown = sorted(wanted - set(listed))
            if unknown:
                raise UserError(f"--only {key}={','.join(unknown)}: not in {self.path}; its {key}s: "
                                f"{', '.join(listed)}")
            chosen[key] = chosen.get(key, wanted) & wanted
        kept = {key: [v for v in values if key not in chosen or str(v) in chosen[key]]
                for key, values in axes.items()}
        if not all(kept.values()):
            raise UserError(f"--only {' '.join(only)} leaves no cell of {self.path}")
        return dataclasses.replace(self, algorithms=kept["algo"], datasets=kept["dataset"], seeds=kept["seed"],
                                   _cells=None)

    def _variants(self, algo: str) -> list[dict[str, Any]]:
        tables = self.sweeps.get(algo)
        if not tables:
            return [{}]
        variants = []
        for table in tables:
            keys = list(table)
            combos = itertools.product(*table.values())
            variants += [dict(zip(keys, values, strict=True)) for values in combos]
        return variants


def cell_hash(cfg: TrainConfig) -> str:
    """Identity of a cell: sha256 of its resolved config (defaults included), canonical JSON."""
    text = json.dumps(cfg.resolved(), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def overrides_json(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=list)


def load_matrix(path: str | Path) -> Matrix:
    """Read and validate a matrix file; every cell is expanded and validated before this returns."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"cannot read matrix file {path}: {err.strerror or err}") from None
    matrix = parse_matrix(text, path)
    matrix.cells()
    return matrix


def parse_matrix(text: str, path: Path) -> Matrix:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = str(err)
        found = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        # tomllib names a line and column, or "end of document" for input that stops mid-value
        where = f"{path}:{found.group(1)}:" if found else f"{path}: at end of file:"
        if not found and "end of document" not in msg:
            where = f"{path}:"
        raise UserError(f"{where} malformed TOML: {re.sub(r' ?[(]at .*[)]$', '', msg)}") from None
    unknown = [k for k in doc if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise UserError(f"{path}: unknown top-level key {unknown[0]!r}; accepted: "
                        f"{', '.join(TOP_LEVEL_KEYS)}")
    for key in ("algorithms", "datasets", "seeds", "budget"):
        if key not in doc:
            raise UserError(f"{path}: missing required key {key!r}")

    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{path}: name must be letters, digits, '_', '.', '-' (it names a directory), "
                        f"got {name!r}")
    accepted_algos = algorithm_names()
    algorithms = _str_list(doc["algorithms"], "algorithms", path)
    for algo in algorithms:
        if algo not in accepted_algos:
            raise UserError(f"{path}: unknown algorithm {algo!r} in algorithms; accepted: "
                            f"{', '.join(accepted_algos)}")
    datasets = _str_list(doc["datasets"], "datasets", path)
    for dataset in datasets:
        check_dataset_id(dataset, path)
    datasets = [variants.canonical_id(dataset) for dataset in datasets]  # one spelling per dataset: one cell hash
    seeds = _list(doc["seeds"], "seeds", path)
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise UserError(f"{path}: seeds must be non-negative integers, got {seed!r}")
    device = doc.get("device", "cpu")
    if not isinstance(device, str):
        raise UserError(f"{path}: device must be a string (cpu, cuda, cuda:N), got {device!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{path}: description must be a string, got {description!r}")

    budget = _table(doc["budget"], "budget", path)
    accepted_budget = REQUIRED_BUDGET_KEYS + OPTIONAL_BUDGET_KEYS
    for key in budget:
        if key not in accepted_budget:
            raise UserError(f"{path}: unknown key {key!r} in [budget]; accepted: "
                            f"{', '.join(accepted_budget)}")
    missing = [k for k in REQUIRED_BUDGET_KEYS if k not in budget]
    if missing:
        raise UserError(f"{path}: [budget] is missing {', '.join(missing)} "
                        f"(required: {', '.join(REQUIRED_BUDGET_KEYS)})")
    try:
        apply_overrides(TrainConfig(), budget, where="[budget]")
    except UserError as err:
        raise UserError(f"{path}: {err}") from None

    overrides = {}
    for algo, table in _table(doc.get("overrides", {}), "overrides", path).items():
        _check_algo_section(algo, "overrides", algorithms, accepted_algos, path)
        overrides[algo] = dict(_table(table, f"overrides.{algo}", path))
    sweeps = {}
    for algo, spec in _table(doc.get("sweep", {}), "sweep", path).items():
        _check_algo_section(algo, "sweep", algorithms, accepted_algos, path)
        tables = spec if isinstance(spec, list) else [spec]
        sweeps[algo] = [_sweep_table(t, algo, overrides.get(algo, {}), path) for t in tables]
    return Matrix(name=name, path=path, algorithms=algorithms, datasets=datasets, seeds=seeds, budget=budget,
                  device=device, description=description, overrides=overrides, sweeps=sweeps)


def check_dataset_id(dataset_id: str, path: Path | str = "matrix") -> None:
    """`source:name[?variants]` with a known source and valid variants; d4rl and local names must be ones their
    loaders know."""
    try:
        base, _ = variants.split(dataset_id)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    source, sep, name = base.partition(":")
    if not sep or not name:
        raise UserError(f"{path}: dataset id {dataset_id!r} must be source:name with source one of "
                        f"{', '.join(DATASET_SOURCES)} (e.g. local:hopper-medium-replay)")
    if source not in DATASET_SOURCES:
        raise UserError(f"{path}: unknown dataset source {source!r} in {dataset_id!r}; accepted: "
                        f"{', '.join(DATASET_SOURCES)}")
    if source == "d4rl":
        from suite.data import d4rl

        if name not in d4rl.known_names():
            raise UserError(f"{path}: unknown D4RL dataset {name!r}; accepted: "
                            f"{', '.join(d4rl.known_names())}")
    elif source == "minari":
        if not _MINARI_ID.match(name):
            raise UserError(f"{path}: malformed Minari id {name!r}; expected (namespace/)name-v<version>, "
                            "e.g. minari:mujoco/halfcheetah/medium-v0")
    else:
        known = local_dataset_names()
        if name not in known:
            raise UserError(f"{path}: unknown local dataset {name!r}; accepted: {', '.join(known)}")


def local_dataset_names() -> list[str]:
    """`<env>-<quality>` names the local builder can make (its behaviour index's envs × qualities)."""
    from suite.data import local

    return local.local_names()


def _check_algo_section(
    algo: str, section: str, algorithms: list[str], accepted: list[str], path: Path
) -> None:
    if algo not in accepted:
        raise UserError(f"{path}: unknown algorithm {algo!r} in [{section}.{algo}]; accepted: "
                        f"{', '.join(accepted)}")
    if algo not in algorithms:
        raise UserError(f"{path}: [{section}.{algo}] is for an algorithm not in algorithms "
                        f"({', '.join(algorithms)}); add it there or remove the table")


def _sweep_table(table: Any, algo: str, overrides: dict[str, Any], path: Path) -> dict[str, list[Any]]:
    where = f"sweep.{algo}"
    table = _table(table, where, path)
    if not table:
        raise UserError(f"{path}: [{where}] is empty; give each swept parameter a list of values")
    out = {}
    for key, values in table.items():
        if key in overrides:
            raise UserError(f"{path}: {key!r} is both in [overrides.{algo}] and swept in [{where}]; keep one")
        if not isinstance(values, list):
            raise UserError(f"{path}: [{where}] {key} must be a list of values, got {values!r}")
        if not values:
            raise UserError(f"{path}: [{where}] {key} is an empty list; give at least one value")
        if len({_canonical(v) for v in values}) != len(values):
            raise UserError(f"{path}: [{where}] {key} lists a value twice: {values!r}")
        out[key] = values
    return out


def _canonical(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return json.dumps(value, sort_keys=True, default=str)


def _list(value: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(value, list):
        raise UserError(f"{path}: {key} must be a list, got {value!r} ({type(value).__name__})")
    if not value:
        raise UserError(f"{path}: {key} is empty; give at least one")
    if len({_canonical(v) for v in value}) != len(value):
        raise UserError(f"{path}: {key} lists an entry twice: {value!r}")
    return value


def _str_list(value: Any, key: str, path: Path) -> list[str]:
    items = _list(value, key, path)
    for item in items:
        if not isinstance(item, str):
            raise UserError(f"{path}: {key} must be a list of strings, got {item!r} ({type(item).__name__})")
    return items


def _table(value: Any, key: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{path}: [{key}] must be a table, got {value!r} ({type(value).__name__})")
    return value


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
