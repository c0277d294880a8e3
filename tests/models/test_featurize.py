from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gapforge.encoding import FormulaEncoder
from gapforge.models.featurize import (
    MAGPIE_PROPERTIES,
    MAGPIE_STATS,
    ORDER_STATS,
    MagpieFeaturizer,
    host_featurize,
    host_formulas,
    magpie_table,
)


@pytest.fixture(scope="module")
def feat() -> MagpieFeaturizer:
    return MagpieFeaturizer().fit()


def col(feat: MagpieFeaturizer, name: str) -> int:
    return list(feat.get_feature_names_out()).index(name)


def reference_features(amounts: dict[str, float]) -> list[float]:
    """Slow per-formula reference of the same features (matminer's definitions)."""
    table = magpie_table()
    total = sum(amounts.values())
    els = list(amounts)
    w = np.array([amounts[e] / total for e in els])
    out = []
    for prop in MAGPIE_PROPERTIES:
        v = np.array([table.loc[e, prop] for e in els])
        mean = float((w * v).sum())
        wmax = w.max()
        stats = {
            "minimum": v.min(),
            "maximum": v.max(),
            "range": v.max() - v.min(),
            "mean": mean,
            "avg_dev": float((w * np.abs(v - mean)).sum()),
            "mode": min(x for x, wi in zip(v, w, strict=True) if wi == wmax),
        }
        out += [stats[s] for s in MAGPIE_STATS]
    out.append(len(els))
    out += [float((w**p).sum() ** (1 / p)) for p in (2, 3, 5, 7, 10)]
    orb = [sum(wi * table.loc[e, f"N{o}Valence"] for e, wi in zip(els, w, strict=True)) for o in "spdf"]
    out += [o / sum(orb) for o in orb]
    return out


def test_feature_count_and_names(feat: MagpieFeaturizer) -> None:
    names = feat.get_feature_names_out()
    assert len(names) == 22 * 6 + 6 + 4
    assert names[0] == "MagpieData minimum Number"
    assert "MagpieData avg_dev Electronegativity" in names


def test_golden_values_fe2o3(feat: MagpieFeaturizer) -> None:
    x = feat.transform(["Fe2O3"])[0]
    assert x[col(feat, "MagpieData minimum Number")] == 8
    assert x[col(feat, "MagpieData maximum Number")] == 26
    assert x[col(feat, "MagpieData range Number")] == 18
    assert x[col(feat, "MagpieData mean Number")] == pytest.approx(0.4 * 26 + 0.6 * 8)
    assert x[col(feat, "MagpieData avg_dev Number")] == pytest.approx(0.4 * 10.8 + 0.6 * 7.2, rel=1e-6)
    assert x[col(feat, "MagpieData mode Number")] == 8  # O has the largest fraction
    assert x[col(feat, "0-norm")] == 2
    assert x[col(feat, "2-norm")] == pytest.approx(math.sqrt(0.4**2 + 0.6**2), rel=1e-6)


def test_mode_tie_takes_smallest_value(feat: MagpieFeaturizer) -> None:
    x = feat.transform(["NaCl"])[0]
    assert x[col(feat, "MagpieData mode Number")] == 11


@pytest.mark.parametrize(
    "formula", ["LiF", "SrTiO3", "Mo3W(SeS)4", "K2Cr2O7", "Cs", "LiFePO4", "Li0.5Mn0.5O"]
)
def test_vectorised_matches_reference(feat: MagpieFeaturizer, formula: str) -> None:
    from gapforge.formula import parse_formula

    expected = reference_features(parse_formula(formula))
    got = feat.transform([formula])[0].astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_counts_and_strings_agree(feat: MagpieFeaturizer) -> None:
    formulas = ["LiF", "Fe2O3", "SrTiO3", "Ba2YCu3O7"]
    enc = FormulaEncoder()  # the pipeline's 89-element, 8-level vocabulary
    batch = enc.encode(formulas)
    from_counts = feat.transform(feat.remap(batch.counts, enc.elements))
    np.testing.assert_array_equal(from_counts, feat.transform(formulas))


def test_fraction_and_large_count_fallback(feat: MagpieFeaturizer) -> None:
    x = feat.featurize(["Li0.5F0.5", "LiF", "Li65F", "Li130F2"])
    assert x.valid.all()
    np.testing.assert_allclose(x.X[0], x.X[1])
    np.testing.assert_allclose(x.X[2], x.X[3])


def test_bad_formulas_get_nan_and_reason(feat: MagpieFeaturizer) -> None:
    fm = feat.featurize(["LiF", "Xx2O", "", "Li(", "CfO2", "NaN"])
    assert fm.valid.tolist() == [True, False, False, False, False, True]  # NaN is sodium nitride
    assert np.isnan(fm.X[1:5]).all()
    assert "Xx" in fm.reasons[1]
    assert "Cf" in fm.reasons[4] and "Magpie" in fm.reasons[4]
    assert all(fm.reasons[i] for i in range(1, 5))


def test_remap_rejects_elements_without_data(feat: MagpieFeaturizer) -> None:
    counts = np.array([[1, 2], [0, 1]])
    with pytest.raises(ValueError, match="Cf"):
        feat.remap(counts, ["Cf", "O"])
    ok = feat.remap(np.array([[0, 1]]), ["Cf", "O"])  # unused element is fine
    assert ok.sum() == 1


def test_matches_recorded_matminer_magpie_features(feat: MagpieFeaturizer) -> None:
    """The first 132 columns equal matminer's Magpie ElementProperty (recorded from matminer 0.10.1)."""
    ref = json.loads((Path(__file__).parents[1] / "files" / "magpie_matminer_reference.json").read_text())
    names = list(feat.get_feature_names_out())[:132]
    assert names == ref["feature_labels"]
    formulas = list(ref["features"])
    ours = feat.transform(formulas)[:, :132]
    np.testing.assert_allclose(ours, np.array([ref["features"][f] for f in formulas]), rtol=1e-4, atol=1e-3)


def test_matches_matminer_if_installed(feat: MagpieFeaturizer) -> None:
    pytest.importorskip("matminer")
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    ep = ElementProperty.from_preset("magpie")
    for formula in ["Fe2O3", "SrTiO3", "LiFePO4"]:
        ref = np.array(ep.featurize(Composition(formula)), dtype=np.float64)
        np.testing.assert_allclose(feat.transform([formula])[0, :132], ref, rtol=1e-4, atol=1e-3)


def _order_cols(feat: MagpieFeaturizer) -> list[int]:
    names = list(feat.get_feature_names_out())
    cols = [i for i, n in enumerate(names) if n.startswith("MagpieData ") and n.split(" ")[1] in ORDER_STATS]
    return [*cols, names.index("0-norm")]


def test_host_features_ignore_trace_dopants_in_order_statistics(feat: MagpieFeaturizer) -> None:
    plain = feat.featurize(["Si", "Si0.999Ge0.001", "Si47Ge3"]).X
    host = host_featurize(feat, ["Si", "Si0.999Ge0.001", "Si47Ge3", "Xx2O"], 0.05)
    cols = _order_cols(feat)
    # plain Magpie: 0.1 % Ge moves every maximum/range to Ge's, a second element appears
    assert not np.allclose(plain[0, cols], plain[1, cols])
    # host: the dopant leaves the order statistics alone ...
    np.testing.assert_allclose(host.X[1, cols], host.X[0, cols])
    # ... but still shifts the fraction-weighted means a little, and 6 % Ge is no dopant
    mean = [i for i, n in enumerate(feat.get_feature_names_out()) if " mean " in n]
    assert 0 < np.abs(host.X[1, mean] - host.X[0, mean]).max() < np.abs(plain[2, mean] - plain[0, mean]).max()
    np.testing.assert_allclose(host.X[2], plain[2])
    assert not host.valid[3] and "Xx" in host.reasons[3]
    np.testing.assert_allclose(host_featurize(feat, ["Si0.999Ge0.001"], 0.0).X, plain[[1]])


def test_host_formulas_drop_dopants_and_keep_unreadable_text(feat: MagpieFeaturizer) -> None:
    out = host_formulas(feat, ["Si0.999Ge0.001", "InGa99As100", "Fe2O3", "Xx2O"], 0.05)
    assert out[0] == "Si0.999"
    assert "In" not in out[1] and "Ga99" in out[1] and "As100" in out[1]
    assert feat.featurize([out[2]]).X.tolist() == feat.featurize(["Fe2O3"]).X.tolist()
    assert out[3] == "Xx2O"
    assert host_formulas(feat, ["Si0.999Ge0.001"], 0.0) == ["Si0.999Ge0.001"]


def test_element_fractions_and_smact_flags_are_optional_columns() -> None:
    plain = MagpieFeaturizer().fit()
    full = MagpieFeaturizer(element_fractions=True, smact_flags=True).fit()
    names = list(full.get_feature_names_out())
    n_el = len(full.elements_)
    assert len(names) == len(plain.get_feature_names_out()) + n_el + 3
    fm = full.featurize(["NaCl", "Fe3Al", "Li0.5Fe0.5O", "Xx2"])
    assert fm.valid.tolist() == [True, True, True, False]
    # the Magpie block is unchanged by the extra columns
    np.testing.assert_allclose(fm.X[:3, :142], plain.transform(["NaCl", "Fe3Al", "Li0.5Fe0.5O"]))
    frac = fm.X[:, 142 : 142 + n_el]
    assert frac[1, names.index("fraction Fe") - 142] == pytest.approx(0.75)
    assert frac[1, names.index("fraction Al") - 142] == pytest.approx(0.25)
    flags = fm.X[:, -3:]
    # NaCl is charge balanced by every rule; Fe3Al is valid only through SMACT's all-metal shortcut
    assert flags[0].tolist() == [1.0, 1.0, 1.0]
    assert flags[1, 0] == 1.0 and flags[1, 1] == 0.0
    assert np.isnan(flags[2]).all()  # fractional amounts: charge balance not judged
