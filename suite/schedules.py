"""Relaxation schedules σ(t) ∈ [0, 1] for BAQ's constraint strengths κ_t = κ₀·σ(t) and λ_t = λ₀·σ(t).

`t` counts online env steps (0 = the online start). Closed-form schedules depend only on `t`; the adaptive one
follows the critics' disagreement: σ = clip(EMA(U_t) / U_0, 0, 1), where U_0 is the first online value.
The formulas are ours (the BAQ paper, arXiv 2511.03695, describes the relaxation only in words): docs/baq.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from suite.errors import UserError

SCHEDULES = ("constant", "linear", "exponential", "cosine", "step", "adaptive")
# Below this the first disagreement U_0 is treated as zero (identical critics), and σ stays 1.
_TINY = 1e-12


def relaxation(kind: str, t: int, horizon: int, half_life: float) -> float:
    """σ(t) of a closed-form schedule; `horizon` is T (linear, cosine, step), `half_life` h (exponential)."""
    if t < 0:
        raise UserError(f"schedule step must be >= 0, got {t}")
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(0.0, 1.0 - t / horizon)
    if kind == "exponential":
        return 0.5 ** (t / half_life)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(t, horizon) / horizon))
    if kind == "step":
        return 1.0 if t < horizon else 0.0
    raise UserError(f"unknown closed-form schedule {kind!r}; accepted: {', '.join(SCHEDULES[:-1])}")


class Relaxation:
    """σ(t) for any schedule kind, with the adaptive schedule's running state (U_0 and the EMA of U_t).

    The adaptive state lives in 0-dim tensors on the critics' device, so observing U_t never syncs the host.
    """

    def __init__(
        self,
        kind: str,
        horizon: int = 100_000,
        half_life: float = 25_000.0,
        ema_rate: float = 0.005,
        device: torch.device | str = "cpu",
    ) -> None:
        if kind not in SCHEDULES:
            raise UserError(f"unknown schedule {kind!r}; accepted: {', '.join(SCHEDULES)}")
        if kind in ("linear", "cosine", "step") and horizon <= 0:
            raise UserError(f"schedule_T must be > 0 for the {kind} schedule, got {horizon}")
        if kind == "exponential" and not half_life > 0:
            raise UserError(f"half_life must be > 0 for the exponential schedule, got {half_life}")
        if kind == "adaptive" and not 0.0 < ema_rate <= 1.0:
            raise UserError(f"ema_rate must be in (0, 1], got {ema_rate}")
        self.kind, self.horizon, self.half_life, self.ema_rate = kind, horizon, half_life, ema_rate
        self.device = torch.device(device)
        self.u0: torch.Tensor | None = None
        self.ema: torch.Tensor | None = None

    @property
    def adaptive(self) -> bool:
        return self.kind == "adaptive"

    def observe(self, uncertainty: torch.Tensor) -> None:
        """Adaptive schedule: feed U_t (0-dim tensor). The first value becomes U_0 and the EMA's start."""
        u = uncertainty.detach().to(torch.float64)
        if self.u0 is None:
            self.u0, self.ema = u.clone(), u.clone()
        else:
            self.ema = torch.lerp(self.ema, u, self.ema_rate)  # EMA ← (1 − ρ)·EMA + ρ·U_t

    def sigma(self, t: int) -> float | torch.Tensor:
        """σ at online step t (a float; a 0-dim tensor for the adaptive schedule once U_0 is known)."""
        if not self.adaptive:
            return relaxation(self.kind, t, self.horizon, self.half_life)
        if self.u0 is None:
            return 1.0  # nothing observed yet: full constraint, as every schedule has at t = 0
        ratio = self.ema / self.u0.clamp_min(_TINY)
        return torch.where(self.u0 > _TINY, ratio.clamp(0.0, 1.0), torch.ones_like(ratio)).float()

    def state_dict(self) -> dict[str, Any]:
        return {"u0": self.u0, "ema": self.ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.u0, self.ema = (None if v is None else v.to(self.device) for v in (state["u0"], state["ema"]))
