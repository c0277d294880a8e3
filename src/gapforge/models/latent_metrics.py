"""How good is a latent space? Reconstruction, decode validity, SMACT validity, novelty.

Measures (all rates are fractions in [0, 1]):

* **exact reconstruction** -- held-out formula -> latent -> the same reduced formula.
* **decode validity** -- the decode is a parseable formula whose every
  element count is in ``1..L`` (it re-encodes with the model's vocabulary).
* **SMACT validity** -- the decode is valid *and* passes
  :class:`gapforge.screening.validity.SmactChecker` (equal to
  :func:`smact.screening.smact_validity`: charge neutrality with ICSD-24
  oxidation states and the Pauling electronegativity test; pure metals and
  alloys are *not* accepted automatically; compositions of more than
  ``max_elements`` = 6 elements count as invalid without the exponential check). Rates are over all points, so
  they are the share of oracle calls that would go to plausible chemistry.
* **SMACT-valid compounds** -- as SMACT validity, but only decodes with at
  least two elements (SMACT accepts every single element).
* **novelty** -- share of the valid decodes that are not training formulas.
* **uniqueness** -- distinct valid decodes / valid decodes.

Random latent points are drawn uniformly inside the per-dimension bounds of
the training encodings (as the Bayesian-optimisation search does) and from a
Gaussian fitted to them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gapforge.encoding import FormulaEncoder
from gapforge.errors import FormulaError
from gapforge.formula import atomic_number, known_elements, parse_formula
from gapforge.screening.validity import SmactChecker, SmactConfig

if TYPE_CHECKING:
    from gapforge.models.autoencoder import CompositionAutoencoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmactSettings:
    """Pinned SMACT settings of the latent-space measures (SMACT 4.0 changed its defaults).

    The check itself is :class:`gapforge.screening.validity.SmactChecker`, the
    one SMACT rule of gapforge; these settings map onto its
    :class:`~gapforge.screening.validity.SmactConfig` (:meth:`to_config`).
    """

    use_pauling_test: bool = True
    include_alloys: bool = False
    oxidation_states_set: str | None = None  # None = ICSD-24 filter below (the only set supported)
    icsd_consensus: int = 3
    icsd_commonality: str = "low"
    #: compositions with more distinct elements count as not SMACT-valid without running SMACT,
    #: whose oxidation-state enumeration grows exponentially (a 9-element decode took 15 s)
    max_elements: int = 6

    def __post_init__(self) -> None:
        if self.oxidation_states_set is not None:
            raise ValueError(
                f"oxidation_states_set={self.oxidation_states_set!r} is not supported: "
                "SMACT validity uses the ICSD-24 oxidation states (leave it None)"
            )

    def to_config(self) -> SmactConfig:
        """The equivalent :class:`~gapforge.screening.validity.SmactConfig`."""
        return SmactConfig(
            consensus=self.icsd_consensus,
            commonality=self.icsd_commonality,
            use_pauling_test=self.use_pauling_test,
            include_alloys=self.include_alloys,
        )


DEFAULT_SMACT = SmactSettings()


@functools.cache
def _checker(settings: SmactSettings) -> SmactChecker:
    """One :class:`SmactChecker` per settings, over every element pymatgen knows."""
    return SmactChecker(sorted(known_elements(), key=atomic_number), settings.to_config())


def _n_elements(formula: str) -> int | None:
    """Distinct elements of ``formula``; ``None`` if it does not parse."""
    try:
        return len(parse_formula(formula))
    except FormulaError:
        return None


def smact_valid(formulas: Iterable[str | None], settings: SmactSettings = DEFAULT_SMACT) -> np.ndarray:
    """``(N,)`` bool: SMACT-valid formulas (``None``, unparsable or too many elements -> False).

    Delegates to :meth:`gapforge.screening.validity.SmactChecker.check_formulas`.
    """
    formulas = list(formulas)
    out = np.zeros(len(formulas), dtype=bool)
    idx = []
    for i, f in enumerate(formulas):
        if f is None:
            continue
        k = _n_elements(f)
        if k is not None and k <= settings.max_elements:
            idx.append(i)
    if idx:
        out[idx] = _checker(settings).check_formulas([formulas[i] for i in idx])
    return out


def decode_valid(formulas: Sequence[str | None], encoder: FormulaEncoder) -> np.ndarray:
    """``(N,)`` bool: a formula (not None) that re-encodes with every count in ``1..L``."""
    out = np.zeros(len(formulas), dtype=bool)
    idx = [i for i, f in enumerate(formulas) if f]
    if idx:
        out[idx] = encoder.encode([formulas[i] for i in idx]).valid
    return out


@dataclass(frozen=True)
class DecodeStats:
    """Decode measures of one set of latent points (rates in [0, 1])."""

    source: str
    n: int
    valid: float
    smact_valid: float
    smact_valid_of_valid: float
    novel: float
    unique: float
    exact: float | None = None
    mean_elements: float | None = None
    smact_compound: float = 0.0  # SMACT-valid *and* >= 2 elements, share of all points

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def decode_stats(
    decoded: Sequence[str | None],
    *,
    source: str,
    encoder: FormulaEncoder,
    training: frozenset[str] | set[str],
    targets: Sequence[str] | None = None,
    smact: SmactSettings = DEFAULT_SMACT,
) -> DecodeStats:
    """Measures of a list of decodes (``targets`` = the reduced formulas they should reproduce)."""
    n = len(decoded)
    if n == 0:
        raise ValueError("no decodes to measure")
    valid = decode_valid(decoded, encoder)
    ok = [decoded[i] for i in np.flatnonzero(valid)]
    sm = smact_valid(ok, smact)
    novel = np.array([f not in training for f in ok], dtype=bool)
    exact = None
    if targets is not None:
        exact = float(np.mean([d == t for d, t in zip(decoded, targets, strict=True)]))
    n_el = None
    compound = np.zeros(len(ok), dtype=bool)
    if ok:
        per = (encoder.encode(ok).counts > 0).sum(axis=1)
        n_el = float(np.mean(per))
        compound = per >= 2
    return DecodeStats(
        source=source,
        n=n,
        valid=float(valid.mean()),
        smact_valid=float(sm.sum() / n),
        smact_valid_of_valid=float(sm.mean()) if ok else 0.0,
        novel=float(novel.mean()) if ok else 0.0,
        unique=float(len(set(ok)) / len(ok)) if ok else 0.0,
        exact=exact,
        mean_elements=n_el,
        smact_compound=float((sm & compound).sum() / n),
    )


@dataclass(frozen=True)
class AutoencoderEvaluation:
    """Held-out reconstruction and random-point decode measures of one model."""

    arch: str
    heldout: DecodeStats | None
    uniform: DecodeStats
    gaussian: DecodeStats
    heldout_smact_baseline: float | None  # SMACT validity of the held-out formulas themselves

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "arch": self.arch,
            "heldout": self.heldout.to_dict() if self.heldout else None,
            "uniform": self.uniform.to_dict(),
            "gaussian": self.gaussian.to_dict(),
            "heldout_smact_baseline": self.heldout_smact_baseline,
        }


def evaluate_autoencoder(
    model: CompositionAutoencoder,
    heldout: Sequence[str] | None,
    *,
    n_samples: int = 2000,
    seed: int = 0,
    smact: SmactSettings = DEFAULT_SMACT,
) -> AutoencoderEvaluation:
    """Evaluate a fitted autoencoder.

    Args:
        model: a fitted :class:`~gapforge.models.autoencoder.CompositionAutoencoder`.
        heldout: formulas not used in training (may be empty or None).
        n_samples: random latent points per method (uniform in bounds, Gaussian).
        seed: seed of the random points.
        smact: pinned SMACT settings.
    """
    enc = model.formula_encoder
    training = model.training_formulas
    held = None
    baseline = None
    if heldout:
        targets = enc.encode(list(heldout)).reduced.tolist()
        decoded = model.reconstruct(list(heldout))
        held = decode_stats(
            decoded, source="held-out", encoder=enc, training=training, targets=targets, smact=smact
        )
        baseline = float(smact_valid(targets, smact).mean())
    uni = model.decode(model.sample(n_samples, method="uniform", seed=seed))
    gau = model.decode(model.sample(n_samples, method="gaussian", seed=seed + 1))
    return AutoencoderEvaluation(
        arch=model.arch,
        heldout=held,
        uniform=decode_stats(uni, source="uniform", encoder=enc, training=training, smact=smact),
        gaussian=decode_stats(gau, source="gaussian", encoder=enc, training=training, smact=smact),
        heldout_smact_baseline=baseline,
    )


# ----------------------------------------------------------------------------------------------
# latent map
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatentMap:
    """2-D projections of encodings (``(N, 2)`` each) and the figure written."""

    path: Path
    pca: np.ndarray
    pca_explained: tuple[float, float]
    tsne: np.ndarray | None
    n_points: int


def latent_map(
    model: CompositionAutoencoder,
    formulas: Sequence[str],
    band_gaps: Sequence[float],
    out: str | Path,
    *,
    tsne: int = 0,
    seed: int = 0,
    title: str | None = None,
) -> LatentMap:
    """PNG of the training encodings projected to 2-D, coloured by band gap (eV).

    Args:
        model: fitted autoencoder.
        formulas: labelled formulas (non-encodable ones are skipped).
        band_gaps: their band gaps in eV.
        out: PNG path (written atomically).
        tsne: if > 0, also a t-SNE panel on a random subsample of this many points.
        seed: seed of the t-SNE subsample and embedding.
        title: figure title.
    """
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from gapforge.io import atomic_path

    gaps = np.asarray(band_gaps, dtype=float)
    enc = model.encode_batch(list(formulas))
    keep = enc.valid & np.isfinite(gaps)
    z, g = enc.z[keep], gaps[keep]
    if len(z) < 3:
        raise ValueError("need at least 3 encodable labelled formulas for a latent map")
    pca = PCA(n_components=2, random_state=seed).fit(z)
    p2 = pca.transform(z)
    t2 = None
    sub = None
    if tsne > 0:
        from sklearn.manifold import TSNE

        rng = np.random.default_rng(seed)
        sub = rng.choice(len(z), size=min(tsne, len(z)), replace=False)
        t2 = TSNE(
            n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(sub) - 1) / 3)
        ).fit_transform(z[sub])
    panels = 2 if t2 is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 5.2), squeeze=False)
    order = np.argsort(g)  # wide gaps drawn on top
    vmax = float(np.percentile(g, 99)) if len(g) else 1.0
    ax = axes[0, 0]
    sc = ax.scatter(
        p2[order, 0], p2[order, 1], c=g[order], s=2, cmap="viridis", vmin=0, vmax=vmax, linewidths=0
    )
    ev = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({ev[0]:.1%} of variance)")
    ax.set_ylabel(f"PC2 ({ev[1]:.1%} of variance)")
    ax.set_title(f"PCA of {len(z):,} encodings")
    if t2 is not None:
        gs = g[sub]
        o = np.argsort(gs)
        ax = axes[0, 1]
        ax.scatter(t2[o, 0], t2[o, 1], c=gs[o], s=3, cmap="viridis", vmin=0, vmax=vmax, linewidths=0)
        ax.set_title(f"t-SNE of {len(sub):,} encodings")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes.ravel().tolist(), label="band gap (eV)")
    fig.suptitle(title or f"{model.arch} autoencoder latent space (D={model.latent_dim})")
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    return LatentMap(out, p2, (float(ev[0]), float(ev[1])), t2, len(z))


__all__ = [
    "DEFAULT_SMACT",
    "AutoencoderEvaluation",
    "DecodeStats",
    "LatentMap",
    "SmactSettings",
    "decode_stats",
    "decode_valid",
    "evaluate_autoencoder",
    "latent_map",
    "smact_valid",
]
