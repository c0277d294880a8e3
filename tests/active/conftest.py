"""Fixtures of the active-learning tests: a hand-made gap table, a linear codec, a real tiny oracle."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gapforge.models.forest import ForestModel

FILES = Path(__file__).parent / "files"
GAPS = FILES / "gaps_small.csv"


@pytest.fixture(scope="session")
def gap_table() -> pd.DataFrame:
    """75 hand-made (formula, band gap in eV) rows."""
    return pd.read_csv(GAPS, keep_default_na=False, na_values=[])


@pytest.fixture(scope="session")
def forest_dir(tmp_path_factory, gap_table) -> Path:
    """A small random forest fitted on the hand-made table, saved as a model directory."""
    directory = tmp_path_factory.mktemp("forest")
    model = ForestModel(n_estimators=20, n_jobs=1, random_state=0)
    model.fit(gap_table["formula"].tolist(), gap_table["band_gap"].tolist())
    model.save(directory)
    return directory


def campaign_config(oracle: dict, **over) -> dict:
    """A campaign config that runs in seconds on the hand-made table."""
    cfg = {
        "seed": 3,
        "iterations": 4,
        "acquisition": {"kind": "ucb", "q": 2, "num_restarts": 2, "raw_samples": 32, "maxiter": 15},
        "surrogate": {"fit_subset": 100, "maxiter": 30},
        "codec": {"kind": "linear", "latent_dim": 6, "fit_on": str(GAPS)},
        "oracle": oracle,
        "initial": {"dataset": str(GAPS), "n": 20, "max_gap": 5.0, "sample_seed": 1},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    """Write a JSON config file."""
    path.write_text(json.dumps(cfg))
    return path
