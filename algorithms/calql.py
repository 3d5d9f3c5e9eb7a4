"""Calibrated Q-Learning, Cal-QL (Nakamoto, Zhai, Singh, Sobol Mark, Ma, Finn, Kumar & Levine, 2023,
arXiv 2303.05479).

CQL whose conservative term cannot push the Q-values of the policy's actions below the behaviour policy's value:
in the log-sum-exp over proposals, Q(s, ã) of every policy proposal (ã ~ π(·|s) and ã ~ π(·|s')) is replaced by
max(Q(s, ã), G(s)), where G(s) is the Monte-Carlo discounted return-to-go of the dataset transition (s, a), a
return of the reference (behaviour) policy μ, so that the learned Q stays calibrated, Q^π ≥ V^μ (paper, eq. 5.1;
the authors' `conservative_sac.py`, CORL `cal_ql.py`). Uniform proposals and the dataset action are not bounded.
Everything else, defaults included, is CQL's (algorithms/cql.py): Cal-QL is CQL with this one change, and the
paper publishes no locomotion settings of its own. Formulas and choices: docs/algorithms.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from algorithms.cql import CQL, CQLConfig
from suite.algorithm import Batch, Metrics, register
from suite.errors import UserError
from suite.returns import TIMEOUT_TAILS, returns_to_go


@dataclass(frozen=True)
class CalQLConfig(CQLConfig):
    # Online, the bound stays on: the authors' code computes the returns-to-go of every online trajectory too
    # (`TrajSampler(use_mc=True)`) and never turns `enable_calql` off; CORL's `cal_ql.py` instead switches the
    # calibration off at the online start (`switch_calibration()`). False gives CORL's variant.
    calibrate_online: bool = True
    # After the last step of an episode cut by a time limit: "zero" (CORL `get_return_to_go`, the discounted sum
    # stops at the cut) or "last_reward" (the authors' `calc_return_to_go(infinite_horizon=True)`, their Kitchen
    # setting: the last reward continues forever). suite/returns.py.
    rtg_timeout_tail: str = "zero"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rtg_timeout_tail not in TIMEOUT_TAILS:
            raise UserError(f"unknown rtg_timeout_tail {self.rtg_timeout_tail!r} for calql; accepted: "
                            f"{', '.join(TIMEOUT_TAILS)}")


@register("calql")
class CalQL(CQL):
    Config = CalQLConfig
    batch_fields = ("rtg",)

    def __init__(
        self, cfg: CalQLConfig, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__(cfg, obs_dim, act_dim, device)
        self.calibrating = True

    def returns_to_go(self, rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
        """G_t = r_t + γ(1 − d_t)·G_{t+1} per episode, with the discount γ of the TD backup and the rewards as
        the critic sees them (after `reward_transform`), as the authors compute them."""
        return returns_to_go(rewards, terminals, timeouts, self.cfg.gamma, self.cfg.rtg_timeout_tail)

    def on_online_start(self, buffer: object) -> None:
        super().on_online_start(buffer)
        self.calibrating = self.cfg.calibrate_online

    def bound_proposals(
        self, q_ood: torch.Tensor, batch: Batch
    ) -> tuple[torch.Tensor, Metrics]:
        """max(Q(s, ã), G(s)) for the 2·cql_n_actions policy proposals (the last ones of CQL's proposal axis,
        after the uniform ones); `bound_rate`: the share of policy proposals whose Q was below G(s), whether or
        not the bound is on (the authors' `bound_rate_cql_q*`)."""
        if batch.rtg is None:
            raise ValueError("calql needs batches with returns-to-go (Batch.rtg)")
        n = self.cfg.cql_n_actions
        uniform, policy = q_ood[..., :n], q_ood[..., n:]
        bound = batch.rtg.view(1, -1, 1)
        metrics = {"bound_rate": (policy < bound).float().mean()}
        if not self.calibrating:
            return q_ood, metrics
        return torch.cat([uniform, torch.maximum(policy, bound)], dim=-1), metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "calibrating": self.calibrating}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.calibrating = bool(state["calibrating"])
