from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gapforge.data import fingerprint, load_dataset, load_formulas, split_dataset
from gapforge.data.summary import summarize_dataset
from gapforge.errors import InputError


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_small_table_normalises_columns(files: Path) -> None:
    df = load_dataset(files / "gaps_small.csv")
    assert list(df.columns) == ["formula", "band_gap", "id", "source"]
    assert len(df) == 50
    assert df.loc[df.formula == "SrYF5", "band_gap"].item() == pytest.approx(7.40)


@pytest.mark.parametrize(
    ("header", "formula_col", "gap_col"),
    [
        ("formula,band_gap", "formula", "band_gap"),
        ("pretty_formula,gap", "x", "y"),
        ("composition,Eg", "", ""),
    ],
)
def test_column_aliases(tmp_path: Path, header: str, formula_col: str, gap_col: str) -> None:
    df = load_dataset(write(tmp_path, f"{header}\nLiF,8.7\nNaN,1.2\n"))
    assert list(df.formula) == ["LiF", "NaN"]  # NaN is sodium nitride
    assert list(df.band_gap) == [8.7, 1.2]


def test_json_and_parquet(tmp_path: Path) -> None:
    table = pd.DataFrame({"composition": ["LiF", "MgO"], "Eg": [8.7, 4.4]})
    table.to_json(tmp_path / "t.json", orient="records")
    table.to_parquet(tmp_path / "t.parquet")
    for name in ("t.json", "t.parquet"):
        assert list(load_dataset(tmp_path / name).formula) == ["LiF", "MgO"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("formula,band_gap\nLiF,8.7\nNa-Cl,5\n", r"t\.csv, row 2: cannot parse formula: 'Na-Cl'"),
        ("formula,band_gap\nLiF,8.7\nXy2,5\n", r"row 2: unknown element.*Xy2"),
        ("formula,band_gap\nLi0.31416F,8.7\n", r"row 1: fractional amounts.*Li0.31416F"),
        ("formula,band_gap\nLiF,-1\n", r"row 1: band gap is negative: '?-1"),
        ("formula,band_gap\nLiF,NaN\n", r"row 1: band gap is missing \(NaN\)"),
        ("formula,band_gap\nLiF,\n", r"row 1: band gap is not a number"),
        ("formula,band_gap\nLiF,abc\n", r"row 1: band gap is not a number: 'abc'"),
        ("formula,band_gap\nLiF,8.7\nLi2F2,8.1\n", r"row 2: duplicate formula with different band gaps"),
        ("formula,energy\nLiF,1\n", r"no band-gap column"),
        ("name,band_gap\nLiF,1\n", r"no formula column"),
        ("formula,band_gap\n", r"no data rows"),
        ("", r"file is empty"),
    ],
)
def test_bad_input_names_file_row_and_value(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=match) as info:
        load_dataset(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicate_policies(tmp_path: Path) -> None:
    path = write(tmp_path, "formula,band_gap\nLiF,8.0\nLi2F2,9.0\nNaCl,5\nNaCl,5\n")
    assert load_dataset(path, duplicates="mean").set_index("formula").band_gap.to_dict() == {
        "LiF": 8.5,
        "NaCl": 5,
    }
    assert load_dataset(path, duplicates="min").set_index("formula").band_gap["LiF"] == 8.0
    assert load_dataset(path, duplicates="max").set_index("formula").band_gap["LiF"] == 9.0
    assert load_dataset(path, duplicates="first").set_index("formula").band_gap["LiF"] == 8.0
    # identical duplicates are merged silently even under "error"
    ok = write(tmp_path, "formula,band_gap\nNaCl,5\nNaCl,5\n", "ok.csv")
    assert len(load_dataset(ok)) == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="neither a file nor a known dataset"):
        load_dataset(tmp_path / "nope.csv")


def test_splits_are_seeded_disjoint_and_60_20_20(files: Path) -> None:
    df = load_dataset(files / "gaps_small.csv")
    a, b = split_dataset(df, seed=3), split_dataset(df, seed=3)
    assert a.sizes() == {"train": 30, "val": 10, "test": 10}
    assert list(a.train.formula) == list(b.train.formula)
    assert list(split_dataset(df, seed=4).train.formula) != list(a.train.formula)
    parts = [set(p.formula) for p in (a.train, a.val, a.test)]
    assert set.union(*parts) == set(df.formula)
    assert sum(map(len, parts)) == len(df)
    with pytest.raises(ValueError, match="fractions"):
        split_dataset(df, (0.5, 0.2, 0.2))


def test_fingerprint_is_order_independent(files: Path) -> None:
    df = load_dataset(files / "gaps_small.csv")
    assert fingerprint(df) == fingerprint(df.sample(frac=1, random_state=1))
    changed = df.copy()
    changed.loc[0, "band_gap"] += 0.1
    assert fingerprint(changed) != fingerprint(df)


def test_summary_of_small_table(files: Path) -> None:
    s = summarize_dataset(load_dataset(files / "gaps_small.csv"), name="small")
    assert s.rows == 50
    assert s.encodable == 50
    assert sum(s.gap_histogram.values()) == 50
    assert s.gap_max == pytest.approx(8.72)


@pytest.mark.data
def test_mp_bandgap_has_42669_formulas_and_89_elements(real_data_env: Path) -> None:
    df = load_dataset("mp-bandgap")
    s = summarize_dataset(df, name="mp-bandgap")
    assert (s.rows, s.distinct_formulas, s.n_elements) == (42_669, 42_669, 89)
    assert s.not_encodable == 13_548
    assert (df.band_gap >= 6).sum() == 533


@pytest.mark.data
def test_paper_sets_load_by_name(real_data_env: Path) -> None:
    # the paper's initial samples repeat some formulas with identical gaps (drawn with
    # replacement): 300 rows hold 299 formulas, 1,000 rows hold 982; they merge silently
    sizes = {"test-500": 500, "exp2-bs": 1000, "exp2-al": 1741, "exp3-bs": 300, "exp3-al": 1153,
             "init-300": 299, "init-1000": 982, "ae-29k": 29_089}  # fmt: skip
    for name, n in sizes.items():
        assert len(load_dataset(name)) == n, name
    formulas = load_formulas("mp-formulas")
    assert 89_000 < len(formulas) < 89_500


def test_negative_policy_clip(tmp_path: Path) -> None:
    path = write(tmp_path, "formula,band_gap\nLiF,-0.1\nNaCl,5\n")
    df = load_dataset(path, negative="clip")
    assert list(df.band_gap) == [0.0, 5.0]
