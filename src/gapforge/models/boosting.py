"""Settings of the histogram gradient-boosting models (scikit-learn) that gapforge fits.

One frozen dataclass for the five settings every booster here has: the Magpie metal
classifier and gap regressor attached to a Roost oracle (:mod:`gapforge.models.metal_gate`)
and the experimental-gap head's classifier and regressors (:mod:`gapforge.models.experiment`).
Each class keeps its own defaults as an instance of it. Two optional settings (feature
subsampling and L2 regularisation) are left out of the card layout at their defaults, so
settings, cards and cache keys written before them are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Self

from gapforge.errors import ModelError


@dataclass(frozen=True)
class BoosterSettings:
    """Settings of one ``HistGradientBoosting{Classifier,Regressor}``.

    Attributes:
        max_iter: boosting iterations (a cap where the model stops early).
        learning_rate: boosting learning rate.
        max_leaf_nodes: leaves per tree.
        min_samples_leaf: smallest leaf.
        seed: ``random_state`` (early-stopping split, feature subsampling).
        max_features: share of the features each split node may choose from, in (0, 1]
            (scikit-learn >= 1.4; None: all, as before the option). With it, boosters that
            differ only in ``seed`` grow different trees (seed bagging).
        l2_regularization: L2 penalty on the leaf values (0: none, scikit-learn's default).

    Example:
        >>> BoosterSettings(max_iter=800, learning_rate=0.02).sklearn_kwargs()["learning_rate"]
        0.02
    """

    max_iter: int = 300
    learning_rate: float = 0.1
    max_leaf_nodes: int = 63
    min_samples_leaf: int = 20
    seed: int = 0
    max_features: float | None = None
    l2_regularization: float = 0.0

    def __post_init__(self) -> None:
        if int(self.max_iter) < 1 or not float(self.learning_rate) > 0:
            raise ModelError(
                f"booster settings: max_iter must be >= 1 and learning_rate > 0, "
                f"got {self.max_iter} and {self.learning_rate}"
            )
        if int(self.max_leaf_nodes) < 2 or int(self.min_samples_leaf) < 1:
            raise ModelError(
                f"booster settings: max_leaf_nodes must be >= 2 and min_samples_leaf >= 1, "
                f"got {self.max_leaf_nodes} and {self.min_samples_leaf}"
            )
        if self.max_features is not None and not 0 < float(self.max_features) <= 1:
            raise ModelError(
                f"booster settings: max_features must be in (0, 1] or None, got {self.max_features}"
            )
        if not float(self.l2_regularization) >= 0:
            raise ModelError(
                f"booster settings: l2_regularization must be >= 0, got {self.l2_regularization}"
            )

    def sklearn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of scikit-learn's histogram gradient-boosting estimators.

        The optional settings are passed only when set (scikit-learn's defaults otherwise).
        """
        kw: dict[str, Any] = {
            "max_iter": int(self.max_iter),
            "learning_rate": float(self.learning_rate),
            "max_leaf_nodes": int(self.max_leaf_nodes),
            "min_samples_leaf": int(self.min_samples_leaf),
            "random_state": int(self.seed),
        }
        if self.max_features is not None:
            kw["max_features"] = float(self.max_features)
        if self.l2_regularization:
            kw["l2_regularization"] = float(self.l2_regularization)
        return kw

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (the layout model cards store).

        The optional settings appear only when they differ from their defaults: settings
        made before them keep the five-key layout (and the Magpie boosters' card params).
        """
        data = asdict(self)
        for key, default in OPTIONAL_DEFAULTS.items():
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, defaults: BoosterSettings | None = None) -> Self:
        """Settings from a dict written by :meth:`to_dict` (keys missing there: ``defaults``'s).

        Raises:
            ModelError: a key that is not a setting.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelError(f"booster settings: unknown keys {unknown} (known: {sorted(names)})")
        base = cls() if defaults is None else defaults
        return replace(base, **data)  # type: ignore[return-value]

    def with_seed(self, seed: int) -> Self:
        """The same settings with another seed."""
        return replace(self, seed=int(seed))


#: optional settings and their defaults (left out of :meth:`BoosterSettings.to_dict` there)
OPTIONAL_DEFAULTS: dict[str, Any] = {"max_features": None, "l2_regularization": 0.0}
#: names of the settings every card holds (the keys of :meth:`BoosterSettings.to_dict` at the
#: optional settings' defaults)
BOOSTER_KEYS: tuple[str, ...] = tuple(
    f.name for f in fields(BoosterSettings) if f.name not in OPTIONAL_DEFAULTS
)


def changed_settings(base: BoosterSettings, **changes: Any) -> BoosterSettings | None:
    """``base`` with the ``changes`` that are not None, or None when all are (command-line options).

    Raises:
        ModelError: a changed setting out of range.
    """
    given = {k: v for k, v in changes.items() if v is not None}
    return replace(base, **given) if given else None


__all__ = ["BOOSTER_KEYS", "OPTIONAL_DEFAULTS", "BoosterSettings", "changed_settings"]
