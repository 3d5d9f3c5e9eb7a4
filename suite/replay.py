"""The training loop's replay: the offline data and the online transitions in one buffer, and the fine-tuning
protocol that decides what each online batch is drawn from.

Protocols (`Protocol`, from the training config's keys; docs/architecture.md):
- default (`mixing_ratio` unset, `retain_offline` true): every batch uniform over the whole buffer, the offline
  data and the online transitions so far (CORL's fine-tuning loops for IQL, CQL and AWAC);
- `mixing_ratio = f`: each online batch takes ⌊B·f⌋ transitions uniformly from the offline data and the rest
  uniformly from the online transitions (RLPD's symmetric sampling is f = 0.5; Cal-QL's and ReBRAC's references
  fine-tune with 0.5);
- `retain_offline = false`: online batches come from the online transitions only, and the first `warmup_steps`
  online env steps only collect, with the pre-trained policy, before any update (WSRL: no offline data retained,
  a warm-up seeds the online buffer).
`utd` updates follow every online env step in each of them (none during a warm-up).

The offline part of the buffer stays in memory in every protocol (the offline phase and BAQ's switch read it);
`retain_offline = false` only keeps online batches out of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from suite.algorithm import Algorithm, Batch
from suite.buffer import ReplayBuffer
from suite.errors import UserError
from suite.returns import next_actions


@dataclass(frozen=True)
class Protocol:
    """How online batches are drawn (validated by the training config)."""

    mixing_ratio: float | None = None
    retain_offline: bool = True
    warmup_steps: int = 0

    @property
    def offline_fraction(self) -> float | None:
        """Share of an online batch drawn from the offline data; None: uniform over the whole buffer."""
        if not self.retain_offline:
            return 0.0
        return self.mixing_ratio

    def check(self, online_steps: int, algo: str, prioritized: bool) -> None:
        """The keys alone and together (`prioritized`: `algo` installs its own sampler online); each problem is a
        one-line UserError naming the value and what is accepted."""
        ratio, warmup = self.mixing_ratio, self.warmup_steps
        if ratio is not None and not (isinstance(ratio, float) and 0.0 <= ratio <= 1.0):
            raise UserError(f"mixing_ratio must be a number in [0, 1] (or unset: one uniform buffer), got {ratio!r}")
        if not isinstance(self.retain_offline, bool):
            raise UserError(f"retain_offline must be true or false, got {self.retain_offline!r}")
        if not (isinstance(warmup, int) and not isinstance(warmup, bool) and 0 <= warmup <= online_steps):
            raise UserError(f"warmup_steps must be an integer in [0, online_steps = {online_steps}], got {warmup!r}")
        if warmup and self.retain_offline:
            raise UserError(f"warmup_steps = {warmup} needs retain_offline = false (WSRL's warm-up seeds an online "
                            "buffer without the offline data)")
        if ratio is not None and not self.retain_offline:
            raise UserError(f"mixing_ratio = {ratio} draws from the offline data, which retain_offline = false "
                            "keeps out of online batches; unset one of them")
        if prioritized and (ratio is not None or not self.retain_offline):
            # BAQ's BC-divergence priorities already decide how much offline and how much online data a batch
            # holds (online pairs score higher); a fixed share would override that decision.
            raise UserError(f"{algo}'s prioritized replay decides itself how much offline and online data each "
                            "batch holds, so it cannot be combined with mixing_ratio or retain_offline = false; "
                            "set priority = \"none\" to use them")

    def updates(self, online_step: int, utd: int) -> int:
        """Gradient updates after online env step `online_step` (from 1): none during the warm-up."""
        return 0 if online_step <= self.warmup_steps else utd


class Replay:
    """One buffer holding the offline data (indices [0, n_offline)) and then the online transitions, with the
    algorithm's extra fields (`Algorithm.batch_fields`): returns-to-go computed once for the offline data and
    per finished episode online; the data's next action offline and the policy's deterministic next action
    online (CORL's ReBRAC fine-tuning stores π(s'))."""

    def __init__(
        self, algo: Algorithm, capacity: int, obs_dim: int, act_dim: int, device: torch.device,
        protocol: Protocol,
    ) -> None:
        self.algo, self.protocol, self.fields = algo, protocol, algo.batch_fields
        self.buffer = ReplayBuffer(capacity, obs_dim, act_dim, device, extras=self.fields)
        self.n_offline = 0

    def load_offline(
        self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray, terminals: np.ndarray,
        timeouts: np.ndarray,
    ) -> None:
        """The offline data (observations normalised, rewards transformed), with the extra fields it needs."""
        extras = {}
        if "rtg" in self.fields:
            extras["rtg"] = self.algo.returns_to_go(rew, terminals, timeouts)
        if "next_act" in self.fields:
            extras["next_act"] = next_actions(act, terminals, timeouts)
        self.buffer.add_batch(obs, act, rew, next_obs, terminals, **extras)
        self.n_offline = len(obs)

    def sample(self, batch_size: int, generator: torch.Generator, online: bool) -> Batch:
        fraction = self.protocol.offline_fraction if online else None
        if fraction is None:
            return self.buffer.sample(batch_size, generator)
        return self.buffer.sample_split(batch_size, generator, self.n_offline, fraction)

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, terminated: bool) -> None:
        """One online transition (observations normalised, reward transformed)."""
        extras = {}
        if "next_act" in self.fields:
            next_obs_t = torch.as_tensor(next_obs, device=self.buffer.device).unsqueeze(0)
            extras["next_act"] = self.algo.act(next_obs_t, deterministic=True)[0]
        self.buffer.add(obs, act, rew, next_obs, terminated, **extras)

    def end_episode(self, length: int, terminated: bool) -> None:
        """An online episode of `length` transitions (the last ones written) ended: their returns-to-go are
        known now (until then they are −∞, a bound that never binds)."""
        if "rtg" not in self.fields or length <= 0:
            return
        idx = self.buffer.last_indices(length)
        ends = np.zeros(length, dtype=np.float32)
        ends[-1] = 1.0
        terminals, timeouts = (ends, 0.0 * ends) if terminated else (0.0 * ends, ends)
        rtg = self.algo.returns_to_go(self.buffer.rew[idx].cpu().numpy(), terminals, timeouts)
        self.buffer.rtg[idx] = torch.as_tensor(rtg, device=self.buffer.device)
