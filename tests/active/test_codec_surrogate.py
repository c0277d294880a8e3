"""The linear latent codec and the GP surrogate fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gapforge.active.codec import LatentCodec, LinearCodec
from gapforge.active.surrogate import ExactPredictor, SurrogateSettings, fit_subset_indices, fit_surrogate
from gapforge.errors import InputError, ModelError


def test_linear_codec_round_trip_and_persistence(gap_table, tmp_path):
    formulas = gap_table["formula"].tolist()
    codec = LinearCodec(latent_dim=40, rule="argmax", threshold=0.5).fit(formulas)
    assert isinstance(codec, LatentCodec)
    z = codec.encode([*formulas, "Xx2"])
    assert z.shape == (len(formulas) + 1, 40)
    assert np.isnan(z[-1]).all() and np.isfinite(z[:-1]).all()
    decoded = codec.decode(z[:-1])
    assert sum(d == f for d, f in zip(decoded, formulas, strict=True)) / len(formulas) > 0.9
    lo, hi = codec.latent_bounds
    assert (z[:-1] >= lo).all() and (z[:-1] <= hi).all()
    codec.save(tmp_path / "codec")
    again = LinearCodec.load(tmp_path / "codec")
    np.testing.assert_allclose(again.encode(formulas), z[:-1], atol=1e-12)
    assert again.decode(z[:5]) == decoded[:5]


def test_linear_codec_errors(gap_table):
    with pytest.raises(ModelError, match="not fitted"):
        LinearCodec().encode(["LiF"])
    with pytest.raises(InputError, match="more than latent_dim"):
        LinearCodec(latent_dim=10).fit(["LiF", "NaCl"])
    # a far-away point decodes to nothing or to something, never crashes
    codec = LinearCodec(latent_dim=4).fit(gap_table["formula"])
    out = codec.decode(np.full((1, 4), -1e3))
    assert out[0] is None or isinstance(out[0], str)


def test_gp_fit_interpolates_smooth_function():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(60, 3))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1]
    bounds = np.array([[-1.0] * 3, [1.0] * 3])
    fit = fit_surrogate(x, y, bounds)
    xt = rng.uniform(-0.8, 0.8, size=(20, 3))
    pred = fit.model.posterior(torch.as_tensor(xt)).mean.detach().numpy()[:, 0]
    truth = np.sin(2 * xt[:, 0]) + 0.5 * xt[:, 1]
    assert np.abs(pred - truth).max() < 0.2
    assert fit.n_points == fit.n_fit == 60


def test_gp_subset_fit_conditions_on_all_points_and_reuses_hyperparameters():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(150, 2))
    y = x.sum(axis=1)
    bounds = np.array([[0.0, 0.0], [1.0, 1.0]])
    fit = fit_surrogate(x, y, bounds, SurrogateSettings(fit_subset=50), seed=0)
    assert fit.n_fit == 50 and fit.n_points == 150
    assert fit.model.train_inputs[0].shape[-2] == 150
    again = fit_surrogate(x, y, bounds, warm_start=fit.hyperparameters, fit_hyperparameters=False)
    assert again.n_fit == 0
    xt = torch.as_tensor(rng.uniform(size=(5, 2)))
    torch.testing.assert_close(again.model.posterior(xt).mean, fit.model.posterior(xt).mean)
    with pytest.raises(ValueError, match="at least 2"):
        fit_surrogate(x[:1], y[:1], bounds)


def test_fit_subset_keeps_the_best_points_and_moves_little_as_labels_arrive():
    rng = np.random.default_rng(3)
    y = rng.normal(size=1000)
    sub = fit_subset_indices(y, 300, seed=7)
    assert len(sub) == 300 and np.all(np.diff(sub) > 0)
    assert set(np.argsort(-y)[:30]) <= set(sub.tolist())  # the best tenth always takes part
    # 20 new labels (none of them among the best): at most 20 points swap in
    y_more = np.concatenate([y, np.full(20, y.min() - 1)])
    sub_more = fit_subset_indices(y_more, 300, seed=7)
    assert len(set(sub.tolist()) - set(sub_more.tolist())) <= 20
    # another seed draws another subset; small sets are used whole
    assert len(set(sub.tolist()) ^ set(fit_subset_indices(y, 300, seed=8).tolist())) > 100
    np.testing.assert_array_equal(fit_subset_indices(y[:200], 300, seed=7), np.arange(200))


def test_warm_refit_uses_the_short_iteration_budget(monkeypatch):
    import gapforge.active.surrogate as sur

    seen = []
    real = sur.fit_gpytorch_mll

    def spy(mll, optimizer_kwargs):
        seen.append(optimizer_kwargs["options"]["maxiter"])
        return real(mll, optimizer_kwargs=optimizer_kwargs)

    monkeypatch.setattr(sur, "fit_gpytorch_mll", spy)
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(40, 2))
    bounds = np.array([[0.0, 0.0], [1.0, 1.0]])
    settings = SurrogateSettings(maxiter=50, warm_maxiter=5)
    cold = fit_surrogate(x, x.sum(axis=1), bounds, settings)
    fit_surrogate(x, x.sum(axis=1), bounds, settings, warm_start=cold.hyperparameters)
    assert seen == [50, 5]


def test_exact_predictor_equals_the_gp_posterior_and_its_gradient():
    """The cached-Cholesky predictor the acquisition uses gives BoTorch's exact posterior."""
    import gpytorch

    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 3, size=(80, 4))
    y = np.cos(x[:, 0]) + x[:, 1] ** 2 + 0.05 * rng.normal(size=80)
    bounds = np.array([[-2.0] * 4, [3.0] * 4])
    model = fit_surrogate(x, y, bounds).model
    model.posterior(torch.zeros(1, 4, dtype=torch.float64))  # GPyTorch needs a prediction before fantasies
    fantasy = model.condition_on_observations(
        X=torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64),
        Y=torch.tensor([[1.5]], dtype=torch.float64),
    )
    for gp in (model, fantasy):
        xt = torch.as_tensor(rng.uniform(-2.5, 3.5, size=(7, 4)), dtype=torch.float64)
        with gpytorch.settings.fast_pred_var(False), gpytorch.settings.max_cholesky_size(10_000):
            post = gp.posterior(xt)
            ref_mean, ref_var = post.mean[:, 0].detach(), post.variance[:, 0].detach()
        mean, var = ExactPredictor(gp)(xt)
        torch.testing.assert_close(mean.detach(), ref_mean, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(var.detach(), ref_var, rtol=1e-5, atol=1e-8)
        # gradients w.r.t. the query point match a finite difference of the predictor itself
        predictor = ExactPredictor(gp)
        x0 = xt[:1].clone().requires_grad_(True)
        m0, v0 = predictor(x0)
        (m0 + v0).sum().backward()
        h = 1e-6
        fd = []
        for j in range(4):
            e = torch.zeros_like(xt[:1])
            e[0, j] = h
            mp, vp = predictor(xt[:1] + e)
            mm, vm = predictor(xt[:1] - e)
            fd.append(float(((mp + vp) - (mm + vm)).sum()) / (2 * h))
        np.testing.assert_allclose(x0.grad[0].numpy(), fd, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_autoencoder_codec_adapter_on_a_tiny_trained_autoencoder(gap_table, tmp_path):
    import gapforge.models.autoencoder as ae_mod
    from gapforge.active.codec import AutoencoderCodec

    formulas = gap_table["formula"].tolist()
    ae = ae_mod.CompositionAutoencoder(latent_dim=4, hidden=32, epochs=2, batch_size=32, seed=0, threads=1)
    ae.fit(formulas)
    ae.save(tmp_path / "ae")
    codec = AutoencoderCodec(str(tmp_path / "ae"))
    assert isinstance(codec, LatentCodec)
    z = codec.encode([*formulas[:5], "Xx2"])
    assert z.shape == (6, 4) and z.dtype == np.float64
    assert np.isnan(z[-1]).all() and np.isfinite(z[:-1]).all()
    assert codec.latent_bounds.shape == (2, 4)
    out = codec.decode(z[:-1])
    assert len(out) == 5 and all(f is None or isinstance(f, str) for f in out)
