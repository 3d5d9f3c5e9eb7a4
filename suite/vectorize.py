"""One gradient step for N seeds of one algorithm as a single batched network (`baq train --vectorize-seeds N`).

Each seed keeps its own `Algorithm` object, so its initialisation, replay buffer, env, RNG, checkpoint and MLflow
run are exactly those of a separate run. Only the update is shared: every parameter and Adam moment of the N
copies lives in one stacked tensor of shape (N, ...), each seed's parameters and moments are views of their
slice, and per optimiser step of the update one `torch.func.vmap` of the loss's gradient plus one fused Adam
step update all N at once. On a GPU, where 2×256 networks leave the device idle, that turns N small kernels per
layer into one.

Requirements (`Algorithm.is_vectorizable(cfg)`): the update is its `loss_steps()` in order
(IQL and CQL: one summed loss; AWAC: the critic's step, then the actor's; BAQ: its base's step with the
behaviour model's fit added offline), each with the optimisers of the parameters it trains, then `after_step()`;
and what its losses read besides the networks and the batch comes from `update_inputs`: the random numbers,
drawn per seed from that seed's RNG before the batched step (vmap itself is told to refuse any draw, since a
draw under vmap would share or split one stream and the result would no longer equal separate runs), and the
seed's own scalars (BAQ's κ_t, λ_t, divergence scale).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from suite import stop
from suite.algorithm import Algorithm, Batch, LossContext, Metrics, UpdateInputs, get_algorithm
from suite.errors import UserError
from suite.tracking import MetricsSink
from suite.train import Progress, TrainConfig, TrainingRun, TrainResult


class _LossModule(nn.Module):
    """Holds an algorithm's networks so that `functional_call` can swap in one seed's slice of every parameter
    while `algo.loss` runs (the algorithm's own attributes point at the same modules)."""

    def __init__(self, algo: Algorithm) -> None:
        super().__init__()
        modules = {name.replace(".", "__"): m for name, m in algo.modules().items() if isinstance(m, nn.Module)}
        self.nets = nn.ModuleDict(modules)
        object.__setattr__(self, "algo", algo)  # not a submodule: its networks are already in `nets`

    def forward(self, batch: Batch, inputs: UpdateInputs, step: int) -> tuple[torch.Tensor, Metrics]:
        total, metrics = self.algo.loss_steps()[step].loss(batch, LossContext(inputs))
        return total, {k: v.detach() for k, v in metrics.items()}


class _StackedStep(NamedTuple):
    """One of the update's loss steps for all seeds: the vmapped gradient of its loss with respect to
    `trainable`, every other parameter held as `frozen`, and the stacked optimisers."""

    grad: Callable
    trainable: dict[str, torch.Tensor]
    frozen: dict[str, torch.Tensor]
    optims: tuple[torch.optim.Optimizer, ...]


class SeedsOutOfStep(UserError):
    """The seeds' checkpoints are at different steps: they cannot share one update until they are level."""


def check_vectorizable(algo_cls: type[Algorithm], algo_cfg: Any) -> None:
    if not algo_cls.is_vectorizable(algo_cfg):
        raise UserError(
            f"--vectorize-seeds is not available for algorithm {algo_cls.name!r} with this config; accepted: "
            "iql (without actor_dropout), cql, calql, awac, baq on a base among these (updates made of loss steps "
            "whose random numbers are drawn up front; rebrac's delayed actor steps are not)"
        )


class SeedVectorizedStep:
    """`step(batches)` performs, for N algorithms of one class and config, the update each would perform on its
    batch: per loss step one vmapped backward and one step of each stacked optimiser; returns each seed's
    metrics."""

    def __init__(self, algos: Sequence[Algorithm]) -> None:
        if not algos:
            raise ValueError("no algorithms to vectorize")
        for algo in algos:
            check_vectorizable(type(algo), algo.cfg)
        self.algos = list(algos)
        self._build()

    def _layout(self) -> tuple:
        """What the stacked state is built from: the networks and each loss step's optimisers. BAQ changes it at
        the online switch (its behaviour model freezes and leaves the update), and `step` then rebuilds."""
        algo = self.algos[0]
        return (tuple((k, id(m)) for k, m in algo.modules().items()),
                tuple(tuple(id(o) for o in step.optims) for step in algo.loss_steps()))

    def _build(self) -> None:
        holders = [_LossModule(a) for a in self.algos]
        self._holder = holders[0]
        named = [dict(h.named_parameters()) for h in holders]
        named_buffers = [dict(h.named_buffers()) for h in holders]
        names = list(named[0])
        if any(list(n) != names for n in named):
            raise ValueError("the algorithms to vectorize have different networks")
        self.params = {k: torch.stack([n[k].detach() for n in named]) for k in names}
        self.buffers = {k: torch.stack([b[k] for b in named_buffers]) for k in named_buffers[0]}
        # Every seed's parameters become views of its slice: the stacked optimiser step, target updates done
        # through the seeds' own modules, evaluation and checkpoints all see one and the same numbers.
        for i, (params, bufs) in enumerate(zip(named, named_buffers, strict=True)):
            for k, p in params.items():
                p.data = self.params[k][i]
            for k, b in bufs.items():
                b.data = self.buffers[k][i]
        # (name, the seeds' optimisers, the seeds' parameters, the stacked optimiser) per trained parameter
        self._pairs: list[tuple[str, list[torch.optim.Optimizer], list[nn.Parameter], torch.optim.Optimizer]] = []
        self._shared: set[str] = set()  # parameters whose moments the seeds' optimisers already view
        self.steps = [self._stacked_step(index, named[0]) for index in range(len(self.algos[0].loss_steps()))]
        trained = [k for step in self.steps for k in step.trainable]
        twice = sorted({k for k in trained if trained.count(k) > 1})
        untrained = [k for k in names if named[0][k].requires_grad and k not in trained]
        if twice or untrained:
            raise ValueError(f"every trainable parameter needs exactly one optimiser: twice {twice}, none {untrained}")
        self._load_seed_moments()
        self.layout = self._layout()

    def _stacked_step(self, index: int, first: dict[str, nn.Parameter]) -> _StackedStep:
        """Loss step `index` for all seeds: one stacked optimiser per optimiser of the step (same groups and
        settings as seed 0's) and the vmapped gradient over the parameters they train."""
        seed_steps = [a.loss_steps()[index] for a in self.algos]
        name_of = {id(p): k for k, p in first.items()}
        stacked_optims, keys = [], []
        for o_index, optim in enumerate(seed_steps[0].optims):
            seed_optims = [s.optims[o_index] for s in seed_steps]
            groups, pairs = [], []
            for g_index, group in enumerate(optim.param_groups):
                if any(id(p) not in name_of for p in group["params"]):
                    raise ValueError(f"optimiser {o_index} of loss step {index} trains a parameter outside the "
                                     "algorithm's modules")
                group_keys = [name_of[id(p)] for p in group["params"]]
                groups.append({**{k: v for k, v in group.items() if k != "params"},
                               "params": [self.params[k] for k in group_keys]})
                pairs += [(key, [o.param_groups[g_index]["params"][j] for o in seed_optims])
                          for j, key in enumerate(group_keys)]
            stacked = type(optim)(groups, **optim.defaults)
            self._pairs += [(key, seed_optims, seed_params, stacked) for key, seed_params in pairs]
            stacked_optims.append(stacked)
            keys += [key for key, _ in pairs]
        trainable = {key: self.params[key] for key in keys}
        frozen = {k: t for k, t in self.params.items() if k not in trainable}
        grad = torch.func.vmap(torch.func.grad(partial(self._loss, index), has_aux=True), randomness="error")
        return _StackedStep(grad, trainable, frozen, tuple(stacked_optims))

    def _load_seed_moments(self) -> None:
        """After a resume the seeds' optimisers hold their moments: stack them into the shared optimisers."""
        for key, optims, params, stacked in self._pairs:
            states = [o.state.get(p) for o, p in zip(optims, params, strict=True)]
            if not any(states):
                continue
            if not all(states) or any(float(s["step"]) != float(states[0]["step"]) for s in states):
                raise ValueError("the seeds' optimisers are at different steps")
            stacked.state[self.params[key]] = {
                "step": states[0]["step"].clone(),
                **{m: torch.stack([s[m] for s in states]) for m in states[0] if m != "step"},
            }
        self._share_moments()

    def _share_moments(self) -> None:
        """Seed i's optimiser state becomes views of slice i (Adam updates its moments in place), so a seed's
        checkpoint saves its own moments and resumes as a separate run would. Moments appear at a parameter's
        first step; each is shared once."""
        for key, optims, params, stacked in self._pairs:
            state = stacked.state.get(self.params[key])
            if key in self._shared or not state:
                continue
            for i, (o, p) in enumerate(zip(optims, params, strict=True)):
                o.state[p] = {m: (t if m == "step" else t[i]) for m, t in state.items()}
            self._shared.add(key)

    def _loss(
        self, step: int, trainable: dict[str, torch.Tensor], frozen: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor], parts: dict[str, torch.Tensor], inputs: UpdateInputs,
    ) -> tuple[torch.Tensor, Metrics]:
        return torch.func.functional_call(self._holder, ({**trainable, **frozen}, buffers),
                                          (Batch(**parts), inputs, step))

    def step(self, batches: Sequence[Batch], inputs: Sequence[UpdateInputs] | None = None) -> list[Metrics]:
        """One update of every seed on its batch. `inputs`: each seed's `update_inputs(batch)`, taken with its own
        RNG and state (default: taken here, one seed after another, with the global RNG)."""
        if len(batches) != len(self.algos):
            raise ValueError(f"expected {len(self.algos)} batches, got {len(batches)}")
        if self._layout() != self.layout:
            self._build()
        if inputs is None:
            inputs = [a.update_inputs(b) for a, b in zip(self.algos, batches, strict=True)]
        # Every field the batches carry rides along (importance weights, returns-to-go, next actions), except
        # `index`, which no loss reads.
        present = [tuple(k for k in Batch._fields if k != "index" and getattr(b, k) is not None) for b in batches]
        if len(set(present)) > 1:
            raise ValueError("the seeds' batches carry different fields (e.g. only some are prioritized)")
        parts = {k: torch.stack([getattr(b, k) for b in batches]) for k in present[0]}
        stacked_inputs = {k: torch.stack([n[k] for n in inputs]) for k in inputs[0]}
        metrics: Metrics = {}
        for step in self.steps:  # in order: a later step's loss sees the parameters an earlier one changed
            grads, step_metrics = step.grad(step.trainable, step.frozen, self.buffers, parts, stacked_inputs)
            for k, g in grads.items():
                self.params[k].grad = g
            for optim in step.optims:
                optim.step()
                optim.zero_grad(set_to_none=True)
            metrics.update(step_metrics)
        if len(self._shared) < len(self._pairs):
            self._share_moments()
        for algo in self.algos:
            algo.after_step()
        return [{k: v[i] for k, v in metrics.items()} for i in range(len(self.algos))]


def check_vectorizable_config(cfg: TrainConfig) -> None:
    """UserError unless `cfg`'s algorithm can be seed-vectorized (read off its config)."""
    if cfg.compile:
        raise UserError("--vectorize-seeds and --compile cannot be combined (vmap runs the eager networks)")
    check_vectorizable(get_algorithm(cfg.algo), cfg.algo_config())


class _RngSlot:
    """One run's global torch RNG, swapped in while that run's loop advances (env actions, initialisation)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.state: tuple[torch.Tensor, torch.Tensor | None] | None = None  # None: not entered yet

    def _get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.cuda else None

    def _set(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def __enter__(self) -> None:
        if self.state is not None:
            self._set(self.state)

    def __exit__(self, *exc: object) -> None:
        self.state = self._get()


def train_vectorized(
    cfgs: Sequence[TrainConfig],
    sinks: Sequence[MetricsSink],
    run_dirs: Sequence[Path | None],
    progress: Sequence[Progress | None] | None = None,
) -> list[TrainResult]:
    """Train configs that differ only in `seed` in lockstep, one batched update for all of them per step.
    Each seed's metrics, evaluations, checkpoints and outputs are those of `train(cfg)` up to float rounding
    (the batched matmuls sum in another order; tests/suite/test_vectorize.py bounds the difference)."""
    seeds = [c.seed for c in cfgs]
    if len(cfgs) < 2:
        raise UserError(f"--vectorize-seeds needs at least 2 seeds, got {len(cfgs)}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--vectorize-seeds needs distinct seeds, got {seeds}")
    shared = [{**c.resolved(), "seed": None} for c in cfgs]
    if any(s != shared[0] for s in shared):
        raise UserError("seed-vectorized runs must share every setting but the seed")
    check_vectorizable_config(cfgs[0])
    slots = [_RngSlot(torch.device(c.device)) for c in cfgs]
    progress = progress or [None] * len(cfgs)
    # One stop decision per lockstep step, read by every seed's run: a signal landing between two seeds' checks
    # must not leave their checkpoints at different steps.
    stop_now = [False]
    runs = []
    for cfg, sink, run_dir, report, slot in zip(cfgs, sinks, run_dirs, progress, slots, strict=True):
        with slot:
            runs.append(TrainingRun(cfg, sink, run_dir, report, stop_requested=lambda: stop_now[0]))
    starts = [run.step for run in runs]
    if len(set(starts)) > 1:
        raise SeedsOutOfStep(f"the seeds' checkpoints are at different steps {starts} (a kill between their "
                             "writes); resume the seeds separately up to one step, or delete the checkpoints")
    vectorized = SeedVectorizedStep([run.algo for run in runs])
    while not runs[0].done:
        stop_now[0] = stop.requested()
        _lockstep(runs, slots, vectorized)
    results = []
    for run, slot in zip(runs, slots, strict=True):
        with slot:
            results.append(run.finish())
    return results


def _lockstep(runs: list[TrainingRun], slots: list[_RngSlot], vectorized: SeedVectorizedStep) -> None:
    """One step of every seed's run, their updates as one batched update; a stop is raised once every seed has
    checkpointed."""
    counts = []
    for run, slot in zip(runs, slots, strict=True):
        with slot:
            counts.append(run.begin_step())
    if len(set(counts)) > 1:
        raise RuntimeError("seed-vectorized runs fell out of lockstep")
    for _ in range(counts[0]):
        batches, inputs = [], []
        for run, slot in zip(runs, slots, strict=True):
            with slot:
                batches.append(run.next_batch())
                inputs.append(run.algo.update_inputs(batches[-1]))  # the draws a separate run would make
        for run, metrics in zip(runs, vectorized.step(batches, inputs), strict=True):
            run.record(metrics)
    stopped = []
    for run, slot in zip(runs, slots, strict=True):
        with slot:
            try:
                run.end_step()
            except stop.StopRequested as request:  # this seed has checkpointed; let the others do so too
                stopped.append(request)
    if stopped:
        raise stopped[0]
