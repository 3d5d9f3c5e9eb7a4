"""A matrix file (experiments/*.toml) as data: parsed, validated and its sweeps expanded, without torch.

The one reader of matrix files: the runner builds its cells on a `MatrixSpec` (suite/matrix.py), the report
takes the cells it expects from one (analysis/report.py), and a bundle records those `ExpectedCells` as its
`matrix.json` (suite/bundle.py), which the analysis reads back with `ExpectedCells.from_dict`. Everything that
needs no algorithm code is checked here, each problem a one-line `UserError` naming the file, the bad value and
what is accepted; the algorithms' parameters and the budget's value types are checked where the training
configs are built (suite/matrix.py). Format: docs/runner.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from suite.algorithm_names import algorithm_names
from suite.data import SOURCES, variants
from suite.errors import UserError

TOP_LEVEL_KEYS = ("name", "description", "algorithms", "datasets", "seeds", "device", "budget", "overrides",
                  "sweep")
REQUIRED_BUDGET_KEYS = ("offline_steps", "online_steps", "eval_interval", "eval_episodes", "utd")
# Training-loop keys that a variant ([overrides.<algo>] or a sweep) may set for its algorithm alone, so that one
# matrix compares e.g. IQL with and without symmetric sampling; every other [budget] key is shared by all cells.
VARIANT_LOOP_KEYS = ("mixing_ratio", "retain_offline", "warmup_steps", "critic_layernorm")
OPTIONAL_BUDGET_KEYS = ("batch_size", "log_interval", "checkpoint_interval", "max_episode_steps", "compile",
                        *VARIANT_LOOP_KEYS, "eval_at_start")
DATASET_SOURCES = SOURCES
# Names double as MLflow experiment names and directory names under results/.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Minari's id grammar: (namespace/)*name-v<version>, e.g. mujoco/halfcheetah/medium-v0.
_MINARI_ID = re.compile(r"^([A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+-v\d+$")
EXPECTED_KEYS = ("algorithms", "datasets", "seeds", "paper", "variants")

Variant = dict[str, Any]  # one algorithm's parameters in one group of cells: its overrides and a sweep point


@dataclass(frozen=True)
class ExpectedCells:
    """The cells a matrix expects, algorithm variant × dataset × seed, as the report and a bundle's
    `matrix.json` hold them. `paper`: the report prints the BAQ paper's published totals beside the table."""

    algorithms: list[str]
    datasets: list[str]
    seeds: list[int]
    paper: bool = False
    # Per algorithm, the parameters of each variant. An algorithm not listed expects one variant: whatever its
    # runs carry.
    variants: dict[str, list[Variant]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (a bundle's matrix.json)."""
        return {"algorithms": list(self.algorithms), "datasets": list(self.datasets), "seeds": list(self.seeds),
                "paper": self.paper, "variants": {a: [dict(v) for v in vs] for a, vs in self.variants.items()}}

    @classmethod
    def from_dict(cls, matrix: Any) -> ExpectedCells:
        """Validate the JSON form {algorithms, datasets, seeds[, paper, variants]}; `seeds` may be a count n
        (seeds 0..n-1) and algorithm names any case."""
        if not isinstance(matrix, dict):
            raise UserError(f"matrix must be a dict with keys algorithms, datasets, seeds; "
                            f"got {type(matrix).__name__}")
        unknown = set(matrix) - set(EXPECTED_KEYS)
        missing = {"algorithms", "datasets", "seeds"} - set(matrix)
        if unknown or missing:
            raise UserError(f"matrix keys {sorted(matrix)} invalid (unknown: {sorted(unknown)}, missing: "
                            f"{sorted(missing)}); accepted: algorithms, datasets, seeds, paper")
        seeds = matrix["seeds"]
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = list(range(seeds))
        if not isinstance(seeds, list | tuple) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in seeds):
            raise UserError(f"matrix seeds {matrix['seeds']!r} invalid; accepted: a list of ints or a count")
        for key in ("algorithms", "datasets"):
            if not isinstance(matrix[key], list | tuple) or not all(isinstance(v, str) for v in matrix[key]):
                raise UserError(f"matrix {key} {matrix[key]!r} invalid; accepted: a list of names")
        algorithms = [a.lower() for a in matrix["algorithms"]]
        given = matrix.get("variants") or {}
        if not isinstance(given, dict) or not all(
                isinstance(v, list | tuple) and v and all(isinstance(o, dict) for o in v) for v in given.values()):
            raise UserError(f"matrix variants {given!r} invalid; accepted: a dict mapping an algorithm to a "
                            "non-empty list of override dicts")
        unknown_algos = sorted({a.lower() for a in given} - set(algorithms))
        if unknown_algos:
            raise UserError(f"matrix variants name algorithms {unknown_algos} not in algorithms {algorithms}")
        return cls(algorithms, list(matrix["datasets"]), list(seeds), bool(matrix.get("paper", False)),
                   {a.lower(): [dict(o) for o in options] for a, options in given.items()})


@dataclass
class MatrixSpec:
    """A validated matrix file: algorithms × datasets × seeds (× each algorithm's variants), one budget."""

    ONLY_KEYS: ClassVar[tuple[str, ...]] = ("algo", "dataset", "seed")  # what `restrict` (`--only`) selects on

    name: str
    path: Path
    algorithms: list[str]
    datasets: list[str]  # canonical spellings (suite/data/variants.py): one dataset, one cell hash
    seeds: list[int]
    budget: dict[str, Any]
    device: str = "cpu"
    description: str = ""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per algorithm: a list of sweep tables; each table expands to the cartesian product of its lists.
    sweeps: dict[str, list[dict[str, list[Any]]]] = field(default_factory=dict)

    def variants(self, algo: str) -> list[Variant]:
        """The algorithm's variants in order: its [overrides.<algo>] merged with each point of each of its sweep
        tables (a table's points in cartesian-product order), or the overrides alone when it has no sweep."""
        base = self.overrides.get(algo, {})
        points: list[Variant] = []
        for table in self.sweeps.get(algo) or [{}]:
            points += [dict(zip(table, values, strict=True)) for values in itertools.product(*table.values())]
        return [{**base, **point} for point in points]

    def expected(self, paper: bool = False) -> ExpectedCells:
        """The cells this matrix expects, every algorithm with its variants."""
        return ExpectedCells(list(self.algorithms), list(self.datasets), list(self.seeds), paper,
                             {algo: self.variants(algo) for algo in self.algorithms})

    def restrict(self, only: list[str]) -> MatrixSpec:
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
                raise UserError(f"--only expects KEY=VALUE[,VALUE...] with KEY one of {', '.join(self.ONLY_KEYS)}"
                                f", got {item!r}")
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
        return dataclasses.replace(self, algorithms=kept["algo"], datasets=kept["dataset"], seeds=kept["seed"])


def read_spec(path: str | Path) -> MatrixSpec:
    """Read and validate a matrix file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise UserError(f"cannot read matrix file {path}: {reason}") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> MatrixSpec:
    """Validate the text of matrix file `path`."""
    doc = _toml(text, path)
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
    algorithms = _algorithms(doc["algorithms"], path)
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
    budget = _budget(doc["budget"], path)
    overrides = {}
    for algo, table in _table(doc.get("overrides", {}), "overrides", path).items():
        _check_algo_section(algo, "overrides", algorithms, path)
        overrides[algo] = _not_in_budget(dict(_table(table, f"overrides.{algo}", path)), budget,
                                         f"overrides.{algo}", path)
    sweeps = {}
    for algo, spec in _table(doc.get("sweep", {}), "sweep", path).items():
        _check_algo_section(algo, "sweep", algorithms, path)
        tables = spec if isinstance(spec, list) else [spec]
        # In an array of tables an empty one is deliberate: the overrides alone (e.g. IQL beside IQL + a key).
        sweeps[algo] = [_not_in_budget(_sweep_table(t, algo, overrides.get(algo, {}), path, len(tables) > 1),
                                       budget, f"sweep.{algo}", path) for t in tables]
    return MatrixSpec(name=name, path=path, algorithms=algorithms, datasets=datasets, seeds=seeds, budget=budget,
                      device=device, description=description, overrides=overrides, sweeps=sweeps)


def _toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = str(err)
        found = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        # tomllib names a line and column, or "end of document" for input that stops mid-value
        where = f"{path}:{found.group(1)}:" if found else f"{path}: at end of file:"
        if not found and "end of document" not in msg:
            where = f"{path}:"
        raise UserError(f"{where} malformed TOML: {re.sub(r' ?[(]at .*[)]$', '', msg)}") from None


def _algorithms(value: Any, path: Path) -> list[str]:
    accepted = algorithm_names()
    algorithms = _str_list(value, "algorithms", path)
    for algo in algorithms:
        if algo not in accepted:
            raise UserError(f"{path}: unknown algorithm {algo!r} in algorithms; accepted: {', '.join(accepted)}")
    return algorithms


def _budget(value: Any, path: Path) -> dict[str, Any]:
    budget = _table(value, "budget", path)
    accepted = REQUIRED_BUDGET_KEYS + OPTIONAL_BUDGET_KEYS
    for key in budget:
        if key not in accepted:
            raise UserError(f"{path}: unknown key {key!r} in [budget]; accepted: {', '.join(accepted)}")
    missing = [k for k in REQUIRED_BUDGET_KEYS if k not in budget]
    if missing:
        raise UserError(f"{path}: [budget] is missing {', '.join(missing)} "
                        f"(required: {', '.join(REQUIRED_BUDGET_KEYS)})")
    return budget


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


def _check_algo_section(algo: str, section: str, algorithms: list[str], path: Path) -> None:
    accepted = algorithm_names()
    if algo not in accepted:
        raise UserError(f"{path}: unknown algorithm {algo!r} in [{section}.{algo}]; accepted: "
                        f"{', '.join(accepted)}")
    if algo not in algorithms:
        raise UserError(f"{path}: [{section}.{algo}] is for an algorithm not in algorithms "
                        f"({', '.join(algorithms)}); add it there or remove the table")


def _not_in_budget(table: dict[str, Any], budget: dict[str, Any], where: str, path: Path) -> dict[str, Any]:
    both = [key for key in table if key in VARIANT_LOOP_KEYS and key in budget]
    if both:
        raise UserError(f"{path}: {both[0]!r} is set in [budget] and in [{where}]; keep one")
    return table


def _sweep_table(
    table: Any, algo: str, overrides: dict[str, Any], path: Path, may_be_empty: bool = False
) -> dict[str, list[Any]]:
    where = f"sweep.{algo}"
    table = _table(table, where, path)
    if not table and not may_be_empty:
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
