"""Matrix files: validation errors, expansion into cells, cell identity, the shipped experiments."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import pytest

from suite.algorithm import algorithm_names, make_config
from suite.errors import UserError
from suite.matrix import cell_hash, format_dry_run, load_matrix
from suite.runner import print_dry_run
from suite.train import TrainConfig

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
BUDGET = """
[budget]
offline_steps = 30
online_steps = 20
eval_interval = 10
eval_episodes = 1
utd = 1
"""


def write(tmp_path: Path, body: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def base(algorithms: str = '["iql"]', datasets: str = '["d4rl:hopper-medium-v2"]', seeds: str = "[0]") -> str:
    return f"algorithms = {algorithms}\ndatasets = {datasets}\nseeds = {seeds}\n"


def error_of(path: Path) -> str:
    with pytest.raises(UserError) as info:
        load_matrix(path)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# --- validation -------------------------------------------------------------------------------------------
def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, base() + BUDGET + "\n[overrides.iql]\nexpectile = = 0.9\n")
    line = (base() + BUDGET).count("\n") + 3  # the broken line, 1-based
    assert error_of(path).startswith(f"{path}:{line}: malformed TOML")


@pytest.mark.parametrize(("body", "expected"), [
    ('colour = "red"\n' + base() + BUDGET, "unknown top-level key 'colour'; accepted: name,"),
    (base(algorithms='["iql", "ppo"]') + BUDGET, "unknown algorithm 'ppo' in algorithms; accepted: "),
    (base(algorithms='[]') + BUDGET, "algorithms is empty"),
    (base(datasets='[]') + BUDGET, "datasets is empty"),
    (base(seeds='[]') + BUDGET, "seeds is empty"),
    (base(seeds='"0"') + BUDGET, "seeds must be a list, got '0' (str)"),
    (base(seeds='[0, 0]') + BUDGET, "seeds lists an entry twice"),
    (base(seeds='[1.5]') + BUDGET, "seeds must be non-negative integers, got 1.5"),
    (base(algorithms='"iql"') + BUDGET, "algorithms must be a list, got 'iql' (str)"),
    (base(datasets='[3]') + BUDGET, "datasets must be a list of strings, got 3 (int)"),
    (base(), "missing required key 'budget'"),
    (base() + BUDGET.replace("utd = 1", ""), "[budget] is missing utd"),
    (base() + BUDGET + "max_steps = 3\n", "unknown key 'max_steps' in [budget]; accepted: offline_steps,"),
    (base() + BUDGET.replace("= 30", '= "30"'),
     "parameter 'offline_steps' of [budget] must be int, got '30'"),
    (base() + BUDGET.replace("= 30", "= -30"), "offline_steps must be >= 0, got -30"),
    (base() + BUDGET + "[overrides.iql]\nexpectile = 0.9\nfoo = 1\n",
     "unknown parameter 'foo' for algorithm 'iql'"),
    (base() + BUDGET + '[overrides.iql]\nexpectile = "high"\n',
     "parameter 'expectile' of algorithm 'iql' must be"),
    (base() + BUDGET + "[overrides.sac]\nx = 1\n", "unknown algorithm 'sac' in [overrides.sac]; accepted: "),
    (base() + BUDGET + "[sweep.iql]\nexpectile = []\n", "[sweep.iql] expectile is an empty list"),
    (base() + BUDGET + "[sweep.iql]\n", "[sweep.iql] is empty"),
    (base() + BUDGET + "[sweep.iql]\nexpectile = 0.9\n",
     "[sweep.iql] expectile must be a list of values, got 0.9"),
    (base() + BUDGET + "[sweep.iql]\nexpectile = [0.7, 0.7]\n", "[sweep.iql] expectile lists a value twice"),
    (base() + BUDGET + "[sweep.iql]\nbogus = [1, 2]\n", "unknown parameter 'bogus' for algorithm 'iql'"),
    (base() + BUDGET + "[overrides.iql]\ntau = 0.1\n[sweep.iql]\ntau = [0.2]\n",
     "'tau' is both in [overrides.iql]"),
    (base() + BUDGET + "mixing_ratio = 0.5\n[overrides.iql]\nmixing_ratio = 0.25\n",
     "'mixing_ratio' is set in [budget] and in [overrides.iql]; keep one"),
    (base() + BUDGET + "warmup_steps = 5\n[[sweep.iql]]\n[[sweep.iql]]\nwarmup_steps = [5]\n",
     "'warmup_steps' is set in [budget] and in [sweep.iql]; keep one"),
    (base() + BUDGET + "[sweep.iql]\nmixing_ratio = [1.5]\n",
     'iql {"mixing_ratio": 1.5}: mixing_ratio must be a number in [0, 1]'),
    (base(datasets='["hopper-medium-v2"]') + BUDGET,
     "must be source:name with source one of d4rl, minari, local"),
    (base(datasets='["gym:hopper"]') + BUDGET,
     "unknown dataset source 'gym' in 'gym:hopper'; accepted: d4rl,"),
    (base(datasets='["d4rl:hopper-mediocre-v2"]') + BUDGET,
     "unknown D4RL dataset 'hopper-mediocre-v2'; accepted: "),
    (base(datasets='["local:hopper-mediocre"]') + BUDGET,
     "unknown local dataset 'hopper-mediocre'; accepted: "),
    (base(datasets='["minari:hopper"]') + BUDGET, "malformed Minari id 'hopper'"),
    (base(datasets='["d4rl:hopper-medium-v2?fraction=2"]') + BUDGET,
     "dataset variant fraction='2' in 'd4rl:hopper-medium-v2?fraction=2': expected a number with 0 < fraction <= 1"),
    (base(datasets='["local:hopper-medium?noise=0.1"]') + BUDGET,
     "bad dataset variant 'noise=0.1' in 'local:hopper-medium?noise=0.1'; accepted: fraction=F"),
    ('name = "a b"\n' + base() + BUDGET, "name must be letters, digits"),
    ('device = "tpu"\n' + base() + BUDGET, "unknown device 'tpu'; accepted: cpu, cuda, cuda:N"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    message = error_of(path)
    assert expected in message
    assert message.startswith(str(path))


def test_error_lists_what_is_accepted(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, base(algorithms='["ppo"]') + BUDGET))
    assert message.endswith(", ".join(algorithm_names()))
    message = error_of(write(tmp_path, base(datasets='["local:hopper-mediocre"]') + BUDGET))
    assert "hopper-medium-replay" in message


def test_sweep_table_for_an_algorithm_not_in_the_matrix_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, base() + BUDGET + "[sweep.cql]\nalpha = [1.0]\n"))
    assert "[sweep.cql] is for an algorithm not in algorithms (iql)" in message


def test_cells_resolving_to_the_same_config_are_refused(tmp_path: Path) -> None:
    default = make_config("iql").expectile
    tau = make_config("iql").tau
    body = base() + BUDGET + f"[[sweep.iql]]\nexpectile = [{default}]\n[[sweep.iql]]\ntau = [{tau}]\n"
    assert "resolve to the same config" in error_of(write(tmp_path, body))


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read matrix file"):
        load_matrix(tmp_path / "nope.toml")


# --- expansion --------------------------------------------------------------------------------------------
def test_sweep_expands_to_the_cartesian_product(tmp_path: Path) -> None:
    body = (base(datasets='["d4rl:hopper-medium-v2", "d4rl:walker2d-medium-v2"]', seeds="[0, 1, 2]") + BUDGET
            + "[overrides.iql]\ntau = 0.01\n"
            + "[sweep.iql]\nexpectile = [0.5, 0.7, 0.9]\ntemperature = [1.0, 3.0]\n")
    matrix = load_matrix(write(tmp_path, body, "sweepy.toml"))
    assert matrix.name == "sweepy"  # default: the file stem
    cells = matrix.cells()
    assert len(cells) == 3 * 2 * 2 * 3
    want = {(e, t, d, s) for e, t, d, s in itertools.product(
        [0.5, 0.7, 0.9], [1.0, 3.0], ["d4rl:hopper-medium-v2", "d4rl:walker2d-medium-v2"], [0, 1, 2])}
    got = {(c.overrides["expectile"], c.overrides["temperature"], c.dataset, c.seed) for c in cells}
    assert got == want
    for c in cells:
        assert c.overrides["tau"] == 0.01 and c.config.algo_params == c.overrides
        assert c.config.offline_steps == 30 and c.config.online_steps == 20 and c.config.eval_interval == 10
        assert json.loads(c.overrides_json) == c.overrides
    assert len({c.hash for c in cells}) == len(cells)


def test_array_of_sweep_tables_is_a_union_of_products(tmp_path: Path) -> None:
    body = (base() + BUDGET + "[[sweep.iql]]\nexpectile = [0.5, 0.9]\n"
            "[[sweep.iql]]\nexpectile = [0.6]\ntemperature = [1.0, 2.0, 4.0]\n")
    cells = load_matrix(write(tmp_path, body)).cells()
    assert [c.overrides for c in cells] == [
        {"expectile": 0.5}, {"expectile": 0.9},
        {"expectile": 0.6, "temperature": 1.0}, {"expectile": 0.6, "temperature": 2.0},
        {"expectile": 0.6, "temperature": 4.0},
    ]


def test_a_variant_may_set_the_fine_tuning_protocol_for_its_algorithm_alone(tmp_path: Path) -> None:
    """Loop keys (mixing_ratio, ...) in an algorithm's overrides or sweep reach its TrainConfig, not its
    algorithm config; an empty table in an array of sweep tables is the plain variant, whose cell is the one
    a matrix without the key would have."""
    body = (base(algorithms='["iql", "awac"]', seeds="[0, 1]") + BUDGET
            + "[overrides.awac]\nmixing_ratio = 0.5\ncritic_layernorm = true\n"
            + "[[sweep.iql]]\n[[sweep.iql]]\nmixing_ratio = [0.5]\nexpectile = [0.8]\n")
    cells = load_matrix(write(tmp_path, body)).cells()
    assert [(c.algo, c.seed, c.overrides) for c in cells] == [
        ("iql", 0, {}), ("iql", 1, {}),
        ("iql", 0, {"mixing_ratio": 0.5, "expectile": 0.8}), ("iql", 1, {"mixing_ratio": 0.5, "expectile": 0.8}),
        ("awac", 0, {"mixing_ratio": 0.5, "critic_layernorm": True}),
        ("awac", 1, {"mixing_ratio": 0.5, "critic_layernorm": True}),
    ]
    plain, mixed, awac = cells[0].config, cells[2].config, cells[4].config
    assert plain.mixing_ratio is None and plain.algo_params == {}
    assert mixed.mixing_ratio == 0.5 and mixed.algo_params == {"expectile": 0.8}
    assert awac.mixing_ratio == 0.5 and awac.critic_layernorm is True and awac.algo_params == {}
    without = load_matrix(write(tmp_path, base(seeds="[0, 1]") + BUDGET, "plain.toml")).cells()
    assert [c.hash for c in without] == [c.hash for c in cells[:2]]
    in_budget = load_matrix(write(tmp_path, base() + BUDGET + "mixing_ratio = 0.5\n"
                                  "[overrides.iql]\nexpectile = 0.8\n", "budget.toml")).cells()[0]
    assert in_budget.hash == cells[2].hash  # the same config, whichever table says it


def test_algorithms_without_a_sweep_run_once_with_their_overrides(tmp_path: Path) -> None:
    if "cql" not in algorithm_names():
        pytest.skip("cql is not registered in this checkout")
    body = base(algorithms='["iql", "cql"]') + BUDGET + "[sweep.iql]\nexpectile = [0.5, 0.9]\n"
    cells = load_matrix(write(tmp_path, body)).cells()
    assert [(c.algo, c.overrides) for c in cells] == [
        ("iql", {"expectile": 0.5}), ("iql", {"expectile": 0.9}), ("cql", {})]


def test_cell_hash_is_the_hash_of_the_resolved_config(tmp_path: Path) -> None:
    body = base(seeds="[0, 1]") + BUDGET + "[overrides.iql]\nexpectile = 0.8\n"
    cells = load_matrix(write(tmp_path, body)).cells()
    for cell in cells:
        cfg = TrainConfig(algo="iql", dataset="d4rl:hopper-medium-v2", seed=cell.seed, offline_steps=30,
                          online_steps=20, eval_interval=10, eval_episodes=1, utd=1,
                          algo_params={"expectile": 0.8})
        algo_params = dataclasses.asdict(make_config("iql", {"expectile": 0.8}))
        # `compile` and the fine-tuning protocol's keys are left out while off (TrainConfig.resolved), and an unset
        # batch size is the algorithm's (256 for IQL), so that hashes from before these keys existed hold.
        off = {"compile", "mixing_ratio", "retain_offline", "warmup_steps", "critic_layernorm"}
        resolved = ({k: v for k, v in dataclasses.asdict(cfg).items() if k not in off}
                    | {"algo_params": algo_params, "batch_size": 256})
        canonical = json.dumps(resolved, sort_keys=True, default=str, separators=(",", ":"))
        assert cell.hash == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert cells[0].hash != cells[1].hash


def test_writing_a_default_explicitly_keeps_the_cell_identity(tmp_path: Path) -> None:
    plain = load_matrix(write(tmp_path, base() + BUDGET, "a.toml")).cells()[0]
    default = make_config("iql").expectile
    explicit = load_matrix(write(tmp_path, base() + BUDGET + f"[overrides.iql]\nexpectile = {default}\n",
                                 "b.toml")).cells()[0]
    assert plain.hash == explicit.hash == cell_hash(plain.config)
    changed = load_matrix(write(tmp_path, base() + BUDGET.replace("= 30", "= 31"), "c.toml")).cells()[0]
    assert changed.hash != plain.hash


def test_dataset_variants_make_other_cells_and_have_one_spelling(tmp_path: Path) -> None:
    plain, varied = "d4rl:hopper-medium-v2", "d4rl:hopper-medium-v2?action_noise=0.1&fraction=0.5"
    cells = load_matrix(write(tmp_path, base(datasets=f'["{plain}", "{varied}"]') + BUDGET, "a.toml")).cells()
    assert [c.dataset for c in cells] == [plain, varied] and cells[0].hash != cells[1].hash
    respelled = load_matrix(write(tmp_path, base(datasets='["d4rl:hopper-medium-v2?fraction=0.50&action_noise=.1"]')
                                  + BUDGET, "b.toml")).cells()[0]
    assert (respelled.dataset, respelled.hash) == (varied, cells[1].hash)
    cfg = TrainConfig(algo="iql", dataset="d4rl:hopper-medium-v2?fraction=0.5&action_noise=0.1", seed=0,
                      offline_steps=30, online_steps=20, eval_interval=10, eval_episodes=1, utd=1).validate()
    assert cfg.dataset == varied and cell_hash(cfg) == cells[1].hash
    twice = base(datasets=f'["{varied}", "d4rl:hopper-medium-v2?fraction=0.5&action_noise=0.10"]') + BUDGET
    assert "resolve to the same config" in error_of(write(tmp_path, twice, "c.toml"))


def test_dry_run_lists_every_cell_and_the_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = 'name = "dry"\n' + base(seeds="[3, 4]") + BUDGET + "[sweep.iql]\nexpectile = [0.6, 0.8]\n"
    matrix = load_matrix(write(tmp_path, body))
    print_dry_run(matrix)
    out = capsys.readouterr().out
    assert out.strip() == format_dry_run(matrix)
    lines = out.strip().splitlines()
    assert lines[-1] == "4 cells"
    rows = [line.split() for line in lines[:-1] if line.split()[:1] and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    for row, cell in zip(rows, matrix.cells(), strict=True):
        assert row[1:4] == ["iql", "d4rl:hopper-medium-v2", str(cell.seed)]
        assert row[-1] == cell.hash and f'"expectile": {cell.overrides["expectile"]}' in " ".join(row)


# --- shipped experiment files -----------------------------------------------------------------------------
def test_shipped_experiments_validate() -> None:
    missing = {"iql", "cql", "awac", "baq"} - set(algorithm_names())
    if missing:
        pytest.skip(f"algorithms not registered in this checkout: {sorted(missing)}")
    quick = load_matrix(EXPERIMENTS / "quickstart.toml")
    assert sorted(quick.algorithms) == ["awac", "baq", "cql", "iql"]
    assert quick.datasets == ["local:hopper-medium-replay"] and len(quick.cells()) == 8
    tasks = [f"{env}-{q}" for env in ("halfcheetah", "hopper", "walker2d")
             for q in ("medium", "medium-replay", "medium-expert")]
    paper = load_matrix(EXPERIMENTS / "paper_table.toml")
    assert paper.datasets == [f"d4rl:{t}-v2" for t in tasks] and paper.seeds == [0, 1, 2, 3, 4]
    assert paper.budget["offline_steps"] == paper.budget["online_steps"] == 1_000_000
    assert len(paper.cells()) == 9 * 4 * 5
    local = load_matrix(EXPERIMENTS / "local_table.toml")
    assert local.datasets == [f"local:{t}" for t in tasks] and len(local.cells()) == 180
    ablation = load_matrix(EXPERIMENTS / "ablation_schedule.toml")
    assert ablation.algorithms == ["baq"]
    schedules = {c.overrides["schedule"] for c in ablation.cells()}
    assert schedules == {"constant", "linear", "exponential", "cosine", "step", "adaptive"}
    assert len(ablation.cells()) == (2 * 3 + 3 * 3 * 3 + 3 * 3) * 2 * 3
    switch = load_matrix(EXPERIMENTS / "switch.toml")
    assert switch.datasets == ["local:halfcheetah-medium-replay", "local:hopper-medium"]
    assert (switch.budget["offline_steps"], switch.budget["online_steps"]) == (100_000, 50_000)
    assert switch.budget["eval_interval"] == 5_000 and len(switch.cells()) == 4 * 2 * 2
    quality = load_matrix(EXPERIMENTS / "data_quality.toml")
    assert quality.algorithms == ["baq", "iql"] and len(quality.cells()) == 2 * 10 * 3
    assert "local:hopper-medium?action_noise=0.3&fraction=0.1" in quality.datasets
    shipped = {p.name for p in EXPERIMENTS.glob("*.toml")}
    baselines = load_matrix(EXPERIMENTS / "baselines.toml")
    assert sorted(baselines.algorithms) == ["awac", "baq", "calql", "cql", "iql", "rebrac"]
    assert baselines.datasets == switch.datasets and baselines.budget == switch.budget
    # The four methods both files hold are the same cells (same resolved configs, same hashes).
    assert {c.hash for c in switch.cells()} <= {c.hash for c in baselines.cells()}
    small = load_matrix(EXPERIMENTS / "ablation_small.toml")
    assert small.datasets == ["local:hopper-medium"] and small.seeds == [0, 1] and len(small.cells()) == 22
    assert (small.budget["offline_steps"], small.budget["online_steps"]) == (50_000, 50_000)
    off = next(c for c in small.cells() if c.algo == "baq" and c.overrides.get("priority") == "none"
               and c.overrides.get("kappa0") == 0.0 and c.overrides.get("lambda0") == 0.0)
    assert off.config.algo_config().base == "iql"  # everything off: BAQ's base, the IQL reference
    assert {c.overrides.get("schedule") for c in small.cells() if c.algo == "baq"} >= {
        "constant", "linear", "exponential", "cosine", "step", "adaptive"}
    assert shipped == {"quickstart.toml", "paper_table.toml", "local_table.toml", "ablation_schedule.toml",
                       "switch.toml", "baselines.toml", "data_quality.toml", "ablation_small.toml",
                       "fine_tuning_small.toml"}, f"a shipped matrix file has no check here: {sorted(shipped)}"


def test_fine_tuning_small_puts_symmetric_sampling_beside_plain_iql() -> None:
    if "rebrac" not in algorithm_names():
        pytest.skip("rebrac is not registered in this checkout")
    cells = load_matrix(EXPERIMENTS / "fine_tuning_small.toml").cells()
    assert [(c.algo, c.seed, c.config.mixing_ratio) for c in cells] == [
        ("iql", 0, None), ("iql", 1, None), ("iql", 0, 0.5), ("iql", 1, 0.5), ("rebrac", 0, 0.5), ("rebrac", 1, 0.5)]
    assert {(c.config.offline_steps, c.config.online_steps) for c in cells} == {(50_000, 25_000)}
    assert all(c.config.algo_config().bc_decay_steps == 25_000 for c in cells if c.algo == "rebrac")


# --- restricting a matrix (`--only`) ----------------------------------------------------------------------
def test_restrict_keeps_the_selected_cells_and_their_identity(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "sub"\n' + base('["iql", "cql", "awac"]',
                 '["d4rl:hopper-medium-v2", "d4rl:walker2d-medium-v2"]', "[0, 1, 2]") + BUDGET
                 + "[sweep.iql]\nexpectile = [0.7, 0.9]\n")
    full = load_matrix(path)
    by_hash = {c.hash: c for c in full.cells()}
    sub = full.restrict(["algo=iql,cql", "seed=2", "dataset=d4rl:walker2d-medium-v2"])
    cells = sub.cells()
    assert [(c.algo, c.dataset, c.seed) for c in cells] == [
        ("iql", "d4rl:walker2d-medium-v2", 2), ("iql", "d4rl:walker2d-medium-v2", 2),
        ("cql", "d4rl:walker2d-medium-v2", 2)]
    assert [c.overrides for c in cells] == [{"expectile": 0.7}, {"expectile": 0.9}, {}]
    for cell in cells:  # same hash, same config: the same MLflow run and directory as in the full matrix
        assert by_hash[cell.hash].config == cell.config
    assert sub.name == full.name and sub.budget == full.budget
    assert len(full.cells()) == (2 + 1 + 1) * 2 * 3  # the full matrix is left as it was
    # a key given twice keeps the values in both
    assert {c.algo for c in full.restrict(["algo=iql,cql", "algo=cql,awac"]).cells()} == {"cql"}


def test_restrict_by_cell_hash_prefix(tmp_path: Path) -> None:
    """`--only cell=PREFIX,...` keeps the cells whose hash starts with one of the prefixes, in the file's
    order; with other keys, a cell must match them all."""
    full = load_matrix(write(tmp_path, base('["iql", "cql"]', seeds="[0, 1, 2]") + BUDGET))
    cells = full.cells()
    picked = [cells[4], cells[1]]
    sub = full.restrict([f"cell={picked[0].hash[:6]},{picked[1].hash.upper()}"])
    assert [c.hash for c in sub.cells()] == [cells[1].hash, cells[4].hash]
    assert [c.hash for c in sub.restrict(["algo=cql"]).cells()] == [cells[4].hash]
    assert [c.hash for c in full.restrict(["algo=iql", f"cell={cells[1].hash[:8]}"]).cells()] == [cells[1].hash]
    assert len(full.cells()) == 6  # the full matrix is left as it was
    with pytest.raises(UserError, match="leaves no cell of"):
        full.restrict(["algo=cql", f"cell={cells[1].hash}"])


@pytest.mark.parametrize(("only", "expected"), [
    (["algo"], "--only expects KEY=VALUE[,VALUE...] with KEY one of algo, dataset, seed, cell, got 'algo'"),
    (["colour=red"], "with KEY one of algo, dataset, seed, cell, got 'colour=red'"),
    (["cell=0000zz"], "--only cell=0000zz: no cell of "),
    (["cell="], "--only cell=: no cell of "),
    (["algo=ppo,iql"], "--only algo=ppo: not in "),
    (["seed=5"], "its seeds: 0, 1"),
    (["dataset=d4rl:ant-medium-v2"], "its datasets: d4rl:hopper-medium-v2"),
    (["algo=iql", "algo=cql"], "--only algo=iql algo=cql leaves no cell of "),
])
def test_restrict_rejects_what_the_file_does_not_have(tmp_path: Path, only: list[str], expected: str) -> None:
    matrix = load_matrix(write(tmp_path, base('["iql", "cql"]', seeds="[0, 1]") + BUDGET))
    with pytest.raises(UserError) as info:
        matrix.restrict(only)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_malformed_toml_at_end_of_file_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, base() + BUDGET + "\n[overrides.iql]\nexpectile =")
    assert error_of(path).startswith(f"{path}: at end of file: malformed TOML: Invalid value")
