"""The matbench / OQMD / AFLOW loaders (tiny gzipped fixtures laid out like the data mirror)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapforge import columns as C
from gapforge.data import load_dataset, load_metal_labels
from gapforge.data.registry import REGISTRY
from gapforge.data.splits import leakage_guard, matbench_folds
from gapforge.errors import InputError

CRABNET = Path(__file__).parents[1] / "files" / "crabnet"


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(CRABNET))
    monkeypatch.setenv("GAPFORGE_CACHE", str(tmp_path / "cache"))
    return CRABNET


def test_registry_pins_the_crabnet_commit_and_csv_checksums() -> None:
    for name in ("mp-gap", "mp-is-metal", "expt-gap", "oqmd-gap-train", "aflow-gap-test"):
        entry = REGISTRY[name]
        assert "anthony-wang/CrabNet/457b4d4835737ecbe4dd33e53174bd818bd82143/" in entry.url
        assert entry.url.endswith(".csv") and entry.filename.endswith(".csv.gz")
        assert len(entry.sha256) == 64
    assert REGISTRY["mp-gap"].sha256.startswith("4084e584")
    assert REGISTRY["expt-gap"].subdir == "matbench" and REGISTRY["oqmd-gap-val"].subdir == "oqmd"


def test_mp_gap_merges_polymorphs_by_median_and_keeps_metals(mirror: Path) -> None:
    df = load_dataset("mp-gap")
    gaps = dict(zip(df[C.FORMULA], df[C.BAND_GAP], strict=True))
    # LiF from Li2F2 (8.716) and Li1F1 (7.478): one formula, median gap
    assert gaps["LiF"] == pytest.approx((8.716 + 7.478) / 2)
    assert gaps["GaAs"] == pytest.approx(0.189)  # median of 0.194, 0.0, 0.189
    assert gaps["Cu"] == 0.0 and gaps["Na3N"] == 0.0
    assert "NaN" in gaps  # sodium nitride is a formula, not a missing value
    assert set(df[C.SOURCE]) == {"mp-gap"}


def test_keep_policy_gives_matbench_rows_in_file_order(mirror: Path) -> None:
    df = load_dataset("mp-gap", duplicates="keep")
    assert len(df) == 9
    assert df[C.FORMULA].tolist()[:3] == ["LiF", "LiF", "Cu"]
    assert df[C.BAND_GAP].tolist()[5:8] == [0.194, 0.0, 0.189]


def test_metal_labels_agree_with_zero_gaps(mirror: Path) -> None:
    metals = load_metal_labels("mp-is-metal")
    gaps = load_dataset("mp-gap", duplicates="keep")
    assert metals[C.FORMULA].tolist() == gaps[C.FORMULA].tolist()
    assert (metals[C.IS_METAL].to_numpy() == (gaps[C.BAND_GAP].to_numpy() == 0)).all()
    with pytest.raises(InputError, match="band gaps"):
        load_dataset("mp-is-metal")


def test_metal_label_other_than_0_or_1_names_the_row(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("formula,target\nCu,1\nLiF,0.5\n")
    with pytest.raises(InputError, match=r"row 2.*0\.5|0\.5.*row 2"):
        load_metal_labels(str(p))


def test_expt_gap_keeps_doped_compositions(mirror: Path) -> None:
    df = load_dataset("expt-gap")
    assert len(df) == 4
    assert "Bi0.002Te0.003Pb0.999Se0.999" in set(df[C.FORMULA])
    assert df.loc[df[C.FORMULA] == "GaAs", C.BAND_GAP].item() == pytest.approx(1.42)
    assert (df[C.BAND_GAP] == 0).sum() == 1  # Ag(AuS)2, a metal at 0 eV


def test_composites_and_the_source_priority(mirror: Path) -> None:
    aflow = load_dataset("aflow-gap")
    assert len(aflow) == 5 and set(aflow[C.SOURCE]) == {"aflow-gap"}
    assert aflow[C.ID].str.startswith("aflow-gap-").all()
    both = load_dataset("pbe-gap-all")
    assert both[C.FORMULA].is_unique
    src = dict(zip(both[C.FORMULA], both[C.SOURCE], strict=True))
    gap = dict(zip(both[C.FORMULA], both[C.BAND_GAP], strict=True))
    assert src["LiF"] == "mp-gap"  # MP beats AFLOW
    assert src["KCl"] == "aflow-gap" and gap["KCl"] == pytest.approx(5.1)  # AFLOW beats OQMD
    assert src["MgO"] == "aflow-gap"
    assert src["BaO"] == "oqmd-gap" and src["Nd2Mn5Co12"] == "oqmd-gap"  # only in OQMD


def test_a_gzipped_table_with_a_bad_gap_names_file_and_row(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("formula,target\nLiF,1.0\nNaCl,abc\n")
    with pytest.raises(InputError, match=r"bad\.csv\.gz.*row 2"):
        load_dataset(str(p))


def test_matbench_folds_are_sklearn_kfold_with_the_matbench_seed() -> None:
    from sklearn.model_selection import KFold

    folds = matbench_folds(103)
    ref = list(KFold(n_splits=5, shuffle=True, random_state=18012019).split(np.arange(103)))
    assert len(folds) == 5
    for (a, b), (c, d) in zip(folds, ref, strict=True):
        assert (a == c).all() and (b == d).all()
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(103))


def test_leakage_guard_drops_every_test_composition_from_extra_sources() -> None:
    test = pd.DataFrame({C.FORMULA: ["LiF", "GaAs", "Bi0.002Te0.003Pb0.999Se0.999"]})
    extra = pd.DataFrame(
        {
            C.FORMULA: ["Li2F2", "LiF", "NaCl", "Ga2As2", "Bi0.002Te0.003Pb0.999Se0.999", "GaAs2"],
            C.BAND_GAP: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            C.SOURCE: "oqmd-gap",
        }
    )
    kept = leakage_guard(extra, test)
    assert kept[C.FORMULA].tolist() == ["NaCl", "GaAs2"]
    assert kept[C.BAND_GAP].tolist() == [3.0, 6.0]
    assert not set(kept[C.FORMULA]) & set(test[C.FORMULA])
    # nothing to guard against: everything stays
    assert len(leakage_guard(extra, test.iloc[:0])) == len(extra)
