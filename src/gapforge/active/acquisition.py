"""Goals, acquisition functions and the batch proposal step (BoTorch).

Kappa and beta: the paper (``bayes_opt``'s UCB) scores a point by ``mu + kappa *
sigma`` with ``kappa = 10``. BoTorch's :class:`~botorch.acquisition.analytic.UpperConfidenceBound`
scores ``mu + sqrt(beta) * sigma``, so the paper's setting is ``beta = kappa ** 2 = 100``
(:func:`beta_from_kappa`).

Goals (:class:`Goal`): ``maximize`` the band gap, or hit a :class:`~gapforge.window.GapWindow`.
The GP always models the band gap itself; the window objective
``-dist(gap, [lo, hi])`` (0 inside the window, minus the distance in eV outside)
is applied to fixed quantiles of the Gaussian posterior
(:class:`WindowAcquisition`, BoTorch's qUCB formula on those samples).

Batches of ``q`` points are built sequentially and greedily (kriging believer),
because a joint q-batch evaluation in GPyTorch copies the training inputs into
every t-batch and costs seconds per call at 2,000 labelled points.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Literal

import gpytorch
import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction, LogExpectedImprovement, UpperConfidenceBound
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.optim import optimize_acqf

from gapforge.active.surrogate import ExactPredictor
from gapforge.window import GapWindow

log = logging.getLogger(__name__)

AcquisitionKind = Literal["ucb", "ei", "random"]

#: The paper's exploration weight (``bayes_opt`` UCB, kappa = 10).
PAPER_KAPPA = 10.0


def beta_from_kappa(kappa: float) -> float:
    """BoTorch's UCB ``beta`` for a ``bayes_opt``-style ``kappa`` (``beta = kappa**2``)."""
    return float(kappa) ** 2


@dataclass(frozen=True)
class Goal:
    """What the campaign looks for, given by a :class:`~gapforge.window.GapWindow` (or none).

    * no window: maximise the band gap;
    * an open window (``>= gap_min``): maximise the band gap too (every labelled
      gap above ``gap_min`` counts as a hit), so a wide-gap campaign keeps climbing;
    * a closed window: the objective ``-dist(gap, window)`` (0 inside, minus the distance in eV outside).

    Attributes:
        window: the target window, or ``None``.
    """

    window: GapWindow | None = None

    def __post_init__(self) -> None:
        if self.window is not None and not isinstance(self.window, GapWindow):
            raise TypeError(f"Goal.window must be a GapWindow or None, got {self.window!r}")

    @property
    def kind(self) -> Literal["maximize", "window"]:
        """``"window"`` for a closed window (distance objective), else ``"maximize"``."""
        return "window" if self.window is not None and self.window.closed else "maximize"

    def objective(self, gaps: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Objective values of band gaps (any shape): the gap, or ``-dist(gap, window)``."""
        if self.kind == "maximize":
            return gaps
        lo, hi = self.window.gap_min, self.window.upper  # type: ignore[union-attr]
        if isinstance(gaps, torch.Tensor):
            return -(torch.clamp(lo - gaps, min=0.0) + torch.clamp(gaps - hi, min=0.0))
        return -self.window.distance(gaps)  # type: ignore[union-attr]

    def hit(self, gaps: np.ndarray) -> np.ndarray:
        """Boolean mask of gaps inside the window (always False without a window)."""
        gaps = np.asarray(gaps, dtype=np.float64)
        if self.window is None:
            return np.zeros(gaps.shape, dtype=bool)
        return self.window.contains(gaps)

    def to_dict(self) -> dict:
        """JSON-ready goal."""
        return {"kind": self.kind, "window": None if self.window is None else self.window.to_dict()}


@dataclass(frozen=True)
class AcquisitionSettings:
    """How proposals are chosen.

    Attributes:
        kind: ``"ucb"`` (upper confidence bound), ``"ei"`` (log expected improvement)
            or ``"random"`` (uniform in the latent box: the control).
        kappa: UCB exploration weight, ``bayes_opt`` convention (``beta = kappa**2``).
        q: points proposed per iteration.
        batch: how ``q > 1`` points are chosen: ``"greedy"`` (sequential, kriging
            believer; one optimisation per point) or ``"restarts"`` (one optimisation
            with ``q * num_restarts`` restarts; the q best local optima; cheap, less diverse).
        num_restarts: optimiser restarts of :func:`~botorch.optim.optimize_acqf`.
        raw_samples: random points scored to pick the restarts' starting points.
        maxiter: L-BFGS-B iterations per restart.
    """

    kind: AcquisitionKind = "ucb"
    kappa: float = PAPER_KAPPA
    q: int = 1
    batch: Literal["greedy", "restarts"] = "greedy"
    num_restarts: int = 4
    raw_samples: int = 256
    maxiter: int = 30

    @property
    def beta(self) -> float:
        """BoTorch's ``beta`` (``kappa**2``)."""
        return beta_from_kappa(self.kappa)

    def to_dict(self) -> dict:
        """JSON-ready settings (with the derived ``beta``)."""
        return {**asdict(self), "beta": self.beta}


@dataclass(frozen=True)
class Proposal:
    """Candidate latent points of one acquisition step.

    Attributes:
        candidates: ``(q, R, d)`` latent points: for each of the ``q`` batch slots,
            the ``R`` optimiser restarts' optima sorted by acquisition value (best first).
            The campaign takes, per slot, the best one that decodes to a new formula.
        values: ``(q, R)`` acquisition values.
        seconds: optimisation wall time.
    """

    candidates: np.ndarray
    values: np.ndarray
    seconds: float

    @property
    def best(self) -> np.ndarray:
        """``(q, d)`` the best point of every slot."""
        return self.candidates[:, 0]


def _flat_mean_sigma(
    model: Model, X: torch.Tensor, min_var: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of ``X`` ``(b..., 1, d)`` evaluated as one flat batch ``(N, d)``.

    GPyTorch expands the ``n`` training inputs to every t-batch of a batched
    ``X`` (``(b, n, d)`` copies), which costs seconds per call at ``n = 2000``;
    a flat ``(N, d)`` evaluation costs one ``(N, n)`` cross-covariance.

    Returns:
        ``mean``, ``sigma`` of shape ``(b...)``.
    """
    batch = X.shape[:-2]
    flat = X.reshape(-1, X.shape[-1])
    predictor = _exact_predictor(model)
    if predictor is not None:
        mean, var = predictor(flat)
        var = var.clamp_min(min_var)
    else:
        with gpytorch.settings.fast_pred_var(True):
            post = model.posterior(flat)
            mean = post.mean[..., 0]
            var = post.variance[..., 0].clamp_min(min_var)
    return mean.reshape(batch), var.sqrt().reshape(batch)


_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _exact_predictor(model: Model) -> ExactPredictor | None:
    """The cached :class:`ExactPredictor` of a model (built on first use), or None if unsupported."""
    if not isinstance(model, SingleTaskGP) or model.num_outputs != 1:
        return None
    predictor = _PREDICTORS.get(model)
    if predictor is None:
        try:
            predictor = ExactPredictor(model)
        except (ValueError, RuntimeError, AttributeError) as exc:
            log.debug("exact predictor unavailable (%s); using the model's posterior", exc)
            return None
        _PREDICTORS[model] = predictor
    return predictor


class _FlatMeanAndSigma:
    """Mixin for BoTorch's analytic acquisitions: their posterior mean and std from :func:`_flat_mean_sigma`.

    ``X`` ``(b..., 1, d)``; returns mean and sigma of shape ``(b..., 1)``, as BoTorch's own.
    """

    def _mean_and_sigma(self, X: torch.Tensor, compute_sigma: bool = True, min_var: float = 1e-12):
        mean, sigma = _flat_mean_sigma(self.model, X, min_var)
        return mean.unsqueeze(-1), sigma.unsqueeze(-1)


class FlatUpperConfidenceBound(_FlatMeanAndSigma, UpperConfidenceBound):
    """BoTorch's analytic UCB (``mu + sqrt(beta) * sigma``) with a flat posterior evaluation."""


class FlatLogExpectedImprovement(_FlatMeanAndSigma, LogExpectedImprovement):
    """BoTorch's analytic log-EI with a flat posterior evaluation."""


class WindowAcquisition(AcquisitionFunction):
    """UCB or EI of the window objective ``-dist(gap, [lo, hi])`` for one point (``q = 1``).

    The band-gap posterior at ``x`` is ``N(mu, sigma^2)``; the objective is
    evaluated on ``S`` fixed quasi-random normal quantiles ``y_s = mu + sigma * e_s``
    (deterministic, differentiable). ``ucb`` follows :class:`qUpperConfidenceBound`:
    ``mean(o) + sqrt(beta * pi / 2) * mean(|o - mean(o)|)``; ``ei`` is
    ``mean(max(o - best, 0))``.

    Args:
        model: GP of the band gap.
        goal: a window goal.
        kind: ``"ucb"`` or ``"ei"``.
        beta: UCB ``beta`` (``kappa**2``).
        best_objective: best objective so far (EI).
        n_samples: number of quantiles ``S``.
    """

    def __init__(
        self, model: Model, goal: Goal, kind: str, beta: float, best_objective: float, n_samples: int = 64
    ) -> None:
        super().__init__(model=model)
        self.goal = goal
        self.kind = kind
        self.beta = beta
        self.best_objective = best_objective
        probs = (torch.arange(n_samples, dtype=torch.float64) + 0.5) / n_samples
        self.register_buffer("eps", torch.distributions.Normal(0.0, 1.0).icdf(probs))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Acquisition value of ``X`` ``(b..., 1, d)`` -> ``(b...)``."""
        mean, sigma = _flat_mean_sigma(self.model, X)
        obj = self.goal.objective(mean.unsqueeze(-1) + sigma.unsqueeze(-1) * self.eps)
        if self.kind == "ucb":
            m = obj.mean(dim=-1)
            return m + math.sqrt(self.beta * math.pi / 2) * (obj - m.unsqueeze(-1)).abs().mean(dim=-1)
        return (obj - self.best_objective).clamp_min(0.0).mean(dim=-1)


def make_acquisition(
    model: Model, goal: Goal, settings: AcquisitionSettings, best_objective: float
) -> AcquisitionFunction:
    """Build the single-point acquisition function (``q = 1``; batches are built greedily).

    ``maximize``: BoTorch's analytic :class:`UpperConfidenceBound` (``beta =
    kappa**2``) or :class:`LogExpectedImprovement`; ``window``:
    :class:`WindowAcquisition`.

    Args:
        model: fitted GP of the band gap.
        goal: the campaign's goal.
        settings: acquisition settings.
        best_objective: best objective value observed so far (for EI).
    """
    if settings.kind not in ("ucb", "ei"):
        raise ValueError(f"no acquisition function for kind {settings.kind!r}")
    if goal.kind == "window":
        return WindowAcquisition(model, goal, settings.kind, settings.beta, best_objective)
    if settings.kind == "ucb":
        return FlatUpperConfidenceBound(model, beta=settings.beta)
    return FlatLogExpectedImprovement(model, best_f=best_objective)


def propose(
    model: Model | None,
    bounds: np.ndarray,
    goal: Goal,
    settings: AcquisitionSettings,
    *,
    best_objective: float = 0.0,
    seed: int = 0,
) -> Proposal:
    """Optimise the acquisition inside the latent bounds; ``q`` slots, ``R`` restarts each.

    Batches (``q > 1``) are built sequentially and greedily with the kriging
    believer: after a slot is filled, the GP is conditioned on its best point
    with the posterior mean as a fantasy observation
    (:meth:`~botorch.models.model.Model.condition_on_observations`), which
    shrinks the uncertainty there and pushes the next slot elsewhere. Each slot
    is an :func:`~botorch.optim.optimize_acqf` run (``q = 1``, L-BFGS-B within
    ``bounds``; the GP's :class:`Normalize` maps the box to the unit cube).
    With ``settings.kind == "random"`` the points are uniform in the box (the
    random-proposal control) and ``model`` may be ``None``.

    Args:
        model: fitted GP of the band gap.
        bounds: ``(2, d)`` latent bounds.
        goal: the campaign's goal.
        settings: acquisition settings.
        best_objective: best objective value so far (EI only).
        seed: seed of the raw samples and of the random control.

    Returns:
        ``(q, R, d)`` candidates, ``R = num_restarts``.
    """
    t0 = time.perf_counter()
    B = torch.as_tensor(np.asarray(bounds), dtype=torch.float64)
    d = B.shape[-1]
    q, r = settings.q, settings.num_restarts
    if settings.kind == "random":
        rng = np.random.default_rng(seed)
        u = rng.uniform(size=(q, r, d))
        cand = B[0].numpy() + u * (B[1] - B[0]).numpy()
        return Proposal(cand, np.zeros((q, r)), time.perf_counter() - t0)
    if model is None:
        raise ValueError("a model is needed for a model-based acquisition")
    if settings.batch == "restarts" and q > 1:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            acqf = make_acquisition(model, goal, settings, best_objective)
            batches, values = optimize_acqf(
                acqf,
                bounds=B,
                q=1,
                num_restarts=q * r,
                raw_samples=max(settings.raw_samples, 2 * q * r),
                options={"maxiter": settings.maxiter},
                return_best_only=False,
            )
        batches, values, order = _ranked_restarts(batches, values, d)
        # slot j gets the j-th best optimum first, then every q-th after it as alternatives
        idx = order.reshape(r, q).T
        return Proposal(batches[idx].numpy(), values[idx].numpy(), time.perf_counter() - t0)
    slots, slot_values = [], []
    current = model
    with torch.random.fork_rng():
        for j in range(q):
            torch.manual_seed(seed + 7919 * j)
            acqf = make_acquisition(current, goal, settings, best_objective)
            batches, values = optimize_acqf(
                acqf,
                bounds=B,
                q=1,
                num_restarts=r,
                raw_samples=settings.raw_samples,
                options={"maxiter": settings.maxiter},
                return_best_only=False,
            )
            batches, values, order = _ranked_restarts(batches, values, d)
            slots.append(batches[order].numpy())
            slot_values.append(values[order].numpy())
            if j + 1 < q:
                x_best = batches[order[:1]]
                with torch.no_grad(), gpytorch.settings.fast_pred_var(True):
                    fantasy = current.posterior(x_best).mean.detach()
                current = current.condition_on_observations(X=x_best, Y=fantasy)
    return Proposal(np.stack(slots), np.stack(slot_values), time.perf_counter() - t0)


def _ranked_restarts(
    batches: torch.Tensor, values: torch.Tensor, d: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten ``optimize_acqf``'s restarts and rank them, best first.

    Args:
        batches: ``(R, 1, d)`` optimised points (``return_best_only=False``).
        values: ``(R,)`` or ``(R, 1)`` their acquisition values.
        d: latent dimension.

    Returns:
        ``(R, d)`` points, ``(R,)`` values with non-finite ones as ``-inf``, and the
        ``(R,)`` stable descending order of the values.
    """
    batches = batches.detach().reshape(-1, d)
    values = values.detach().reshape(-1)
    values = torch.where(torch.isfinite(values), values, torch.full_like(values, -math.inf))
    return batches, values, torch.argsort(values, descending=True, stable=True)
