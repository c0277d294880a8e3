"""Element substitution: put a candidate's elements onto a template's sites.

The template and the candidate share an anonymised formula, so every element
of the candidate can replace one element of the template with the same reduced
amount. Among those one-to-one maps the one chosen

1. keeps cations on cation sites and anions on anion sites (signs of the most
   probable oxidation states from ``Composition.oxi_state_guesses``), then
2. moves the least distance on the modified Pettifor scale (the ElMD ground
   distance, weighted by amount), then
3. changes the oxidation states least.

The volume is then rescaled with pymatgen's ``RLSVolumePredictor`` (bond
lengths of the template rescaled by the ratio of ionic, else atomic, radii); the
relaxation refines it.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Element, Structure
from pymatgen.io.cif import CifWriter

from gapforge.errors import GapforgeError
from gapforge.io import write_text
from gapforge.structure.elmd import as_composition, pettifor_position

log = logging.getLogger(__name__)


class SubstitutionError(GapforgeError):
    """A candidate cannot be substituted into a template."""


@dataclass(frozen=True)
class SubstitutionSettings:
    """How elements are substituted.

    Attributes:
        volume_method: ``"rls"`` (pymatgen ``RLSVolumePredictor`` against the
            template), ``"increments"`` (the sum of per-element volume increments fitted on
            the template library, :func:`fit_volume_increments`; RLS where an element has
            none) or ``"none"`` (keep the template's cell).
        require_oxidation_consistent: refuse maps that put a cation on an anion
            site (else such maps are only ranked last).
        volume_scale_bounds: the predicted volume change (new / template) is
            clipped to this range; radii-based predictions can be far off for
            unusual substitutions (C on a Cu site, Cl on an H site) and the
            relaxation's cell filter recovers a moderate error more safely than a
            fourfold compression.
    """

    volume_method: str = "rls"
    require_oxidation_consistent: bool = False
    volume_scale_bounds: tuple[float, float] = (0.5, 2.5)


@dataclass(frozen=True)
class Substitution:
    """A substituted structure.

    Attributes:
        structure: the candidate in the template's structure, volume rescaled.
        mapping: template element -> candidate element.
        oxidation_consistent: cations stay on cation sites and anions on anion
            sites (``None`` if either formula has no oxidation-state guess).
        volume_scale: new volume / template volume.
    """

    structure: Structure
    mapping: dict[str, str]
    oxidation_consistent: bool | None
    volume_scale: float

    @property
    def mapping_str(self) -> str:
        """``"Na->K Cl->Br"``."""
        return " ".join(f"{a}->{b}" for a, b in sorted(self.mapping.items()))


def oxidation_guess(comp: Composition) -> dict[str, float] | None:
    """Most probable oxidation state of each element (pymatgen), or ``None``."""
    try:
        guesses = comp.reduced_composition.oxi_state_guesses(max_sites=-50)
    except Exception:  # pymatgen can fail on exotic compositions
        return None
    return dict(guesses[0]) if guesses else None


def element_mapping(
    candidate: Composition | str, template: Composition | str
) -> tuple[dict[str, str], bool | None]:
    """Best map of template elements onto candidate elements.

    Returns:
        ``(mapping, oxidation_consistent)`` where mapping is template element ->
        candidate element.

    Raises:
        SubstitutionError: the anonymised formulas differ.
    """
    cand = as_composition(candidate).reduced_composition
    temp = as_composition(template).reduced_composition
    if cand.anonymized_formula != temp.anonymized_formula:
        raise SubstitutionError(
            f"stoichiometry of {cand.reduced_formula} ({cand.anonymized_formula}) differs from template "
            f"{temp.reduced_formula} ({temp.anonymized_formula})"
        )
    # atomic fractions: pymatgen reduces F to F2 and O to O2 but I to I, so amounts differ
    c_amt = cand.fractional_composition.get_el_amt_dict()
    t_amt = temp.fractional_composition.get_el_amt_dict()
    c_oxi, t_oxi = oxidation_guess(cand), oxidation_guess(temp)
    c_els = sorted(c_amt)
    best: tuple[tuple[float, ...], dict[str, str]] | None = None
    for perm in itertools.permutations(sorted(t_amt)):
        if any(abs(c_amt[c] - t_amt[t]) > 1e-8 for c, t in zip(c_els, perm, strict=True)):
            continue
        mismatch, oxi_cost = 0.0, 0.0
        if c_oxi is not None and t_oxi is not None:
            for c, t in zip(c_els, perm, strict=True):
                if c_oxi[c] * t_oxi[t] < 0 or (c_oxi[c] == 0) != (t_oxi[t] == 0):
                    mismatch += 1
                oxi_cost += abs(c_oxi[c] - t_oxi[t])
        petti = sum(
            c_amt[c] * abs(pettifor_position(c) - pettifor_position(t))
            for c, t in zip(c_els, perm, strict=True)
        )
        key = (mismatch, petti, oxi_cost)
        if best is None or key < best[0]:
            best = (key, {t: c for c, t in zip(c_els, perm, strict=True)})
    if best is None:  # cannot happen when the anonymised formulas agree
        raise SubstitutionError(f"no element map from {temp.reduced_formula} to {cand.reduced_formula}")
    consistent = None if c_oxi is None or t_oxi is None else best[0][0] == 0
    return best[1], consistent


VOLUME_METHODS = ("rls", "increments", "none")


def substitute(
    candidate: Composition | str,
    template: Structure,
    settings: SubstitutionSettings = SubstitutionSettings(),
    *,
    increments: Mapping[str, float] | None = None,
) -> Substitution:
    """Substitute ``candidate``'s elements into ``template``.

    ``increments`` (element -> Å^3 per atom, :func:`fit_volume_increments`) is what
    ``volume_method="increments"`` sums; without it, or without an element in it, RLS.

    Raises:
        SubstitutionError: different stoichiometry, or (if required) no
            oxidation-consistent map, or a degenerate result.
    """
    mapping, consistent = element_mapping(candidate, template.composition)
    if settings.require_oxidation_consistent and consistent is False:
        raise SubstitutionError(f"no oxidation-consistent map onto {template.composition.reduced_formula}")
    # A clean copy: no oxidation states, magnetic moments or other site properties.
    base = Structure(template.lattice, [_element_of(sp) for sp in template.species], template.frac_coords)
    new = base.copy()
    new.replace_species({Element(t): Element(c) for t, c in mapping.items()})
    scale = 1.0
    if settings.volume_method not in VOLUME_METHODS:
        raise ValueError(f"unknown volume_method {settings.volume_method!r}")
    if settings.volume_method != "none":
        volume = None
        if settings.volume_method == "increments" and increments is not None:
            volume = _increments_volume(new, increments)
        if volume is None:
            volume = _predict_volume(new, base)
        if volume is not None and volume > 0:
            lo, hi = settings.volume_scale_bounds
            scale = min(max(volume / new.volume, lo), hi)
            new.scale_lattice(new.volume * scale)
    return Substitution(structure=new, mapping=mapping, oxidation_consistent=consistent, volume_scale=scale)


def _element_of(species: object) -> str:
    symbol = getattr(species, "symbol", None)
    if symbol is None:
        symbol = getattr(getattr(species, "element", None), "symbol", None)
    return str(symbol if symbol is not None else species)


def volume_increments_for(library: Any, settings: SubstitutionSettings) -> Mapping[str, float] | None:
    """The library's volume increments where ``settings`` use them (fitted once per library), else None."""
    return library.volume_increments if settings.volume_method == "increments" else None


def _increments_volume(structure: Structure, increments: Mapping[str, float]) -> float | None:
    amounts = structure.composition.get_el_amt_dict()
    if any(el not in increments for el in amounts):
        return None
    return float(sum(n * increments[el] for el, n in amounts.items()))


def fit_volume_increments(
    formulas: Sequence[str], volumes_per_atom: Sequence[float], *, min_count: int = 3
) -> dict[str, float]:
    """Per-element volume increments (Å^3 per atom) from known structures.

    Fits ``V/atom = sum_el x_el v_el`` (``x`` the atomic fractions) by non-negative least
    squares on relative error, the additive-volume idea of Biltz and of Hofmann's atomic
    volumes (Acta Cryst. B 58, 2002). A radius-ratio guess (RLS) against a template can be
    far off for unusual substitutions (C on a Mn site gives a third of the relaxed volume);
    the increments do not depend on the template. Elements in fewer than ``min_count``
    formulas get none (RLS is used for them).

    Example:
        >>> inc = fit_volume_increments(["NaCl", "KCl", "NaF", "KF"], [22.0, 31.0, 12.5, 19.0], min_count=1)
        >>> round(inc["K"] - inc["Na"], 1) > 0
        True
    """
    from scipy.optimize import nnls

    comps = [Composition(f) for f in formulas]
    counts: dict[str, int] = {}
    for c in comps:
        for el in c.get_el_amt_dict():
            counts[el] = counts.get(el, 0) + 1
    elements = sorted(el for el, n in counts.items() if n >= min_count)
    column = {el: i for i, el in enumerate(elements)}
    rows, targets = [], []
    for c, v in zip(comps, volumes_per_atom, strict=True):
        amounts = c.get_el_amt_dict()
        if not np.isfinite(v) or v <= 0 or any(el not in column for el in amounts):
            continue
        row = np.zeros(len(elements))
        for el, n in amounts.items():
            row[column[el]] = n / c.num_atoms
        rows.append(row / v)  # relative error: each structure counts alike whatever its volume
        targets.append(1.0)
    if not rows:
        return {}
    x, _ = nnls(np.asarray(rows), np.asarray(targets))
    return {el: float(x[i]) for el, i in column.items() if x[i] > 0}


def _predict_volume(new: Structure, ref: Structure) -> float | None:
    from pymatgen.analysis.structure_prediction.volume_predictor import RLSVolumePredictor

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(RLSVolumePredictor(check_isostructural=False).predict(new, ref))
    except Exception as exc:  # missing radii etc.: keep the template volume
        log.debug("volume prediction failed for %s: %s", new.composition.reduced_formula, exc)
        return None


def write_cif(structure: Structure, path: str | Path, *, symprec: float | None = None) -> Path:
    """Write ``structure`` as a CIF atomically.

    The cell is written as is (P1) unless ``symprec`` asks for a symmetrised CIF.
    """
    try:
        text = str(CifWriter(structure, symprec=symprec)) if symprec else str(CifWriter(structure))
    except Exception:  # spglib can fail on distorted cells
        text = str(CifWriter(structure))
    return write_text(text, path)


def read_cif(path: str | Path) -> Structure:
    """Read one structure from a CIF file."""
    return Structure.from_file(str(path))


def mapping_from_str(text: str) -> Mapping[str, str]:
    """Inverse of :attr:`Substitution.mapping_str`."""
    return dict(pair.split("->") for pair in text.split())
