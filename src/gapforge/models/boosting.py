"""Settings of the histogram gradient-boosting models (scikit-learn) that gapforge fits.

One frozen dataclass for the five settings every booster here has: the Magpie metal
classifier and gap regressor attached to a Roost oracle (:mod:`gapforge.models.metal_gate`)
and the experimental-gap head's classifier and regressors (:mod:`gapforge.models.experiment`).
Each class keeps its own defaults as an instance of it.
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

    Example:
        >>> BoosterSettings(max_iter=800, learning_rate=0.02).sklearn_kwargs()["learning_rate"]
        0.02
    """

    max_iter: int = 300
    learning_rate: float = 0.1
    max_leaf_nodes: int = 63
    min_samples_leaf: int = 20
    seed: int = 0

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

    def sklearn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of scikit-learn's histogram gradient-boosting estimators."""
        return {
            "max_iter": int(self.max_iter),
            "learning_rate": float(self.learning_rate),
            "max_leaf_nodes": int(self.max_leaf_nodes),
            "min_samples_leaf": int(self.min_samples_leaf),
            "random_state": int(self.seed),
        }

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (the layout model cards store)."""
        return asdict(self)

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


#: names of the settings (the keys of :meth:`BoosterSettings.to_dict`)
BOOSTER_KEYS: tuple[str, ...] = tuple(f.name for f in fields(BoosterSettings))

__all__ = ["BOOSTER_KEYS", "BoosterSettings"]
