"""Acquisition maths on mock posteriors, goals, and the proposal step on a real GP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from botorch.utils.testing import MockModel, MockPosterior

from gapforge.active.acquisition import (
    PAPER_KAPPA,
    AcquisitionSettings,
    FlatLogExpectedImprovement,
    FlatUpperConfidenceBound,
    Goal,
    WindowAcquisition,
    beta_from_kappa,
    propose,
)
from gapforge.active.surrogate import fit_surrogate
from gapforge.window import GapWindow


def test_paper_kappa_is_beta_100():
    assert PAPER_KAPPA == 10.0
    assert beta_from_kappa(10) == 100.0
    assert AcquisitionSettings().beta == 100.0


def _mock(mean, var):
    mean = torch.tensor(mean, dtype=torch.float64).reshape(-1, 1)
    var = torch.tensor(var, dtype=torch.float64).reshape(-1, 1)
    return MockModel(MockPosterior(mean=mean, variance=var))


def test_ucb_is_mean_plus_kappa_sigma():
    model = _mock([1.0, 2.0, 0.5], [0.04, 0.0001, 1.0])
    acqf = FlatUpperConfidenceBound(model, beta=beta_from_kappa(10))
    x = torch.zeros(3, 1, 4, dtype=torch.float64)
    got = acqf(x)
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx([1.0 + 10 * 0.2, 2.0 + 10 * 0.01, 0.5 + 10 * 1.0])


def test_log_ei_matches_closed_form():
    model = _mock([1.0], [0.25])
    acqf = FlatLogExpectedImprovement(model, best_f=1.5)
    u = (1.0 - 1.5) / 0.5
    normal = torch.distributions.Normal(0.0, 1.0)
    ei = 0.5 * (u * normal.cdf(torch.tensor(u)) + normal.log_prob(torch.tensor(u)).exp())
    assert acqf(torch.zeros(1, 1, 2, dtype=torch.float64)).item() == pytest.approx(
        math.log(float(ei)), rel=1e-6
    )


def test_window_objective_golden_values():
    goal = Goal(GapWindow(2.0, 3.0))
    assert goal.kind == "window"
    assert goal.objective(np.array([1.0, 2.5, 3.0, 4.5])).tolist() == [-1.0, 0.0, 0.0, -1.5]
    assert goal.hit(np.array([1.0, 2.0, 3.5])).tolist() == [False, True, False]
    assert Goal().objective(np.array([1.5])).tolist() == [1.5]
    # an open window keeps maximising the gap but counts the hits above its edge
    wide = Goal(GapWindow(6.0))
    assert wide.kind == "maximize" and wide.objective(np.array([7.0])).tolist() == [7.0]
    assert wide.hit(np.array([5.9, 6.0, 8.0])).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="above gap_min"):
        Goal(GapWindow(3.0, 2.0))


def test_window_acquisition_without_noise_is_minus_distance():
    model = _mock([1.0, 2.5, 5.0], [1e-12, 1e-12, 1e-12])
    acqf = WindowAcquisition(model, Goal(GapWindow(2.0, 3.0)), "ucb", beta=100.0, best_objective=0.0)
    got = acqf(torch.zeros(3, 1, 2, dtype=torch.float64))
    assert got.tolist() == pytest.approx([-1.0, 0.0, -2.0], abs=1e-4)


def test_window_ucb_prefers_uncertain_point_outside_window():
    # both means are 1 eV below the window; the uncertain one may be inside it
    model = _mock([1.0, 1.0], [1e-6, 1.0])
    acqf = WindowAcquisition(model, Goal(GapWindow(2.0, 3.0)), "ucb", beta=100.0, best_objective=-1.0)
    sure, unsure = acqf(torch.zeros(2, 1, 2, dtype=torch.float64)).tolist()
    assert unsure > sure


def test_random_proposal_inside_bounds():
    bounds = np.array([[-1.0, 0.0, 5.0], [1.0, 2.0, 6.0]])
    prop = propose(None, bounds, Goal(), AcquisitionSettings(kind="random", q=4, num_restarts=3), seed=1)
    assert prop.candidates.shape == (4, 3, 3)
    assert (prop.candidates >= bounds[0]).all() and (prop.candidates <= bounds[1]).all()


@pytest.fixture(scope="module")
def toy_gp():
    """A GP of a 2-d bump with its maximum at (0.7, 0.3)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 2))
    y = np.exp(-8 * ((x[:, 0] - 0.7) ** 2 + (x[:, 1] - 0.3) ** 2))
    bounds = np.array([[0.0, 0.0], [1.0, 1.0]])
    return fit_surrogate(x, y, bounds).model, bounds, float(y.max())


def test_ucb_exploits_with_small_kappa(toy_gp):
    model, bounds, _ = toy_gp
    prop = propose(
        model, bounds, Goal(), AcquisitionSettings(kappa=0.1, num_restarts=4, raw_samples=64), seed=0
    )
    assert prop.best[0] == pytest.approx([0.7, 0.3], abs=0.1)
    assert (np.diff(prop.values[0]) <= 1e-12).all()  # restarts sorted best first


def test_batch_slots_are_distinct():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(8, 2))
    y = np.sin(3 * x[:, 0]) + x[:, 1]
    bounds = np.array([[0.0, 0.0], [1.0, 1.0]])
    model = fit_surrogate(x, y, bounds).model
    prop = propose(model, bounds, Goal(), AcquisitionSettings(kind="ucb", kappa=2.0, q=3, raw_samples=64))
    pts = prop.best
    assert pts.shape == (3, 2)
    dists = [np.linalg.norm(pts[i] - pts[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(dists) > 1e-3
    assert (pts >= 0).all() and (pts <= 1).all()


def test_window_goal_targets_the_window(toy_gp):
    model, bounds, _ = toy_gp
    goal = Goal(GapWindow(0.45, 0.55))  # a ring around the bump
    prop = propose(model, bounds, goal, AcquisitionSettings(kind="ucb", kappa=0.1, raw_samples=64), seed=0)
    mean = model.posterior(torch.as_tensor(prop.best)).mean.item()
    assert 0.35 < mean < 0.65


def test_restarts_batch_gives_q_slots_of_local_optima(toy_gp):
    model, bounds, _ = toy_gp
    settings = AcquisitionSettings(
        kind="ucb", kappa=1.0, q=3, num_restarts=2, raw_samples=32, batch="restarts"
    )
    prop = propose(model, bounds, Goal(), settings, seed=0)
    assert prop.candidates.shape == (3, 2, 2)
    firsts = prop.values[:, 0]
    assert (np.diff(firsts) <= 1e-12).all()  # slot j holds the j-th best optimum
    assert (prop.values[:, 1] <= prop.values[-1, 0] + 1e-12).all()  # alternates come after every first pick
