"""The training config: budget, protocol, device and the algorithm's parameters of one run, with the resolved
form that MLflow records and that a matrix cell's hash is taken of."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from suite.algorithm import apply_overrides, config_dict, get_algorithm, make_config
from suite.data import canonical_dataset_id, check_dataset_id
from suite.errors import UserError
from suite.replay import Protocol


@dataclass
class TrainConfig:
    algo: str = "iql"
    dataset: str = "local:halfcheetah-medium"
    seed: int = 0
    # CORL's offline-to-online configs (`algorithms/finetune/*`, gym-mujoco): 1M offline + 1M online steps.
    offline_steps: int = 1_000_000
    online_steps: int = 1_000_000
    # Minibatch size; None: the algorithm's paper's (`Algorithm.batch_size`: 256 for IQL/CQL/AWAC/BAQ/Cal-QL as
    # in their papers and CORL, 1024 for ReBRAC). The resolved config records the number.
    batch_size: int | None = None
    utd: int = 1  # gradient updates per online env step (CORL's fine-tuning loop does one)
    # Fine-tuning protocol (suite/replay.py). Off by default, and then left out of the resolved config, so that
    # configs written before these options existed keep their identity (matrix cell hashes, checkpoint resume).
    # mixing_ratio: share of each online batch drawn from the offline data, the rest from online transitions
    # (RLPD's symmetric sampling: 0.5); None: one uniform buffer over both.
    mixing_ratio: float | None = None
    # retain_offline = false: online batches only from online transitions, after `warmup_steps` env steps of the
    # pre-trained policy without updates (WSRL).
    retain_offline: bool = True
    warmup_steps: int = 0
    critic_layernorm: bool = False  # LayerNorm in every suite.nets.CriticEnsemble (RLPD)
    eval_interval: int = 5_000  # CORL `eval_freq`
    eval_episodes: int = 10  # CORL `n_episodes`
    eval_at_start: bool = False
    log_interval: int = 1_000  # metrics are reduced (and `.item()`-ed) once per interval, never per step
    checkpoint_interval: int = 50_000
    normalize_obs: bool = True  # CORL `normalize: True`: z-score observations with the dataset's statistics
    max_episode_steps: int = 1_000  # Gymnasium MuJoCo's (and D4RL's) time limit
    env_id: str | None = None  # None: the dataset's own env
    device: str = "cpu"
    # Opt-in torch.compile of the networks (Algorithm.compile). Off by default: it costs tens of seconds of
    # compilation and measured no faster on one CPU core at these sizes (docs/performance.md).
    compile: bool = False
    algo_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.mixing_ratio, int) and not isinstance(self.mixing_ratio, bool):
            self.mixing_ratio = float(self.mixing_ratio)  # 1 in a TOML file means 1.0 (one identity, one hash)

    def validate(self) -> TrainConfig:
        for name in ("offline_steps", "online_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "utd", "eval_interval", "eval_episodes", "log_interval",
                     "checkpoint_interval", "max_episode_steps"):
            value = getattr(self, name)
            if (value is not None or name != "batch_size") and not (_is_int(value) and value > 0):
                raise UserError(f"{name} must be a positive integer, got {value}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise UserError(f"unknown device {self.device!r}; accepted: cpu, cuda, cuda:N")
        algo_cfg = self.algo_config()  # unknown algorithm / parameter -> UserError
        check_dataset_id(self.dataset)
        # One spelling per dataset, so `?a=1&b=2` and `?b=2&a=1` resume the same checkpoint and hash to one cell
        # (ids without variants are unchanged, and so are their cells).
        self.dataset = canonical_dataset_id(self.dataset)
        self.protocol().check(self.online_steps, self.algo, get_algorithm(self.algo).samples_by_priority(algo_cfg))
        return self

    def algo_config(self) -> Any:
        """The algorithm's config: its defaults, the reference's values for this dataset, then `algo_params`."""
        defaults = get_algorithm(self.algo).dataset_defaults(self.dataset)
        return make_config(self.algo, {**defaults, **self.algo_params})

    @property
    def batch(self) -> int:
        """The minibatch size: `batch_size`, or the algorithm's paper's when unset."""
        return self.batch_size if self.batch_size is not None else get_algorithm(self.algo).batch_size

    def protocol(self) -> Protocol:
        return Protocol(self.mixing_ratio, self.retain_offline, self.warmup_steps)

    def resolved(self) -> dict[str, Any]:
        """The whole config with the algorithm's defaults filled in (what MLflow records)."""
        d = dataclasses.asdict(self)
        d["algo_params"] = config_dict(self.algo_config())
        d["batch_size"] = self.batch
        # Options recorded only when on, so that configs written before they existed keep their identity
        # (matrix cell hashes, checkpoint resume).
        for key, off in (("compile", False), ("mixing_ratio", None), ("retain_offline", True),
                         ("warmup_steps", 0), ("critic_layernorm", False)):
            if d[key] == off:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown training key(s) {sorted(unknown)}; accepted: {', '.join(sorted(known))}")
        return apply_overrides(cls(), d, where="training config")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
