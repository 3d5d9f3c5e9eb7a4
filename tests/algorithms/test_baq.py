"""BAQ: critic weights, divergences, penalty, phases, prioritized replay, checkpoints, and exact reduction to
its base algorithm when switched off (direct updates and through suite.train)."""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from algorithms.baq import BAQ, critic_weights, mse_divergence, nll_divergence
from suite.algorithm import Batch, LossContext, get_algorithm, make_config
from suite.buffer import ReplayBuffer
from suite.errors import UserError
from suite.tracking import MemorySink
from suite.train import TrainConfig, train

OBS, ACT = 3, 2
SMALL = {"hidden": [32, 32]}  # tiny base networks keep every test fast
OFF = {"kappa0": 0.0, "lambda0": 0.0, "priority": "none"}


def make_baq(seed: int = 0, base: str = "iql", **params: Any) -> BAQ:
    torch.manual_seed(seed)
    params = {"base": base, "base_params": SMALL, "behavior_hidden": [32, 32], **params}
    return BAQ(make_config("baq", params), OBS, ACT)


def filled_buffer(n: int = 64, spare: int = 16, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(n + spare, OBS, ACT)
    buffer.add_batch(rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)), rng.normal(size=n),
                     rng.normal(size=(n, OBS)), (rng.random(n) < 0.1).astype(np.float32))
    return buffer


def set_constant_behavior(baq: BAQ, mean: list[float], log_std: list[float]) -> None:
    """π_β(·|s) = N(mean, exp(log_std)²) for every s: zero last layer, bias atanh(mean) under the tanh."""
    last = baq.behavior.net[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.atanh(torch.tensor(mean)))
        baq.behavior.log_std.copy_(torch.tensor(log_std))


def online_step(algo: Any, buffer: ReplayBuffer, t: int, rng: np.random.Generator) -> None:
    """One online env step without an env: act stochastically (uses the global RNG), store the transition."""
    algo.on_online_step(t)
    obs = rng.normal(size=OBS).astype(np.float32)
    act = algo.act(torch.as_tensor(obs).unsqueeze(0), deterministic=False)[0].numpy()
    buffer.add(obs, act, float(rng.normal()), rng.normal(size=OBS).astype(np.float32), False)


# --- formulas against hand computation ---------------------------------------------------------------------
def test_critic_weight_formula() -> None:
    d = torch.tensor([0.0, 0.5, 1.0, 3.0, 10.0])
    expected = [1.0, math.exp(-1.0), math.exp(-2.0), 0.1, 0.1]  # κ = 2, w_min = 0.1
    assert critic_weights(d, 2.0, 0.1).tolist() == pytest.approx(expected)
    assert critic_weights(d, 0.0, 0.1).tolist() == [1.0] * 5


def test_divergences_match_hand_computation() -> None:
    baq = make_baq(divergence="mse")
    set_constant_behavior(baq, [0.5, -0.25], [math.log(0.5), math.log(0.25)])
    obs = torch.randn(3, OBS)
    act = torch.tensor([[0.5, -0.25], [1.0, -0.25], [0.0, 0.75]])
    stats = baq.behavior_stats(obs, act)
    assert stats["mean"].flatten().tolist() == pytest.approx([0.5, -0.25] * 3)
    assert stats["divergence"].tolist() == pytest.approx([0.0, 0.25 / 2, (0.25 + 1.0) / 2])
    assert mse_divergence(act, stats["mean"]).tolist() == pytest.approx([0.0, 0.125, 0.625])
    # NLL from the mode: Σ_j (a_j − μ_j)² / (2σ_j²); −log π_β(a|s) adds Σ_j log σ_j + ½ log 2π.
    nll_from_mode = [0.0, 0.25 / (2 * 0.25), 0.25 / (2 * 0.25) + 1.0 / (2 * 0.0625)]
    const = math.log(0.5) + math.log(0.25) + math.log(2 * math.pi)
    assert stats["nll"].tolist() == pytest.approx([v + const for v in nll_from_mode], rel=1e-5)
    baq_nll = make_baq(divergence="nll")
    set_constant_behavior(baq_nll, [0.5, -0.25], [math.log(0.5), math.log(0.25)])
    assert baq_nll.behavior_stats(obs, act)["divergence"].tolist() == pytest.approx(nll_from_mode, abs=1e-5)
    assert nll_divergence(torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 1.0])).tolist() == [2.0, 0.0]


class Spy:
    """Stands in for the base's loss and records what BAQ passes to it. Its loss is 0 and reaches the base's
    parameters (so BAQ's optimiser step has a graph to run), leaving them unchanged."""

    def __init__(self, base: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self.base = base

    def __call__(self, batch: Batch, context: LossContext) -> tuple[torch.Tensor, dict]:
        self.calls.append({"batch": batch, "critic_weight": context.critic_weight,
                           "actor_penalty": context.actor_penalty})
        zero = sum(p.sum() * 0.0 for p in self.base.actor.parameters())
        return zero, {}


def test_online_weights_and_penalty_passed_to_base_match_hand_values() -> None:
    baq = make_baq(kappa0=2.0, lambda0=0.4, w_min=0.1, schedule="linear", schedule_T=100, priority="none")
    acts = np.array([[0.5, -0.25], [1.0, -0.25], [0.5, 0.75], [-0.5, 0.75]], np.float32)
    buffer = ReplayBuffer(8, OBS, ACT)
    buffer.add_batch(np.ones((4, OBS)), acts, np.zeros(4), np.ones((4, OBS)), np.zeros(4))
    spy = Spy(baq.base)
    baq.base.loss = spy
    baq.update(buffer.sample(4, torch.Generator().manual_seed(0)))  # offline: nothing passed by default
    assert spy.calls[-1]["critic_weight"] is None and spy.calls[-1]["actor_penalty"] is None

    set_constant_behavior(baq, [0.5, -0.25], [0.0, 0.0])  # again: the offline update fitted π_β one step
    baq.on_online_start(buffer)
    d = np.array([0.0, 0.125, 0.5, 1.0])  # ‖a − μ‖²/|A| by hand
    assert baq.divergence_scale == pytest.approx(d.mean())
    baq.on_online_step(50)  # σ = 1 − 50/100 = 0.5: κ = 1.0, λ = 0.2
    batch = Batch(*(torch.as_tensor(x) for x in (np.ones((4, OBS), np.float32), acts, np.zeros(4, np.float32),
                                                  np.ones((4, OBS), np.float32), np.zeros(4, np.float32))))
    metrics = baq.update(batch)
    expected_w = [max(math.exp(-1.0 * di / d.mean()), 0.1) for di in d]
    assert spy.calls[-1]["critic_weight"].tolist() == pytest.approx(expected_w)
    assert float(metrics["kappa"]) == pytest.approx(1.0) and float(metrics["lambda"]) == pytest.approx(0.2)
    assert float(metrics["critic_weight_mean"]) == pytest.approx(np.mean(expected_w))
    assert float(metrics["divergence_mean"]) == pytest.approx(1.0)
    # Penalty: λ·‖π(s) − μ_β(s)‖² per sample, gradient only into the actor.
    penalty = spy.calls[-1]["actor_penalty"](batch.obs, baq.actor)
    pi = baq.actor.deterministic(batch.obs).detach()
    hand = 0.2 * ((pi - torch.tensor([0.5, -0.25])) ** 2).sum(-1)
    assert penalty.detach().tolist() == pytest.approx(hand.tolist(), rel=1e-5)
    baq.behavior.zero_grad(set_to_none=True)  # (the offline fit left its gradients)
    penalty.sum().backward()
    assert baq.actor.net[0].weight.grad is not None and baq.behavior.net[0].weight.grad is None
    # PER's importance weights multiply the divergence weights.
    is_w = torch.tensor([1.0, 0.5, 0.25, 1.0])
    baq.update(batch._replace(weight=is_w, index=torch.arange(4)))
    assert spy.calls[-1]["critic_weight"].tolist() == pytest.approx(np.array(expected_w) * is_w.numpy())


def test_offline_fits_behavior_by_max_likelihood_and_freezes_online() -> None:
    baq = make_baq(priority="none")
    buffer = filled_buffer()
    gen = torch.Generator().manual_seed(0)
    before = [p.clone() for p in baq.behavior.parameters()]
    losses = [float(baq.update(buffer.sample(64, gen))["bc_loss"]) for _ in range(30)]
    assert losses[-1] < losses[0]  # the MLE fit makes progress
    assert any(not torch.equal(a, b) for a, b in zip(before, baq.behavior.parameters(), strict=True))
    baq.on_online_start(buffer)
    frozen = [p.clone() for p in baq.behavior.parameters()]
    online_step(baq, buffer, 1, np.random.default_rng(0))
    baq.update(buffer.sample(64, gen))
    assert all(torch.equal(a, b) for a, b in zip(frozen, baq.behavior.parameters(), strict=True))


def test_offline_actor_behavior_is_a_frozen_copy_taken_at_the_switch() -> None:
    baq = make_baq(behavior_model="offline_actor", priority="none")
    assert baq.behavior is None
    buffer = filled_buffer()
    gen = torch.Generator().manual_seed(0)
    baq.update(buffer.sample(32, gen))
    baq.on_online_start(buffer)
    obs = torch.randn(5, OBS)
    at_switch = baq.actor.deterministic(obs).detach()
    for t in range(1, 4):
        online_step(baq, buffer, t, np.random.default_rng(t))
        baq.update(buffer.sample(32, gen))
    assert not torch.equal(baq.actor.deterministic(obs), at_switch)  # the actor moved on ...
    assert torch.equal(baq.behavior_mean(obs), at_switch)  # ... its copy did not


def test_adaptive_schedule_uses_critic_disagreement() -> None:
    baq = make_baq(schedule="adaptive", ema_rate=0.5, priority="none")
    buffer = filled_buffer()
    gen = torch.Generator().manual_seed(0)
    baq.update(buffer.sample(32, gen))
    baq.on_online_start(buffer)
    sigmas = []
    for t in range(1, 4):
        baq.on_online_step(t)
        batch = buffer.sample(32, gen)
        q = baq.base.critic(batch.obs, batch.act).detach()
        hand_u = ((q[0] - q[1]).abs() / 2).mean()  # population std of two values
        metrics = baq.update(batch)
        assert float(metrics["uncertainty"]) == pytest.approx(float(hand_u), rel=1e-5)
        if t == 1:
            u0, ema = float(hand_u), float(hand_u)
        else:
            ema = 0.5 * ema + 0.5 * float(hand_u)
        sigmas.append(float(metrics["sigma"]))
        assert sigmas[-1] == pytest.approx(min(ema / u0, 1.0), rel=1e-5)
        assert float(metrics["kappa"]) == pytest.approx(sigmas[-1])
    assert sigmas[0] == 1.0


def test_prioritized_replay_is_installed_and_scores_offline_and_online_data() -> None:
    baq = make_baq(priority="bc_divergence", priority_alpha=0.6, priority_eps=0.01)
    buffer = filled_buffer(n=64, spare=16)
    baq.update(buffer.sample(32, torch.Generator().manual_seed(0)))
    baq.on_online_start(buffer)
    assert buffer.sampler is baq.sampler
    d = baq.behavior_stats(buffer.obs[:64], buffer.act[:64])["divergence"].double()
    expected = ((d / d.mean()) + 0.01) ** 0.6
    assert baq.sampler.tree.get(np.arange(64)) == pytest.approx(expected.numpy(), rel=1e-5)
    online_step(baq, buffer, 1, np.random.default_rng(0))
    d_new = baq.behavior_stats(buffer.obs[64:65], buffer.act[64:65])["divergence"].double() / d.mean()
    assert baq.sampler.tree.get(np.array([64]))[0] == pytest.approx(float((d_new + 0.01) ** 0.6), rel=1e-5)
    metrics = baq.update(buffer.sample(32, torch.Generator().manual_seed(1)))
    assert 0 < float(metrics["is_weight_mean"]) <= 1.0


# --- BAQ switched off is its base, number for number -------------------------------------------------------
def run_updates(name: str, params: dict, offline: int = 4, online: int = 4) -> tuple[list[dict], dict]:
    torch.manual_seed(0)
    algo = get_algorithm(name)(make_config(name, params), OBS, ACT)
    buffer, gen, rng = filled_buffer(), torch.Generator().manual_seed(1), np.random.default_rng(2)
    history = [algo.update(buffer.sample(16, gen)) for _ in range(offline)]
    algo.on_online_start(buffer)
    for t in range(1, online + 1):
        online_step(algo, buffer, t, rng)
        history.append(algo.update(buffer.sample(16, gen)))
    return history, {k: v.clone() for k, v in algo.actor.state_dict().items()}


@pytest.mark.parametrize("base", ["iql", "cql"])
@pytest.mark.parametrize("behavior_model", ["bc", "offline_actor"])
def test_switched_off_baq_reproduces_base_exactly(base: str, behavior_model: str) -> None:
    ref_hist, ref_actor = run_updates(base, SMALL)
    params = {"base": base, "base_params": SMALL, "behavior_model": behavior_model, "divergence": "nll"}
    params.update(OFF)
    hist, actor = run_updates("baq", params)
    for ref, got in zip(ref_hist, hist, strict=True):
        assert set(ref) < set(got)
        for key in ref:
            assert torch.equal(ref[key], got[key]), key
    assert all(torch.equal(ref_actor[k], actor[k]) for k in ref_actor)


# --- every option combination runs --------------------------------------------------------------------------
COMBOS = list(itertools.product(["iql", "cql"], ["bc", "offline_actor"], ["mse", "nll"],
                                ["constant", "linear", "exponential", "cosine", "step", "adaptive"],
                                ["bc_divergence", "none"]))


@pytest.mark.parametrize(("base", "behavior", "divergence", "schedule", "priority"), COMBOS)
def test_every_option_combination_survives_a_few_updates(
    base: str, behavior: str, divergence: str, schedule: str, priority: str
) -> None:
    flags = COMBOS.index((base, behavior, divergence, schedule, priority)) % 2 == 0  # offline terms on/off
    baq = make_baq(base=base, behavior_model=behavior, divergence=divergence, schedule=schedule, schedule_T=4,
                   half_life=2.0, priority=priority, weight_offline=flags, penalty_offline=flags)
    buffer, gen = filled_buffer(n=48, spare=8), torch.Generator().manual_seed(0)
    offline = [baq.update(buffer.sample(16, gen)) for _ in range(2)]
    baq.on_online_start(buffer)
    for t in range(1, 4):
        online_step(baq, buffer, t, np.random.default_rng(t))
        metrics = baq.update(buffer.sample(16, gen))
        assert set(metrics) == set(offline[0]) | ({"actor_penalty"} if not flags else set())
        assert all(torch.isfinite(v) for v in metrics.values())
    assert float(offline[-1]["kappa"]) == (1.0 if flags else 0.0)
    assert 0.0 <= float(metrics["sigma"]) <= 1.0


@pytest.mark.parametrize(("params", "match"), [
    ({"base": "awac"}, "unknown base 'awac'"),
    ({"schedule": "sigmoid"}, "unknown schedule 'sigmoid'"),
    ({"divergence": "kl"}, "unknown divergence 'kl'"),
    ({"kappa0": -1.0}, "kappa0 must be >= 0"),
    ({"w_min": 2.0}, "w_min"),
    ({"base_params": {"expectile_typo": 0.5}}, "unknown parameter 'expectile_typo'"),
    ({"priority_eps": 0.0}, "priority_eps"),
])
def test_bad_config_is_a_one_line_user_error(params: dict, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        make_config("baq", params)
    assert "\n" not in str(err.value)


def test_adaptive_needs_a_critic_ensemble() -> None:
    with pytest.raises(UserError, match="adaptive"):
        make_baq(schedule="adaptive", base_params={"n_critics": 1, "hidden": [32, 32]})


# --- checkpoints ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    {"priority": "bc_divergence", "schedule": "linear"},
    {"behavior_model": "offline_actor", "divergence": "nll", "schedule": "adaptive"},
    {"base": "cql", "schedule": "exponential", "priority": "none"},
])
def test_checkpoint_round_trip_gives_same_actions_and_next_update(params: dict) -> None:
    a, buffer_a = make_baq(seed=0, **params), filled_buffer()
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        a.update(buffer_a.sample(16, gen))
    a.on_online_start(buffer_a)
    for t in range(1, 4):
        online_step(a, buffer_a, t, np.random.default_rng(t))
        a.update(buffer_a.sample(16, gen))
    blob = io.BytesIO()
    torch.save({"algo": a.state_dict(), "buffer": buffer_a.state_dict(start=64)}, blob)
    state = torch.load(io.BytesIO(blob.getvalue()), weights_only=False)

    b, buffer_b = make_baq(seed=123, **params), filled_buffer()  # other init; the train loop's resume order:
    b.load_state_dict(state["algo"])
    b.on_online_start(buffer_b)
    b.load_state_dict(state["algo"])
    buffer_b.load_state_dict(state["buffer"])

    obs = torch.randn(6, OBS)
    assert torch.equal(a.act(obs, deterministic=True), b.act(obs, deterministic=True))
    torch.manual_seed(7)
    stochastic_a = a.act(obs, deterministic=False)
    torch.manual_seed(7)
    assert torch.equal(stochastic_a, b.act(obs, deterministic=False))
    for t in (4, 5):
        a.on_online_step(t)
        b.on_online_step(t)
        ga, gb = torch.Generator().manual_seed(t), torch.Generator().manual_seed(t)
        batch_a, batch_b = buffer_a.sample(16, ga), buffer_b.sample(16, gb)
        assert torch.equal(batch_a.obs, batch_b.obs)
        torch.manual_seed(t)
        ma = a.update(batch_a)
        torch.manual_seed(t)
        mb = b.update(batch_b)
        assert {k: v.item() for k, v in ma.items()} == {k: v.item() for k, v in mb.items()}


# --- through the training loop ------------------------------------------------------------------------------
def tiny_train(dataset: str, algo: str, algo_params: dict, **kw: Any) -> TrainConfig:
    base = dict(algo=algo, dataset=dataset, seed=0, offline_steps=50, online_steps=50, eval_interval=50,
                eval_episodes=1, log_interval=10, checkpoint_interval=20, max_episode_steps=50, batch_size=32,
                algo_params=algo_params)
    base.update(kw)
    return TrainConfig(**base)


def metric_table(sink: MemorySink) -> dict[str, dict[int, float]]:
    return {k: dict(v) for k, v in sink.metrics.items() if not k.startswith("perf/")}


BAQ_TINY = {"base_params": SMALL, "behavior_hidden": [32, 32], "schedule_T": 40, "priority_anneal_steps": 50}


@pytest.mark.parametrize("base", ["iql", "cql"])
def test_train_switched_off_baq_equals_base(tiny_dataset_id: str, base: str) -> None:
    base_sink, baq_sink = MemorySink(), MemorySink()
    r_base = train(tiny_train(tiny_dataset_id, base, SMALL), base_sink)
    r_baq = train(tiny_train(tiny_dataset_id, "baq", {**BAQ_TINY, **OFF, "base": base}), baq_sink)
    ref, got = metric_table(base_sink), metric_table(baq_sink)
    assert "train/critic_loss" in ref and "eval/return" in ref and "online/episode_return" in ref
    assert all(got[k] == ref[k] for k in ref)
    assert r_base.evals == r_baq.evals


def test_train_offline_to_online_with_resume_mid_online(tiny_dataset_id: str, tmp_path: Path) -> None:
    params = {**BAQ_TINY, "schedule": "adaptive", "priority": "bc_divergence"}
    reference = MemorySink()
    train(tiny_train(tiny_dataset_id, "baq", params), reference, tmp_path / "ref")
    table = metric_table(reference)
    assert set(table["train/bc_loss"]) == set(range(10, 101, 10))
    assert all(table["train/kappa"][s] == 0.0 for s in (10, 50))  # offline: no weights by default
    assert all(0.0 < table["train/kappa"][s] <= 1.0 for s in (60, 100))
    assert all(table["train/is_weight_mean"][s] < 1.0 for s in (60, 100))
    # Adaptive: σ starts at 1 and follows the critics' disagreement; κ_t = κ₀·σ with κ₀ = 1.
    assert all(0.0 < table["train/sigma"][s] <= 1.0 for s in range(60, 101, 10))
    assert all(table["train/kappa"][s] == pytest.approx(table["train/sigma"][s]) for s in range(60, 101, 10))
    assert all(table["train/uncertainty"][s] > 0.0 for s in range(10, 101, 10))

    class Interrupt(Exception):
        pass

    def stop(info: dict) -> None:
        if info["step"] == 70:  # the last checkpoint was at 60, mid-online
            raise Interrupt

    first, second = MemorySink(), MemorySink()
    with pytest.raises(Interrupt):
        train(tiny_train(tiny_dataset_id, "baq", params), first, tmp_path / "run", progress=stop)
    train(tiny_train(tiny_dataset_id, "baq", params), second, tmp_path / "run")
    assert min(s for s, _ in second.metrics["train/critic_loss"]) > 60
    merged = {k: dict(first.metrics.get(k, [])) | dict(second.metrics.get(k, [])) for k in table}
    assert merged == table


# --- the ablation matrix's "everything off" variant is its IQL reference -----------------------------------
ABLATION = Path(__file__).parents[2] / "experiments" / "ablation_small.toml"


def ablation_cell(algo: str, variant: dict, seed: int, dataset: str) -> TrainConfig:
    """The matrix's own config of the cell (algo, sweep variant, seed), with every override and budget key, on
    `dataset` and a budget small enough for a test: 60 offline + 60 online steps, an eval every 30."""
    from suite.matrix import load_matrix

    matrix = load_matrix(ABLATION)
    overrides = {**matrix.overrides.get(algo, {}), **variant}
    cell = next(c for c in matrix.cells() if c.algo == algo and c.seed == seed and c.overrides == overrides)
    return dataclasses.replace(cell.config, dataset=dataset, offline_steps=60, online_steps=60, eval_interval=30,
                               eval_episodes=2, log_interval=10, checkpoint_interval=1_000,
                               max_episode_steps=50)


def test_ablation_everything_off_equals_iql_number_for_number(tiny_dataset_id: str) -> None:
    everything_off = ablation_cell("baq", OFF, 1, tiny_dataset_id)
    reference = ablation_cell("iql", {}, 1, tiny_dataset_id)
    assert everything_off.algo_params["schedule_T"] == 25_000 and everything_off.batch == reference.batch
    baq_sink, iql_sink = MemorySink(), MemorySink()
    r_baq, r_iql = train(everything_off, baq_sink), train(reference, iql_sink)
    got, ref = metric_table(baq_sink), metric_table(iql_sink)
    shared = {"train/critic_loss", "train/actor_loss", "train/value_loss", "eval/normalized_score",
              "online/episode_return"}
    assert shared <= set(ref) and set(ref) <= set(got)
    assert {k: got[k] for k in ref} == ref  # every IQL metric, bit for bit
    assert r_baq.evals == r_iql.evals and [e["step"] for e in r_iql.evals] == [30, 60, 90, 120]
    assert (r_baq.offline_score, r_baq.online_score) == (r_iql.offline_score, r_iql.online_score)
