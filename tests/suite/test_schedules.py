"""Relaxation schedules σ(t): values at chosen steps, the adaptive EMA, state round trip, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from suite.errors import UserError
from suite.schedules import Relaxation, relaxation


def test_constant_is_one_everywhere() -> None:
    assert [relaxation("constant", t, 10, 5.0) for t in (0, 7, 10**9)] == [1.0, 1.0, 1.0]


def test_linear_at_0_half_T_T_2T() -> None:
    values = [relaxation("linear", t, 1000, 1.0) for t in (0, 500, 1000, 2000)]
    assert values == [1.0, 0.5, 0.0, 0.0]
    assert relaxation("linear", 250, 1000, 1.0) == pytest.approx(0.75)


def test_exponential_halves_every_half_life() -> None:
    assert relaxation("exponential", 0, 1, 300.0) == 1.0
    assert relaxation("exponential", 300, 1, 300.0) == pytest.approx(0.5)
    assert relaxation("exponential", 900, 1, 300.0) == pytest.approx(0.125)
    assert relaxation("exponential", 150, 1, 300.0) == pytest.approx(1 / math.sqrt(2))


def test_cosine_at_0_quarter_half_T_and_beyond() -> None:
    assert relaxation("cosine", 0, 400, 1.0) == pytest.approx(1.0)
    assert relaxation("cosine", 100, 400, 1.0) == pytest.approx(0.5 * (1 + math.sqrt(0.5)))
    assert relaxation("cosine", 200, 400, 1.0) == pytest.approx(0.5)
    assert relaxation("cosine", 400, 400, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert relaxation("cosine", 5000, 400, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_step_drops_to_zero_at_T() -> None:
    assert [relaxation("step", t, 50, 1.0) for t in (0, 49, 50, 51)] == [1.0, 1.0, 0.0, 0.0]


def test_relaxation_object_matches_closed_form() -> None:
    sched = Relaxation("cosine", horizon=400)
    assert sched.sigma(200) == pytest.approx(0.5)
    assert not sched.adaptive


def test_adaptive_follows_ema_of_disagreement_over_first_value() -> None:
    rho = 0.5
    sched = Relaxation("adaptive", ema_rate=rho)
    assert sched.sigma(0) == 1.0  # nothing observed yet
    scripted = [2.0, 1.0, 1.0, 4.0, 0.0]
    ema, expected = None, []
    for u in scripted:  # by hand: EMA_0 = U_0, EMA ← (1 − ρ)·EMA + ρ·U, σ = clip(EMA/U_0, 0, 1)
        ema = u if ema is None else (1 - rho) * ema + rho * u
        expected.append(min(max(ema / scripted[0], 0.0), 1.0))
    got = []
    for t, u in enumerate(scripted, start=1):
        sched.observe(torch.tensor(u))
        got.append(float(sched.sigma(t)))
    assert expected == pytest.approx([1.0, 0.75, 0.625, 1.0, 0.65625])  # the hand values themselves
    assert got == pytest.approx(expected)


def test_adaptive_with_zero_initial_disagreement_stays_one() -> None:
    sched = Relaxation("adaptive", ema_rate=0.1)
    sched.observe(torch.tensor(0.0))
    sched.observe(torch.tensor(3.0))
    assert float(sched.sigma(2)) == 1.0


def test_adaptive_state_round_trip() -> None:
    a = Relaxation("adaptive", ema_rate=0.2)
    for u in (3.0, 1.0, 2.0):
        a.observe(torch.tensor(u))
    b = Relaxation("adaptive", ema_rate=0.2)
    b.load_state_dict(a.state_dict())
    a.observe(torch.tensor(0.5))
    b.observe(torch.tensor(0.5))
    assert float(a.sigma(4)) == float(b.sigma(4))
    assert float(a.sigma(4)) == pytest.approx(((0.8 * (0.8 * 3.0 + 0.2 * 1.0) + 0.4) * 0.8 + 0.1) / 3.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "sigmoid"}, "unknown schedule 'sigmoid'"),
    ({"kind": "linear", "horizon": 0}, "schedule_T"),
    ({"kind": "exponential", "half_life": -1.0}, "half_life"),
    ({"kind": "adaptive", "ema_rate": 0.0}, "ema_rate"),
])
def test_bad_schedule_parameters_are_user_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        Relaxation(**kwargs)


def test_negative_step_is_rejected() -> None:
    with pytest.raises(UserError, match="step"):
        relaxation("linear", -1, 10, 1.0)
