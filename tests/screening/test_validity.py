"""The vectorised SMACT check must equal smact.screening.smact_validity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from smact.screening import smact_validity

from gapforge.encoding import FormulaEncoder
from gapforge.screening.validity import SmactChecker, SmactConfig

ENC = FormulaEncoder()


def _reference(formulas, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([smact_validity(f, **kwargs) for f in formulas])


def _random_counts(n: int, seed: int, max_elements: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, ENC.n_elements), dtype=np.int64)
    for i in range(n):
        k = rng.integers(2, max_elements + 1)
        cols = rng.choice(ENC.n_elements, size=k, replace=False)
        counts[i, cols] = rng.integers(1, ENC.n_levels + 1, size=k)
    return counts


@pytest.fixture(scope="module")
def checker() -> SmactChecker:
    return SmactChecker(ENC.elements)


def test_known_answers(checker):
    formulas = [
        "NaCl",
        "NaCl2",
        "MgO",
        "Al2O3",
        "Fe",
        "CuZn",
        "SrYF5",
        "He2O",
        "NaPm",
        "LiFeO2",
        "OF2",
        "FO2",
    ]
    got = checker.check_counts(ENC.formulas_to_counts(formulas))
    assert got.tolist() == _reference(formulas).tolist()
    # NaCl2 cannot be neutral; a single element and an all-metal alloy pass; He has no oxidation state
    assert got.tolist()[:6] == [True, False, True, True, True, True]
    assert not got[formulas.index("He2O")]


def test_equals_smact_on_random_formulas(checker):
    counts = _random_counts(2500, seed=0)
    formulas = ENC.counts_to_formulas(counts)
    ref = _reference(formulas)
    got = checker.check_counts(counts)
    assert 0.2 < ref.mean() < 0.8  # a real mix of valid and invalid cases
    mismatched = [f for f, a, b in zip(formulas, ref, got, strict=True) if a != b]
    assert mismatched == []


def test_equals_smact_on_many_element_formulas(checker):
    counts = _random_counts(120, seed=1, max_elements=8)
    counts = counts[(counts > 0).sum(axis=1) >= 6]
    formulas = ENC.counts_to_formulas(counts)
    assert checker.check_counts(counts).tolist() == _reference(formulas).tolist()


def test_pauling_test_is_vectorised_beyond_max_vectorised_elements():
    """With the Pauling test the vectorised path serves any element count (no slow fallback)."""
    counts = _random_counts(150, seed=3, max_elements=8)
    counts = counts[(counts > 0).sum(axis=1) >= 5]
    formulas = ENC.counts_to_formulas(counts)
    small = SmactChecker(ENC.elements, SmactConfig(max_vectorised_elements=2))
    small._fallback = None  # any fallback call would raise TypeError
    assert small.check_counts(counts).tolist() == _reference(formulas).tolist()


def test_without_pauling_test_equals_smact():
    counts = _random_counts(600, seed=2, max_elements=4)
    formulas = ENC.counts_to_formulas(counts)
    got = SmactChecker(ENC.elements, SmactConfig(use_pauling_test=False)).check_counts(counts)
    assert got.tolist() == _reference(formulas, use_pauling_test=False).tolist()
    # dropping the electronegativity test can only make more formulas valid
    assert got.sum() >= SmactChecker(ENC.elements).check_counts(counts).sum()


def test_alloys_option():
    counts = ENC.formulas_to_counts(["CuZn", "Fe3Al", "NaCl"])
    got = SmactChecker(ENC.elements, SmactConfig(include_alloys=False)).check_counts(counts)
    ref = _reference(["CuZn", "Fe3Al", "NaCl"], include_alloys=False)
    assert got.tolist() == ref.tolist()


def test_unreduced_counts_are_reduced_first(checker):
    counts = ENC.formulas_to_counts(["NaCl"]).astype(np.int64) * 2
    assert checker.check_counts(counts).tolist() == [True]


def test_empty_row_is_invalid(checker):
    assert checker.check_counts(np.zeros((2, ENC.n_elements), dtype=np.int16)).tolist() == [False, False]


def test_check_formulas_handles_bad_text(checker):
    got = checker.check_counts(ENC.formulas_to_counts(["NaCl"]))
    assert got.tolist() == [True]
    out = checker.check_formulas(["NaCl", "Xx2O", "", "not a formula", "Fe20O30", "Na12Cl12"])
    assert out.tolist() == [True, False, False, False, True, True]


def test_shape_is_checked(checker):
    with pytest.raises(ValueError, match="shape"):
        checker.check_counts(np.zeros((3, 5)))


@pytest.mark.data
def test_equals_smact_on_materials_project_formulas(real_data_env, checker):
    from gapforge.data import load_formulas

    formulas = load_formulas("mp-formulas")["formula"].sample(1500, random_state=0).tolist()
    batch = ENC.encode(formulas)
    reduced = batch.reduced[batch.valid].tolist()
    got = checker.check_counts(batch.counts[batch.valid])
    assert got.tolist() == _reference(reduced).tolist()


# -- every SMACT helper is the same rule ------------------------------------------------
SAME_RULE = ["NaCl", "Fe2O3", "CsPbI3", "NaCl2", "Fe", "H2O", "CuZn", "MgO", "Al2O3", "SrYF5", "LiF2"]


@pytest.mark.parametrize("include_alloys", [True, False])
def test_smact_helpers_agree(include_alloys):
    from gapforge.models.latent_metrics import SmactSettings
    from gapforge.models.latent_metrics import smact_valid as latent_smact_valid
    from gapforge.screening.filters import smact_valid as filters_smact_valid

    formulas = SAME_RULE
    config = SmactConfig(include_alloys=include_alloys)
    ref = _reference(formulas, include_alloys=include_alloys).tolist()
    checker = SmactChecker(ENC.elements, config)
    assert checker.check_formulas(formulas).tolist() == ref
    assert filters_smact_valid(ENC.formulas_to_counts(formulas), ENC.elements, config).tolist() == ref
    settings = SmactSettings(include_alloys=include_alloys)
    assert settings.to_config() == config
    assert latent_smact_valid(formulas, settings).tolist() == ref
    # the expected answers, spelled out (CuZn is the alloy)
    expected = [True, True, True, False, True, True, include_alloys, True, True, True, False]
    assert ref == expected


def test_smact_helpers_reject_unknown_elements():
    from gapforge.models.latent_metrics import smact_valid as latent_smact_valid

    # pymatgen reads "Xx" as a dummy species (smact_validity's single-element fast path says valid);
    # gapforge's one rule says an unknown element is invalid, everywhere
    assert SmactChecker(ENC.elements).check_formulas(["Xx", "Xx2O"]).tolist() == [False, False]
    assert latent_smact_valid(["Xx", "Xx2O", None]).tolist() == [False, False, False]


def test_latent_settings_only_icsd24():
    from gapforge.models.latent_metrics import SmactSettings

    with pytest.raises(ValueError, match="ICSD-24"):
        SmactSettings(oxidation_states_set="smact14")
