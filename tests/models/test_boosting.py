"""BoosterSettings: the one settings type of the Magpie boosters and the experimental head."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest

from gapforge.errors import ModelError
from gapforge.models.boosting import BOOSTER_KEYS, BoosterSettings
from gapforge.models.metal_gate import MagpieGapRegressor, MagpieMetalClassifier


def test_settings_round_trip_through_the_card_layout() -> None:
    s = BoosterSettings(max_iter=800, learning_rate=0.02, max_leaf_nodes=31, min_samples_leaf=10, seed=3)
    assert BoosterSettings.from_dict(s.to_dict()) == s
    assert tuple(s.to_dict()) == BOOSTER_KEYS
    kw = s.sklearn_kwargs()
    assert kw["random_state"] == 3 and kw["learning_rate"] == 0.02 and "seed" not in kw
    # keys a card leaves out come from the defaults given
    assert BoosterSettings.from_dict({"seed": 4}, defaults=s) == replace(s, seed=4)
    assert s.with_seed(7).seed == 7 and s.with_seed(7).max_iter == 800
    with pytest.raises(FrozenInstanceError):
        s.seed = 1  # type: ignore[misc]


def test_optional_settings_reach_sklearn_and_stay_out_of_old_layouts() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    plain = BoosterSettings(max_iter=20)
    # at their defaults the optional settings leave the card layout and sklearn's kwargs as before
    assert tuple(plain.to_dict()) == BOOSTER_KEYS and len(BOOSTER_KEYS) == 5
    assert "max_features" not in plain.sklearn_kwargs() and "l2_regularization" not in plain.sklearn_kwargs()
    sub = replace(plain, max_features=0.5, l2_regularization=1.0)
    assert sub.to_dict()["max_features"] == 0.5 and sub.to_dict()["l2_regularization"] == 1.0
    assert BoosterSettings.from_dict(sub.to_dict()) == sub
    assert BoosterSettings.from_dict(plain.to_dict()) == plain and plain.max_features is None
    reg = HistGradientBoostingRegressor(**sub.sklearn_kwargs())
    assert reg.max_features == 0.5 and reg.l2_regularization == 1.0
    # feature subsampling makes the seed matter: two seeds, two models (without it, one)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12))
    y = X[:, 0] + X[:, 1] ** 2 + 0.1 * rng.normal(size=300)

    def fitted(s: BoosterSettings, seed: int) -> np.ndarray:
        return HistGradientBoostingRegressor(**s.with_seed(seed).sklearn_kwargs()).fit(X, y).predict(X)

    assert np.array_equal(fitted(plain, 0), fitted(plain, 1))
    assert not np.allclose(fitted(sub, 0), fitted(sub, 1))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"n_estimators": 10}, "unknown keys"),
        ({"max_iter": 0}, "max_iter"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"max_leaf_nodes": 1}, "max_leaf_nodes"),
        ({"max_features": 0.0}, "max_features"),
        ({"max_features": 1.5}, "max_features"),
        ({"l2_regularization": -1.0}, "l2_regularization"),
    ],
)
def test_bad_settings_are_refused_with_the_key(data: dict, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        BoosterSettings.from_dict(data)


def test_magpie_boosters_keep_their_defaults_and_card_params() -> None:
    clf, reg = MagpieMetalClassifier(), MagpieGapRegressor(max_iter=50, seed=2)
    # the flat params a card entry has always held: one BoosterSettings (+ the classifier's features)
    assert clf.get_params() == {
        "max_iter": 300, "learning_rate": 0.1, "max_leaf_nodes": 63, "min_samples_leaf": 20, "seed": 0,
        "features": "magpie",
    }  # fmt: skip
    assert clf.settings == BoosterSettings()
    assert MagpieGapRegressor().settings.max_iter == 3000
    assert reg.settings == BoosterSettings(max_iter=50, seed=2)
    assert BoosterSettings.from_dict(reg.get_params()) == reg.settings
    kw = reg._booster_kwargs()
    assert kw["early_stopping"] is True and kw["random_state"] == 2 and kw["max_iter"] == 50


def test_magpie_regressor_fits_with_its_settings() -> None:
    formulas = ["LiF", "NaCl", "MgO", "GaAs", "Si", "ZnO", "KCl", "CaO", "AlN", "GaN"] * 3
    gaps = np.array([13.6, 8.5, 7.8, 1.4, 1.1, 3.4, 8.4, 7.1, 6.2, 3.4] * 3)
    reg = MagpieGapRegressor(max_iter=5, min_samples_leaf=2, max_leaf_nodes=3).fit(formulas, gaps)
    assert reg.regressor_.max_iter == 5 and reg.regressor_.max_leaf_nodes == 3
    assert reg.regressor_.n_iter_ <= 5
