from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import Composition

from gapforge.encoding import (
    MP_BANDGAP_ELEMENTS,
    FormulaEncoder,
    counts_to_onehot,
    n_atoms,
    n_elements_of,
    onehot_to_counts,
)
from gapforge.errors import FormulaError

ENC = FormulaEncoder()


def test_default_vocabulary_is_89_elements_in_atomic_number_order() -> None:
    assert ENC.shape == (89, 8)
    zs = [Composition(e).elements[0].Z for e in ENC.elements]
    assert zs == sorted(zs)
    assert ENC.elements[0] == "H"
    assert ENC.elements[-1] == "Pu"


def test_encode_known_formula_sets_the_right_cells() -> None:
    batch = ENC.encode(["Li2O"])
    m = batch.matrices[0]
    li, o = ENC.elements.index("Li"), ENC.elements.index("O")
    assert m[li, 1] == 1  # count 2 -> column 1
    assert m[o, 0] == 1
    assert m.sum() == 2
    assert batch.reduced[0] == "Li2O"
    assert batch.valid[0]


def test_encode_reduces_by_gcd_and_reports_every_failure() -> None:
    batch = ENC.encode(["Li2F2", "Mg1Mn2O4", "K9Cl9", "Li9F", "Xx2", "Li0.31416F", "Og2", "NaCl("])
    assert list(batch.valid) == [True, True, True, False, False, False, False, False]
    assert batch.reduced[0] == "LiF"
    assert batch.reduced[2] == "KCl"
    reasons = list(batch.reasons)
    assert reasons[:3] == ["", "", ""]
    assert reasons[3].startswith("count 9 of Li above 8")
    assert "unknown element Xx" in reasons[4]
    assert "fractional" in reasons[5]
    assert "Og not in the vocabulary" in reasons[6]
    assert "cannot parse" in reasons[7]
    assert (batch.matrices[~batch.valid] == 0).all()


def test_encode_matrices_strict_raises_on_first_bad_row() -> None:
    with pytest.raises(FormulaError, match=r"row 2.*Li9F"):
        ENC.encode_matrices(["LiF", "Li9F"])


def test_decode_strict_rule() -> None:
    scores = np.zeros((4, *ENC.shape))
    li, f, o = (ENC.elements.index(e) for e in ("Li", "F", "O"))
    scores[0, li, 0] = 0.9
    scores[0, f, 0] = 0.6  # LiF
    scores[1, li, 0] = 0.9
    scores[1, li, 2] = 0.7  # two levels on for Li -> invalid
    scores[2] = 0.49  # nothing reaches 0.5 -> empty -> invalid
    scores[3, li, 1] = 0.5
    scores[3, o, 0] = 1.0  # Li2O (threshold inclusive)
    assert ENC.decode(scores) == ["LiF", None, None, "Li2O"]


def test_decode_argmax_rule() -> None:
    scores = np.zeros((2, *ENC.shape))
    li, f = ENC.elements.index("Li"), ENC.elements.index("F")
    scores[0, li, 0] = 0.9
    scores[0, li, 2] = 0.7  # argmax keeps count 1
    scores[0, f, 3] = 0.8  # F4 -> LiF4
    scores[1] = 0.3
    assert ENC.decode(scores, rule="argmax") == ["LiF4", None]


def test_decode_reduces_by_gcd() -> None:
    counts = np.zeros((1, 89), dtype=np.int16)
    counts[0, ENC.elements.index("Na")] = 4
    counts[0, ENC.elements.index("Cl")] = 4
    assert ENC.decode(counts_to_onehot(counts, 8)) == ["NaCl"]


def test_decode_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        ENC.decode(np.zeros((2, 10, 8)))


def test_counts_helpers() -> None:
    counts = ENC.encode(["SrYF5", "LiF"]).counts
    assert list(n_atoms(counts)) == [7, 2]
    assert list(n_elements_of(counts)) == [3, 2]
    assert (onehot_to_counts(counts_to_onehot(counts, 8)) == counts).all()


def test_to_from_dict_round_trip() -> None:
    enc = FormulaEncoder(("O", "Li", "F"), 4)
    assert enc.elements == ("Li", "O", "F")
    assert FormulaEncoder.from_dict(enc.to_dict()) == enc


def test_custom_vocabulary_flags_outside_elements() -> None:
    enc = FormulaEncoder.from_formulas(["LiF", "NaCl"])
    assert enc.elements == ("Li", "F", "Na", "Cl")
    batch = enc.encode(["KCl"])
    assert not batch.valid[0]
    assert "K not in the vocabulary" in batch.reasons[0]


formula_counts = st.dictionaries(
    st.sampled_from(MP_BANDGAP_ELEMENTS), st.integers(min_value=1, max_value=8), min_size=1, max_size=5
)


@settings(max_examples=300, deadline=None)
@given(st.lists(formula_counts, min_size=1, max_size=20))
def test_round_trip_random_formulas(batch_counts: list[dict[str, int]]) -> None:
    formulas = ["".join(f"{el}{n}" for el, n in c.items()) for c in batch_counts]
    batch = ENC.encode(formulas)
    assert batch.valid.all()
    expected = [Composition(f).reduced_formula for f in formulas]
    assert list(batch.reduced) == expected
    assert ENC.decode(batch.matrices) == expected
    assert ENC.decode(batch.matrices.astype(float), rule="argmax") == expected


@pytest.mark.data
def test_exact_round_trip_on_all_of_mp_bandgap(real_data_env) -> None:
    from gapforge.data import load_dataset

    df = load_dataset("mp-bandgap")
    batch = ENC.encode(df["formula"].to_numpy())
    assert batch.valid.sum() == 29_121
    assert (batch.reasons[~batch.valid] != "").all()
    decoded = ENC.decode(batch.matrices[batch.valid])
    assert decoded == list(df["formula"].to_numpy()[batch.valid])
