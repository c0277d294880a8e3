"""The learned prototype ranker: its evidence, the leave-own-formula-out guard, the shipped file."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from gapforge import columns as C
from gapforge.errors import ModelError
from gapforge.models.base import pretrained_dir
from gapforge.structure.library import TemplateLibrary
from gapforge.structure.prototypes import PrototypeCounts
from gapforge.structure.ranker import (
    FEATURES,
    RANKER_NAME,
    KnownPattern,
    PrototypeRanker,
    PrototypeRanking,
    RankerParams,
    candidate_features,
    default_ranker,
    query_candidates,
    substitution_scores,
    training_queries,
)
from gapforge.structure.templates import SearchSettings, search_templates

# Made-up known entries: Cs halides take the CsCl type (221), the light alkali halides rock salt (225).
KNOWN = pd.DataFrame(
    {
        "formula": ["CsCl", "CsBr", "TlCl", "TlBr", "NaCl", "KCl", "LiF", "NaF", "KF", "MgO", "CaO"],
        "spacegroup": [221, 221, 221, 221, 225, 225, 225, 225, 225, 225, 225],
    }
)


def col(name: str) -> int:
    return FEATURES.index(name)


@pytest.fixture
def lib(rock_salt_and_cscl) -> TemplateLibrary:
    """The tiny library (rock salts NaCl, KF, MgO; fluorite; perovskite) plus a CsCl-type CsBr."""
    return rock_salt_and_cscl


def features_for(query: str, lib: TemplateLibrary, counts: PrototypeCounts, leave_out: str | None):
    from gapforge.structure.elmd import cumulative_matrix, elmd_matrix

    lib_idx = np.flatnonzero(lib.anonymized == "AB")
    if leave_out is not None:
        lib_idx = lib_idx[lib.table[C.REDUCED_FORMULA].to_numpy()[lib_idx] != leave_out]
    cum = cumulative_matrix([query])
    known = KnownPattern(counts, "AB")
    return candidate_features(
        query,
        "AB",
        elmd_matrix(cum, lib.cumulative[lib_idx])[0],
        lib_idx,
        lib,
        counts,
        known,
        elmd_matrix(cum, known.cum)[0],
        leave_out=leave_out,
    )


def test_features_one_row_per_prototype_with_the_evidence(lib: TemplateLibrary) -> None:
    counts = PrototypeCounts.from_table(KNOWN)
    cands = features_for("CsI", lib, counts, None)
    assert sorted(cands.spacegroups.tolist()) == [221.0, 225.0]  # 3 rock salts are one prototype
    assert cands.features.shape == (2, len(FEATURES))
    x = dict(zip(cands.spacegroups.tolist(), cands.features, strict=True))
    # CsI's nearest known AB formula is a Cs halide (CsCl type); the rock salts are further away
    assert x[221.0][col("local_share_1")] == 1.0 and x[225.0][col("local_share_1")] == 0.0
    assert x[221.0][col("kernel_share_0.5")] > x[225.0][col("kernel_share_0.5")]
    assert x[221.0][col("known_nn")] < x[225.0][col("known_nn")]
    assert x[221.0][col("global_share")] == pytest.approx(4 / 11)
    assert x[221.0][col("elmd_rank")] == 0.0  # CsBr is the nearest template
    # Cs -> Cs, I -> Br substitutes better than Cs -> Na/K/Mg, I -> Cl/F/O
    assert x[221.0][col("substitution_mean")] > x[225.0][col("substitution_mean")]


def test_leave_own_formula_out(lib: TemplateLibrary) -> None:
    counts = PrototypeCounts.from_table(KNOWN)
    both = features_for("CsBr", lib, counts, None)
    seen = dict(zip(both.spacegroups.tolist(), both.features, strict=True))
    assert seen[221.0][col("known_nn")] == 0.0  # CsBr itself is known, in the CsCl type
    assert seen[221.0][col("local_share_1")] == 1.0
    cands = features_for("CsBr", lib, counts, "CsBr")
    # rebuilding CsBr: its own template is gone, so the CsCl type has no template left
    assert cands.spacegroups.tolist() == [225.0]
    x = cands.features[0]
    assert x[col("global_share")] == pytest.approx(7 / 10)  # CsBr's own entry no longer counts
    # and the training guard: excluded formulas never become training queries
    queries = training_queries(lib, counts, lib, excluded={"CsCl", "NaCl"}, max_atoms=8)
    assert not {"CsCl", "NaCl"} & set(queries[C.REDUCED_FORMULA])
    assert {"KCl", "CsBr"} <= set(queries[C.REDUCED_FORMULA])
    label = dict(zip(queries[C.REDUCED_FORMULA], queries[C.SPACEGROUP_NUMBER], strict=True))
    assert label["CsBr"] == 221.0 and label["KCl"] == 225.0
    built = dict(zip(queries[C.REDUCED_FORMULA], query_candidates(queries, lib, counts), strict=True))
    _, y_csbr = built["CsBr"]
    assert len(y_csbr) == 1 and not y_csbr.any()  # its own CsCl-type template was left out


def test_clear_evidence_ranks_the_true_prototype_first(lib: TemplateLibrary) -> None:
    counts = PrototypeCounts.from_table(KNOWN)
    # a ranker fitted on made-up candidates where the local share decides
    rng = np.random.default_rng(0)
    x = rng.random((400, len(FEATURES)))
    y = (x[:, col("local_share_3")] > 0.5).astype(int)
    ranker = PrototypeRanker.fit(x, y, RankerParams(max_iter=30))
    settings = SearchSettings(top_k=2, ranking=PrototypeRanking.LEARNED)
    (csi, lif) = search_templates(["CsI", "LiCl"], lib, settings, prototypes=counts, ranker=ranker)
    assert csi[0].formula == "CsBr" and csi[1].formula in {"NaCl", "KF", "MgO"}
    assert lif[0].formula in {"NaCl", "KF", "MgO"} and lif[1].formula == "CsBr"
    # the shipped ranker reads the same evidence the same way
    (csi,) = search_templates(["CsI"], lib, settings, prototypes=counts)
    assert csi[0].formula == "CsBr"
    # and the rule stays selectable
    rule = SearchSettings(top_k=2, ranking=PrototypeRanking.RULE, prototype_weight=0.0)
    (csi,) = search_templates(["CsI"], lib, rule, prototypes=counts)
    assert csi[0].formula == "CsBr"


def test_substitution_scores_from_the_lambda_table() -> None:
    near, _ = substitution_scores("KBr", "NaCl")
    far, _ = substitution_scores("KBr", "MgO")
    assert near > far
    assert np.isnan(substitution_scores("KBr", "SrTiO3")[0])  # different numbers of elements


def test_shipped_ranker_loads_and_is_checked(tmp_path) -> None:
    ranker = default_ranker()
    assert ranker.score(np.zeros((3, len(FEATURES)))).shape == (3,)
    assert ranker.metadata["features"] == list(FEATURES)
    copy = tmp_path / "ranker"
    shutil.copytree(pretrained_dir(RANKER_NAME), copy)
    PrototypeRanker.load(copy)
    weights = copy / "ranker.skops"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="sha256"):
        PrototypeRanker.load(copy)
