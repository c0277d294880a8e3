"""The metal gate's combination rule (golden values) and the std calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gapforge.models.metal_gate import GatePoint, combine, coverage, fit_std_scale


def test_golden_values_of_the_mixture() -> None:
    g = combine(
        np.array([0.2, 0.7, 0.0, 1.0]), np.array([2.0, 2.0, 1.5, 3.0]), np.array([0.5, 0.5, 0.3, 1.0])
    )
    # p = 0.2: mean 0.8 * 2 = 1.6; var = 0.8 * 0.25 + 0.2 * 0.8 * 4 = 0.84
    # median: the (0.5 - 0.2) / 0.8 = 0.375 quantile of N(2, 0.5) = 2 + 0.5 * (-0.3186394) = 1.8406803
    assert g.mean[0] == pytest.approx(1.6)
    assert g.std[0] == pytest.approx(np.sqrt(0.84))
    assert g.point[0] == pytest.approx(1.8406803, abs=1e-6)
    # p = 0.7: a likely metal sits at exactly 0 eV, with the mixture's honest spread
    assert g.point[1] == 0.0
    assert g.mean[1] == pytest.approx(0.6)
    assert g.std[1] == pytest.approx(np.sqrt(0.3 * 0.25 + 0.7 * 0.3 * 4))
    # p = 0: the regressor unchanged; p = 1: a certain metal, std 0
    assert g.point[2] == pytest.approx(1.5) and g.std[2] == pytest.approx(0.3)
    assert g.point[3] == 0.0 and g.std[3] == 0.0 and g.mean[3] == 0.0


def test_mean_point_and_std_scale() -> None:
    g = combine(np.array([0.2]), np.array([2.0]), np.array([0.5]), std_scale=2.0, point=GatePoint.MEAN)
    assert g.point[0] == pytest.approx(1.6)
    assert g.std[0] == pytest.approx(np.sqrt(0.8 * 1.0 + 0.2 * 0.8 * 4))
    # the median moves with the scaled std: 2 + 1.0 * (-0.3186394)
    assert combine(np.array([0.2]), np.array([2.0]), np.array([0.5]), std_scale=2.0).point[
        0
    ] == pytest.approx(1.6813606, abs=1e-6)


def test_median_is_never_negative_and_nan_propagates() -> None:
    g = combine(np.array([0.45, np.nan]), np.array([0.05, 1.0]), np.array([1.0, 0.1]))
    assert g.point[0] == 0.0  # the quantile falls below 0 eV: clipped
    assert np.isnan(g.point[1]) and np.isnan(g.std[1])


def test_fit_std_scale_recovers_the_factor_of_a_too_narrow_std() -> None:
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.2, 1.0, 20_000)
    err = rng.normal(0.0, sigma)
    half = sigma / 2

    def err_std(k: float) -> tuple[np.ndarray, np.ndarray]:
        return err, half * k

    k = fit_std_scale(err_std)
    assert k == pytest.approx(2.0, rel=0.05)
    c1, c2 = coverage(err, half * k)
    assert c1 == pytest.approx(0.6827, abs=0.02) and c2 == pytest.approx(0.9545, abs=0.02)


def test_metal_classifier_with_composition_features_round_trips(tmp_path: Path) -> None:
    from gapforge.data import load_dataset
    from gapforge.models.metal_gate import MagpieMetalClassifier, MetalFeatures

    small = load_dataset(Path(__file__).parents[1] / "files" / "gaps_small.csv")
    metals = ["Cu", "Fe3Al", "Ni3Al", "CuZn", "AlNi", "Fe", "Co3Ti", "TiAl3", "Mg2Cu", "NiTi"] * 2
    formulas = [*small["formula"], *metals]
    gaps = np.r_[small["band_gap"].to_numpy(), np.zeros(len(metals))]
    clf = MagpieMetalClassifier(max_iter=30, min_samples_leaf=3, features="magpie+fractions+smact")
    clf.fit(formulas, gaps)
    assert clf.get_params()["features"] == MetalFeatures.COMPOSITION
    assert clf.featurizer_.transform(["NaCl"]).shape[1] == 142 + len(clf.featurizer_.elements_) + 3
    p = clf.p_metal(["Cu", "Fe3Al", "LiF", "Xx"])
    assert p[0] > 0.5 > p[2] and np.isnan(p[3])
    entry = clf.save(tmp_path / "clf.skops")
    again = MagpieMetalClassifier.load(tmp_path / "clf.skops", sha256=entry["sha256"])
    np.testing.assert_allclose(again.p_metal(["Cu", "Fe3Al", "LiF"]), p[:3])
    with pytest.raises(ValueError, match="magpie"):
        MagpieMetalClassifier(features="magpie+nonsense").fit(formulas, gaps)
