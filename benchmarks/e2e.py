"""The training loop's end-to-end overhead: a short offline→online `suite.train.train` run against the same
number of bare updates, split into evaluation, env steps, checkpoints, tracking, set-up (mostly the dataset
load) and final outputs, and read off the run alone (its time outside sampling and updates over their time)."""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import training_process
from suite.algorithm import get_algorithm, make_config
from suite.buffer import ReplayBuffer


@dataclass(frozen=True)
class E2EConfig:
    """A short offline→online run. The intervals keep the default loop's densities where a 3,000-step run
    can: 2 eval episodes per 1,000 steps = TrainConfig's 10 per 5,000, logging every 1,000 steps as the
    default; checkpoints every 1,250 steps (one offline, one online) are 40× denser than the default
    50,000."""

    algo: str = "baq"
    dataset: str = "local:hopper-medium-replay"
    offline_steps: int = 2_000
    online_steps: int = 1_000
    eval_interval: int = 1_000
    eval_episodes: int = 2
    log_interval: int = 1_000
    checkpoint_interval: int = 1_250
    seed: int = 0


class TimedSink:
    """Forwards every call to `sink` and adds up the wall seconds spent in each method."""

    def __init__(self, sink: Any) -> None:
        self.sink, self.run_id = sink, sink.run_id
        self.seconds: dict[str, float] = defaultdict(float)

    def _call(self, method: str, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return getattr(self.sink, method)(*args)
        finally:
            self.seconds[method] += time.perf_counter() - start

    def log_params(self, params: dict[str, Any]) -> None:
        self._call("log_params", params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("set_tags", tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", path, artifact_path)

    def flush(self) -> None:
        self._call("flush")

    def end(self, status: str, error: str | None = None) -> None:
        self._call("end", status, error)


def _timed(func: Callable[..., Any], seconds: dict[str, float], key: str,
           when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not when(*args, **kwargs):
            return func(*args, **kwargs)
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start

    return wrapper


def bare_updates(cfg: E2EConfig) -> dict[str, float]:
    """The run's gradient updates alone: same algorithm, data, batch and sampling, no env, eval, logging or
    checkpoints. The offline→online hook runs between the two phases (it is algorithm work: BAQ scores the
    offline data there)."""
    from suite.data import load_dataset
    from suite.train import TrainConfig

    training_process()
    train_cfg = TrainConfig(algo=cfg.algo, dataset=cfg.dataset)
    torch.manual_seed(cfg.seed)
    dataset = load_dataset(cfg.dataset)
    algo = get_algorithm(cfg.algo)(make_config(cfg.algo), dataset.obs_dim, dataset.act_dim)
    scale, bias = algo.reward_transform(dataset.episode_returns())
    mean, std = dataset.observations.mean(0), dataset.observations.std(0) + 1e-3
    buffer = ReplayBuffer(len(dataset) + cfg.online_steps, dataset.obs_dim, dataset.act_dim)
    buffer.add_batch((dataset.observations - mean) / std, dataset.actions, scale * dataset.rewards + bias,
                     (dataset.next_observations - mean) / std, dataset.terminals)
    gen = torch.Generator().manual_seed(cfg.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for steps in (cfg.offline_steps, cfg.online_steps):
        for _ in range(steps):
            algo.update(buffer.sample(train_cfg.batch, gen))
        if steps == cfg.offline_steps:
            algo.on_online_start(buffer)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def run_with_timers(cfg: E2EConfig, workdir: Path, tracking: str = "mlflow") -> dict[str, Any]:
    """One training run driven here through `suite.training_run.TrainingRun`'s named steps, as `suite.train.train`
    drives it, with a timer around each: set-up, env steps, sampling and updates (the offline→online hook
    counts as update work: BAQ scores the offline data there), evaluation, checkpoints, final outputs, and
    every tracking call (the sink is created before the clock starts)."""
    from suite.tracking import MemorySink, MLflowSink
    from suite.train import TrainConfig, TrainingRun

    training_process()
    inner = (MLflowSink("throughput", tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}") if tracking == "mlflow"
             else MemorySink())
    sink = TimedSink(inner)
    seconds: dict[str, float] = defaultdict(float)
    train_cfg = TrainConfig(
        algo=cfg.algo, dataset=cfg.dataset, seed=cfg.seed, offline_steps=cfg.offline_steps,
        online_steps=cfg.online_steps, eval_interval=cfg.eval_interval, eval_episodes=cfg.eval_episodes,
        log_interval=cfg.log_interval, checkpoint_interval=cfg.checkpoint_interval)
    wall, cpu = time.perf_counter(), time.process_time()
    run = _timed(TrainingRun, seconds, "set_up")(train_cfg, sink, workdir / "run")
    seconds["set_up"] -= sum(sink.seconds.values())  # its params and tags are counted under tracking
    # The run's own methods, timed on this instance: end_step calls them through the instance.
    run.evaluate = _timed(run.evaluate, seconds, "evaluation")
    run.save_checkpoint = _timed(run.save_checkpoint, seconds, "checkpoints")
    run.algo.on_online_start = _timed(run.algo.on_online_start, seconds, "switch")  # inside begin_step
    while not run.done:
        start = time.perf_counter()
        n_updates = run.begin_step()
        seconds["env_steps"] += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(n_updates):
            run.record(run.algo.update(run.next_batch()))
        seconds["updates"] += time.perf_counter() - start
        run.end_step()
    _timed(run.finish, seconds, "final_outputs")()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sink.end("FINISHED")
    seconds["env_steps"] -= seconds["switch"]
    seconds["updates"] += seconds.pop("switch")
    seconds["final_outputs"] -= sink.seconds["log_artifact"]  # artifacts are counted under tracking
    return {"wall": wall, "cpu": cpu, "parts": dict(seconds), "sink": dict(sink.seconds),
            "flush_seconds": getattr(inner, "flush_seconds", None)}


def end_to_end(cfg: E2EConfig, tracking: str = "mlflow") -> dict[str, Any]:
    """Run wall time over bare-update time (measured before and after the run, averaged), with a breakdown."""
    with tempfile.TemporaryDirectory(prefix="baq-throughput-") as tmp:
        before = bare_updates(cfg)
        run = run_with_timers(cfg, Path(tmp), tracking)
        after = bare_updates(cfg)
    bare = {k: (before[k] + after[k]) / 2 for k in ("wall", "cpu")}
    parts, sink = run["parts"], run["sink"]
    tracking_s = sum(v for k, v in sink.items() if k != "end")
    metrics_s = sink.get("log_metrics", 0.0) + sink.get("flush", 0.0)
    one_off = (parts.get("set_up", 0.0) + parts.get("final_outputs", 0.0) + sink.get("log_params", 0.0)
               + sink.get("set_tags", 0.0) + sink.get("log_artifact", 0.0))
    breakdown = {
        "evaluation": parts.get("evaluation", 0.0), "env_steps": parts.get("env_steps", 0.0),
        "checkpoints": parts.get("checkpoints", 0.0), "tracking": tracking_s,
        "set_up": parts.get("set_up", 0.0), "final_outputs": parts.get("final_outputs", 0.0),
    }
    breakdown["other"] = run["wall"] - bare["wall"] - sum(breakdown.values())
    in_run = parts.get("updates", 0.0)
    return {
        "config": cfg.__dict__, "run_wall_s": run["wall"], "run_cpu_s": run["cpu"],
        "bare_wall_s": bare["wall"], "bare_cpu_s": bare["cpu"], "bare_repeats_wall_s": [before["wall"],
                                                                                          after["wall"]],
        "overhead": run["wall"] / bare["wall"] - 1, "overhead_cpu": run["cpu"] / bare["cpu"] - 1,
        "overhead_recurring": (run["wall"] - one_off) / bare["wall"] - 1,
        "updates_in_run_s": in_run, "overhead_in_run": run["wall"] / in_run - 1 if in_run else None,
        "metrics_logging_share": metrics_s / run["wall"], "tracking_share": tracking_s / run["wall"],
        "flush_seconds": run["flush_seconds"], "breakdown_s": breakdown,
    }


def e2e_report(e2e: dict[str, Any]) -> str:
    c = e2e["config"]
    lines = [
        f"end to end: {c['algo']} on {c['dataset']}, {c['offline_steps']} offline + "
        f"{c['online_steps']} online steps: run {e2e['run_wall_s']:.1f} s wall vs "
        f"{e2e['bare_wall_s']:.1f} s of bare updates "
        f"(repeats {', '.join(f'{s:.1f}' for s in e2e['bare_repeats_wall_s'])} s)",
        f"  overhead {100 * e2e['overhead']:.1f}% wall, {100 * e2e['overhead_cpu']:.1f}% CPU time; "
        "without one-off costs (set-up, params/tags, final outputs) "
        f"{100 * e2e['overhead_recurring']:.1f}%",
        f"  in the same run: {e2e['updates_in_run_s']:.1f} s of sampling, updates and the offline→online hook; "
        f"everything else {100 * e2e['overhead_in_run']:.1f}% on top of them",
        f"  metrics logging {100 * e2e['metrics_logging_share']:.2f}% of the run (MLflow flush_seconds "
        f"{e2e['flush_seconds'] if e2e['flush_seconds'] is None else round(e2e['flush_seconds'], 3)} s); "
        f"all tracking calls {100 * e2e['tracking_share']:.2f}%",
        "  breakdown (s): " + ", ".join(f"{k} {v:.2f}" for k, v in e2e["breakdown_s"].items()),
    ]
    return "\n".join(lines)
