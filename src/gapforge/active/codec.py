"""Latent codecs: formula <-> continuous latent vector.

The campaign searches a continuous latent space and needs only three things of
it (:class:`LatentCodec`): ``encode(formulas) -> (N, d)``, ``decode(z) ->
list[str | None]`` and ``latent_bounds`` ``(2, d)``. The production codec is
the composition autoencoder (:mod:`gapforge.models.autoencoder`);
:class:`LinearCodec` is a small, exact-to-fit linear (PCA) codec over the
one-hot formula matrices, used in tests, in benchmarks and as a fallback when
no autoencoder is available.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np

from gapforge.encoding import FormulaEncoder
from gapforge.errors import InputError, ModelError
from gapforge.io import atomic_path, write_json

log = logging.getLogger(__name__)

CODEC_CARD = "codec.json"
CODEC_ARRAYS = "codec.npz"


@runtime_checkable
class LatentCodec(Protocol):
    """What the campaign needs of a latent space."""

    def encode(self, formulas: Sequence[str]) -> np.ndarray:
        """Latent vectors ``(N, d)`` of formulas (NaN rows where not encodable)."""
        ...

    def decode(self, z: np.ndarray) -> list[str | None]:
        """Reduced formulas of latent vectors ``(N, d)``; ``None`` where the decode is invalid."""
        ...

    @property
    def latent_bounds(self) -> np.ndarray:
        """``(2, d)`` lower and upper bound of the searched box."""
        ...


class LinearCodec:
    """PCA of the flattened one-hot formula matrices, decoded by the encoder's rule.

    ``encode``: one-hot ``(N, E, L)`` -> flatten -> centre -> project on the
    first ``latent_dim`` principal axes. ``decode``: back-project to scores
    ``(N, E, L)`` and decode with :meth:`FormulaEncoder.decode` (``rule``,
    ``threshold``). Bounds are the training codes' range widened by ``margin``
    of its width on each side.

    Args:
        latent_dim: size ``d`` of the latent space.
        rule: decoding rule of :class:`FormulaEncoder` (``"argmax"`` or ``"strict"``).
        threshold: decoding threshold.
        margin: relative widening of the bounding box of the training codes.
        elements: element vocabulary (default: the 89 mp-bandgap elements).
        n_levels: count levels of the one-hot matrices.
    """

    kind = "linear"

    def __init__(
        self,
        latent_dim: int = 16,
        rule: str = "argmax",
        threshold: float = 0.3,
        margin: float = 0.05,
        elements: Sequence[str] | None = None,
        n_levels: int = 8,
    ) -> None:
        self.latent_dim = latent_dim
        self.rule = rule
        self.threshold = threshold
        self.margin = margin
        self.elements = elements
        self.n_levels = n_levels

    # -- fitting -----------------------------------------------------------------------
    @property
    def encoder_(self) -> FormulaEncoder:
        """The one-hot formula encoder."""
        if self.elements is None:
            return FormulaEncoder(n_levels=self.n_levels)
        return FormulaEncoder(tuple(self.elements), self.n_levels)

    def fit(self, formulas: Sequence[str]) -> Self:
        """Fit the principal axes on encodable ``formulas`` (others are skipped)."""
        from scipy import sparse

        batch = self.encoder_.encode(formulas)
        n = int(batch.valid.sum())
        if n <= self.latent_dim:
            raise InputError(
                f"need more than latent_dim={self.latent_dim} encodable formulas to fit a linear codec",
                value=n,
            )
        # the one-hot matrix is sparse (a few ones per row): covariance from X^T X, then eigh
        x = sparse.csr_matrix(batch.matrices[batch.valid].reshape(n, -1), dtype=np.float64)
        self.mean_ = np.asarray(x.mean(axis=0)).ravel()
        cov = (x.T @ x).toarray() / n - np.outer(self.mean_, self.mean_)
        vals, vecs = np.linalg.eigh(cov)
        comps = vecs[:, np.argsort(vals)[::-1][: self.latent_dim]].T
        # fix each axis' sign (largest-magnitude loading positive) so fits are reproducible
        signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
        self.components_ = comps * signs[:, None]
        z = np.asarray(x @ self.components_.T) - self.mean_ @ self.components_.T
        lo, hi = z.min(axis=0), z.max(axis=0)
        pad = self.margin * (hi - lo)
        self.bounds_ = np.stack([lo - pad, hi + pad])
        log.info("fitted a %d-d linear codec on %d formulas", self.latent_dim, n)
        return self

    def _check(self) -> None:
        if not hasattr(self, "components_"):
            raise ModelError("linear codec is not fitted")

    # -- the LatentCodec protocol ------------------------------------------------------
    @property
    def latent_bounds(self) -> np.ndarray:
        """``(2, d)`` search box."""
        self._check()
        return self.bounds_.copy()

    def encode(self, formulas: Sequence[str]) -> np.ndarray:
        """Latent codes ``(N, d)``; rows of formulas that cannot be encoded are NaN."""
        self._check()
        batch = self.encoder_.encode(formulas)
        x = batch.matrices.reshape(len(batch), -1).astype(np.float64)
        z = (x - self.mean_) @ self.components_.T
        z[~batch.valid] = np.nan
        return z

    def decode(self, z: np.ndarray) -> list[str | None]:
        """Formulas of latent codes ``(N, d)`` (``None`` where invalid)."""
        self._check()
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        scores = (z @ self.components_ + self.mean_).reshape(len(z), *self.encoder_.shape)
        return self.encoder_.decode(scores, rule=self.rule, threshold=self.threshold)  # type: ignore[arg-type]

    # -- persistence -------------------------------------------------------------------
    def get_params(self) -> dict:
        """Constructor parameters."""
        return {
            "latent_dim": self.latent_dim,
            "rule": self.rule,
            "threshold": self.threshold,
            "margin": self.margin,
            "elements": None if self.elements is None else list(self.elements),
            "n_levels": self.n_levels,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``codec.json`` (kind + params) and ``codec.npz`` (arrays) atomically."""
        self._check()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / CODEC_ARRAYS) as tmp, tmp.open("wb") as fh:
            np.savez(fh, mean=self.mean_, components=self.components_, bounds=self.bounds_)
        write_json({"kind": self.kind, "params": self.get_params()}, directory / CODEC_CARD)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LinearCodec:
        """Inverse of :meth:`save` (arrays read with ``allow_pickle=False``)."""
        directory = Path(directory)
        try:
            card = json.loads((directory / CODEC_CARD).read_text())
            arrays = np.load(directory / CODEC_ARRAYS, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{directory}: cannot read linear codec ({exc})") from exc
        if card.get("kind") != cls.kind:
            raise ModelError(f"{directory}: not a linear codec (kind {card.get('kind')!r})")
        self = cls(**card["params"])
        self.mean_ = arrays["mean"]
        self.components_ = arrays["components"]
        self.bounds_ = arrays["bounds"]
        return self


class AutoencoderCodec:
    """Adapter of :class:`gapforge.models.autoencoder.CompositionAutoencoder` to :class:`LatentCodec`.

    Args:
        model: ``"default"`` (the shipped autoencoder) or a model directory.
    """

    kind = "autoencoder"

    def __init__(self, model: str = "default") -> None:
        self.model = model
        try:
            from gapforge.models.autoencoder import CompositionAutoencoder
        except ImportError as exc:  # pragma: no cover - depends on the other issue
            raise ModelError(f"the composition autoencoder is not available ({exc})") from exc
        self.autoencoder_ = CompositionAutoencoder.load(model)

    @property
    def latent_bounds(self) -> np.ndarray:
        """``(2, d)`` search box saved with the autoencoder."""
        return np.asarray(self.autoencoder_.latent_bounds, dtype=np.float64)

    def encode(self, formulas: Sequence[str]) -> np.ndarray:
        """Latent codes ``(N, d)``."""
        return np.asarray(self.autoencoder_.encode(list(formulas), errors="nan"), dtype=np.float64)

    def decode(self, z: np.ndarray) -> list[str | None]:
        """Decoded formulas (``None`` where invalid)."""
        return list(self.autoencoder_.decode(np.asarray(z, dtype=np.float32)))
