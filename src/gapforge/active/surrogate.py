"""Gaussian-process surrogate of the band gap over the latent space (BoTorch).

The GP is BoTorch's :class:`~botorch.models.SingleTaskGP` on ``train_X`` ``(n,
d)`` latent codes and ``train_Y`` ``(n, 1)`` band gaps (eV), with
:class:`~botorch.models.transforms.input.Normalize` (``bounds`` = the saved
latent bounds, so the GP and the optimiser both work in the unit cube) and
:class:`~botorch.models.transforms.outcome.Standardize`. Its kernel is
BoTorch's default (RBF with the dimension-scaled log-normal lengthscale prior
of Hvarfner et al. 2024, which behaves well in 16-128 dimensions).

Speed (the campaign refits every iteration): the hyper-parameters are fitted
by :func:`~botorch.fit.fit_gpytorch_mll` on at most ``fit_subset`` points,
and the exact posterior is then conditioned on *all* labelled points with
those hyper-parameters. The subset is the best ``fit_subset // 10`` points
plus the points with the smallest keys of a seeded random stream, one key per
point in labelling order; the stream's prefix does not change as points are
added, so from one iteration to the next the subset changes only by the few
points that enter it. A refit warm-started from the previous iteration's
hyper-parameters therefore starts next to its optimum and runs only
``warm_maxiter`` L-BFGS iterations: across iterations the fit is one
continued optimisation rather than a fresh one each time. One Cholesky of a
2,000-point kernel matrix costs ~0.1 s; a cold 75-iteration fit on 300
points costs ~1.5 CPU-s. ``benchmarks/bench_bo_step.py`` measures both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood

log = logging.getLogger(__name__)

DTYPE = torch.float64


@dataclass(frozen=True)
class SurrogateSettings:
    """How the GP surrogate is fitted.

    Attributes:
        fit_subset: at most this many points are used to fit hyper-parameters
            (0 = all); the posterior always conditions on all points.
        warm_start: start the hyper-parameter fit from the previous iteration's values.
        maxiter: L-BFGS iterations of a cold marginal-likelihood fit.
        warm_maxiter: L-BFGS iterations of a warm-started fit.
    """

    fit_subset: int = 300
    warm_start: bool = True
    maxiter: int = 75
    warm_maxiter: int = 20

    def to_dict(self) -> dict:
        """JSON-ready settings."""
        return asdict(self)


@dataclass(frozen=True)
class FitResult:
    """A fitted surrogate and what it cost.

    Attributes:
        model: the GP conditioned on all ``n`` points.
        n_points: number of training points.
        n_fit: number of points the hyper-parameters were fitted on.
        seconds: wall time of the fit.
        hyperparameters: state dict (kernel, likelihood, mean) for warm starts.
    """

    model: SingleTaskGP
    n_points: int
    n_fit: int
    seconds: float
    hyperparameters: dict


def _hyper_state(model: SingleTaskGP) -> dict:
    """The model's learned hyper-parameters (no data-dependent transform buffers)."""
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if not k.startswith(("outcome_transform", "input_transform"))
    }


def build_gp(x: torch.Tensor, y: torch.Tensor, bounds: torch.Tensor) -> SingleTaskGP:
    """An unfitted :class:`SingleTaskGP` with Normalize(bounds) and Standardize.

    Args:
        x: ``(n, d)`` latent codes.
        y: ``(n, 1)`` objective values.
        bounds: ``(2, d)`` latent bounds.
    """
    d = x.shape[-1]
    return SingleTaskGP(
        x,
        y,
        input_transform=Normalize(d=d, bounds=bounds),
        outcome_transform=Standardize(m=1),
    )


def fit_subset_indices(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of the hyper-parameter subset: the best ``size // 10`` points + the smallest keys.

    Point ``i`` has key ``default_rng(seed).random(n)[i]``; because the stream's
    prefix is the same for every ``n``, adding points moves at most as many
    points in or out of the subset as were added (plus changes among the best).
    """
    n = len(y)
    if size <= 0 or n <= size:
        return np.arange(n)
    key = np.random.default_rng(seed).random(n)
    key[np.argsort(-y, kind="stable")[: size // 10]] = -1.0  # the best points always take part
    return np.sort(np.argsort(key, kind="stable")[:size])


def fit_surrogate(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    bounds: np.ndarray | torch.Tensor,
    settings: SurrogateSettings | None = None,
    *,
    warm_start: dict | None = None,
    fit_hyperparameters: bool = True,
    seed: int = 0,
) -> FitResult:
    """Fit the GP surrogate on latent codes and objective values.

    Args:
        x: ``(n, d)`` latent codes of the labelled formulas.
        y: ``(n,)`` or ``(n, 1)`` objective values (band gap in eV, or the window objective).
        bounds: ``(2, d)`` latent bounds (input normalisation to the unit cube).
        settings: fit settings.
        warm_start: hyper-parameters of a previous fit (:attr:`FitResult.hyperparameters`).
        fit_hyperparameters: False with ``warm_start`` only conditions the GP on the
            data with the given hyper-parameters (no marginal-likelihood fit).
        seed: seed of the hyper-parameter subset's key stream; keep it fixed over a
            campaign so that the subset, and with it the warm start, stays put.

    Returns:
        The fitted model conditioned on all points, with timing.
    """
    settings = settings or SurrogateSettings()
    t0 = time.perf_counter()
    X = torch.as_tensor(np.asarray(x), dtype=DTYPE)
    Y = torch.as_tensor(np.asarray(y), dtype=DTYPE).reshape(-1, 1)
    B = torch.as_tensor(np.asarray(bounds), dtype=DTYPE)
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 labelled points to fit a GP, got {n}")
    if warm_start is not None and not fit_hyperparameters:
        model = build_gp(X, Y, B)
        model.load_state_dict(warm_start, strict=False)
        model.eval()
        seconds = time.perf_counter() - t0
        return FitResult(model=model, n_points=n, n_fit=0, seconds=seconds, hyperparameters=warm_start)
    idx = fit_subset_indices(Y[:, 0].numpy(), settings.fit_subset, seed)
    sub = build_gp(X[idx], Y[idx], B)
    warm = warm_start is not None and settings.warm_start
    if warm:
        try:
            sub.load_state_dict(warm_start, strict=False)
        except RuntimeError as exc:  # a dimension change: start afresh
            log.debug("warm start ignored: %s", exc)
            warm = False
    maxiter = settings.warm_maxiter if warm else settings.maxiter
    mll = ExactMarginalLogLikelihood(sub.likelihood, sub)
    try:
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
    except Exception as exc:  # botorch raises ModelFittingError after its retries
        log.warning("GP hyper-parameter fit failed (%s); keeping the prior/warm-start values", exc)
    sub.eval()
    hyper = _hyper_state(sub)
    if len(idx) == n:
        model = sub
    else:
        model = build_gp(X, Y, B)
        model.load_state_dict(hyper, strict=False)
        model.eval()
    seconds = time.perf_counter() - t0
    log.debug("GP fit on %d points (hyper-parameters on %d) in %.2f s", n, len(idx), seconds)
    return FitResult(model=model, n_points=n, n_fit=len(idx), seconds=seconds, hyperparameters=hyper)


class ExactPredictor:
    """Exact posterior mean and variance of a fitted :class:`SingleTaskGP`, one Cholesky cached.

    GPyTorch's fast predictive variance (LOVE) builds a Lanczos root of the
    inverse kernel matrix on the first call (about 1.3 CPU-s at 2,000 points)
    and its exact path re-solves the kernel system on every call. The
    acquisition optimiser calls the posterior about a hundred times per step
    with the same training data, so this class factors ``K + noise * I`` once
    (``~0.1 s`` at 2,000 points) and answers each call with one ``(N, n)``
    cross-covariance and one triangular solve. The result equals
    ``model.posterior(X)`` (marginal mean and variance, no observation noise)
    to floating-point precision; ``tests/active`` checks that.

    Supports the models :func:`build_gp` makes (homoskedastic Gaussian
    likelihood, :class:`Normalize` input and :class:`Standardize` outcome
    transforms, one output) and their ``condition_on_observations`` fantasies.
    """

    def __init__(self, model: SingleTaskGP) -> None:
        model.eval()
        self.model = model
        with torch.no_grad():
            x_train = model.train_inputs[0]
            y_train = model.train_targets
            if x_train.dim() != 2 or y_train.dim() != 1:
                raise ValueError("ExactPredictor supports single-output, non-batched GPs only")
            k = model.covar_module(x_train).to_dense()
            noise = model.likelihood.noise.reshape(-1)
            k = k + torch.diag(noise.expand(x_train.shape[0]))
            jitter = 0.0
            for attempt in range(4):
                chol, info = torch.linalg.cholesky_ex(
                    k + jitter * torch.eye(k.shape[0], dtype=k.dtype) if jitter else k
                )
                if int(info) == 0:
                    break
                jitter = 1e-8 * 10 ** (2 * attempt) * float(k.diagonal().mean())
            else:
                raise RuntimeError("kernel matrix is not positive definite, even with jitter")
            resid = (y_train - model.mean_module(x_train)).unsqueeze(-1)
            self.x_train = x_train
            self.chol = chol
            self.alpha = torch.cholesky_solve(resid, chol)
        ot = getattr(model, "outcome_transform", None)
        if ot is not None:
            self.y_mean = ot.means.reshape(-1)[0].detach()
            self.y_std = ot.stdvs.reshape(-1)[0].detach()
        else:
            self.y_mean = torch.zeros((), dtype=self.alpha.dtype)
            self.y_std = torch.ones((), dtype=self.alpha.dtype)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance (objective units) of ``x`` ``(N, d)``, differentiable in ``x``."""
        m = self.model
        xn = m.transform_inputs(x)
        ks = m.covar_module(xn, self.x_train).to_dense()  # (N, n)
        mean = m.mean_module(xn) + (ks @ self.alpha)[..., 0]
        v = torch.linalg.solve_triangular(self.chol, ks.transpose(-1, -2), upper=False)  # (n, N)
        prior_var = m.covar_module(xn, diag=True)
        if hasattr(prior_var, "to_dense"):
            prior_var = prior_var.to_dense()
        var = (prior_var - v.pow(2).sum(dim=0)).clamp_min(0.0)
        return mean * self.y_std + self.y_mean, var * self.y_std**2
