"""A small hand-made run directory, as `gapforge discover` would leave it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Rock-salt LiF (Fm-3m, a = 4.03 Å), written out by hand.
LIF_CIF = """data_LiF
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   2.849
_cell_length_b   2.849
_cell_length_c   2.849
_cell_angle_alpha   60.0
_cell_angle_beta   60.0
_cell_angle_gamma   60.0
_symmetry_Int_Tables_number   1
_chemical_formula_sum   'Li1 F1'
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Li  Li0  1  0.0  0.0  0.0  1
  F  F1  1  0.5  0.5  0.5  1
"""

#: The candidates of the hand-made run, in the screen's order.
CANDIDATES = [
    # formula, mean, std, n_atoms, n_elements
    ("SrYF5", 7.10, 0.40, 7, 3),
    ("LiF", 8.70, 0.25, 2, 2),
    ("MgF2", 7.40, 0.30, 3, 2),
    ("KAlF4", 6.90, 0.55, 6, 3),
]


def write_run(run: Path, *, full: bool = True) -> Path:
    """Write the tables of a small finished run into ``run``.

    ``full=False`` writes only the config and the screen (no campaign, no
    structures, no generator): the report must then say "not run".
    """
    run.mkdir(parents=True, exist_ok=True)
    config = {
        "gap_min": 6.0,
        "gap_max": None,
        "seed": 0,
        "preset": "quick",
        "data": {"dataset": "hand-made"},
        "screen": {"max_atoms": 8, "max_elements": 4},
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "screen").mkdir()
    cand = pd.DataFrame(
        CANDIDATES, columns=["formula", "band_gap_mean", "band_gap_std", "n_atoms", "n_elements"]
    )
    cand["in_window"] = True
    cand["simple"] = True
    cand["smact_valid"] = True
    cand["novel"] = [True, False, False, True]
    cand["rank"] = np.arange(1, len(cand) + 1)
    cand.to_csv(run / "screen/candidates.csv", index=False)
    steps = [
        {
            "filter": "in_window",
            "description": "predicted gap ≥ 6 eV",
            "n_in": 5000,
            "n_out": 400,
            "removed": 4600,
        },
        {
            "filter": "simple",
            "description": "< 8 atoms, < 4 elements",
            "n_in": 400,
            "n_out": 90,
            "removed": 310,
        },
        {"filter": "smact_valid", "description": "SMACT valid", "n_in": 90, "n_out": 30, "removed": 60},
        {"filter": "novel", "description": "not in dataset", "n_in": 30, "n_out": 4, "removed": 26},
    ]
    (run / "screen/funnel.json").write_text(json.dumps({"steps": steps}))
    if not full:
        return run

    rng = np.random.default_rng(0)
    (run / "campaign").mkdir()
    it = pd.DataFrame(
        {
            "iteration": np.arange(1, 9),
            "n_proposed": 10,
            "n_valid": [7, 8, 6, 9, 8, 7, 9, 10],
            "n_new": [5, 6, 4, 7, 6, 5, 8, 9],
            "best_gap": [4.1, 5.2, 4.8, 6.3, 5.9, 7.0, 6.1, 6.8],
        }
    )
    it["valid_rate"] = it["n_valid"] / it["n_proposed"]
    it["best_so_far"] = np.maximum.accumulate(it["best_gap"])
    it["n_hits"] = [0, 0, 0, 1, 1, 2, 3, 4]
    it["n_labelled"] = 300 + it["n_new"].cumsum()
    it.to_csv(run / "campaign/iterations.csv", index=False)
    lab = pd.DataFrame(
        {
            "formula": [f"X{i}" for i in range(60)],
            "band_gap": rng.uniform(0, 8, 60),
            "x": rng.normal(size=60),
            "y": rng.normal(size=60),
            "kind": "labelled",
            "iteration": 0,
        }
    )
    prop = pd.DataFrame(
        {
            "formula": ["SrF2", "CaF2", "AlN", "BN"],
            "band_gap": [6.5, 6.9, 4.2, 5.1],
            "x": [0.5, 0.6, -1.0, 1.2],
            "y": [0.1, 0.3, 0.8, -0.4],
            "kind": "proposal",
            "iteration": [4, 6, 7, 8],
        }
    )
    pd.concat([lab, prop]).to_csv(run / "campaign/latent_map.csv", index=False)

    (run / "screening_model").mkdir()
    true = rng.uniform(0, 9, 80)
    pd.DataFrame(
        {
            "formula": [f"Y{i}" for i in range(80)],
            "band_gap": true,
            "band_gap_mean": true + rng.normal(0, 0.5, 80),
            "band_gap_std": rng.uniform(0.1, 0.8, 80),
        }
    ).to_csv(run / "screening_model/parity.csv", index=False)
    (run / "screening_model/metrics.json").write_text(
        json.dumps({"r2": 0.91, "mae": 0.41, "rmse": 0.52, "n": 80})
    )

    (run / "generate").mkdir()
    pd.DataFrame(
        {
            "formula": ["SrYF5", "LiF", "MgF2", "KAlF4", "Fe2O3", "NaCl"],
            "n_generated": [3, 9, 4, 1, 2, 5],
            "n_atoms": [7, 2, 3, 6, 5, 2],
            "n_elements": [3, 2, 2, 3, 2, 2],
        }
    ).to_parquet(run / "generate/generated.parquet", index=False)
    (run / "generate/stats.json").write_text(
        json.dumps(
            {
                "n_samples": 8000,
                "n_decodable": 7200,
                "n_unique": 5000,
                "seconds": 3.2,
                "decodable_fraction": 0.9,
                "unique_fraction": 0.694,
            }
        )
    )

    (run / "structure/cifs").mkdir(parents=True)
    (run / "structure/relaxed").mkdir()
    (run / "structure/cifs/00002_LiF_1_mp-1138.cif").write_text(LIF_CIF)
    (run / "structure/relaxed/00002_LiF_1_mp-1138.cif").write_text(LIF_CIF)
    # the columns the relax stage writes (gapforge.structure.pipeline), one row per candidate
    pd.DataFrame(
        {
            "formula": ["SrYF5", "LiF"],
            "candidate_row": [1, 2],
            "template_material_id": ["mp-1", "mp-1138"],
            "template_formula": ["BaYF5", "NaCl"],
            "cif_path": ["cifs/00001_SrYF5_1_mp-1.cif", "cifs/00002_LiF_1_mp-1138.cif"],
            "relaxed_cif_path": [None, "relaxed/00002_LiF_1_mp-1138.cif"],
            "energy_per_atom": [np.nan, -4.87],
            "relax_steps": [150, 37],
            "converged": [False, True],
            "max_force": [0.31, 0.012],
            "formation_energy_per_atom": [np.nan, -3.12],
            "e_above_hull": [np.nan, 0.0],
            "hull_known_phases": [np.nan, 1],
            "reason": ["not converged in 150 steps", ""],
        }
    ).to_csv(run / "structure/relaxed.csv", index=False)
    initial = pd.DataFrame(
        {
            "formula": ["NaCl", "AlN", "LiF", "MgO"],
            "band_gap": [5.0, 4.2, 8.7, 7.6],
            "source": "initial",
            "iteration": 0,
        }
    )
    found = pd.DataFrame(
        {
            "formula": ["SrF2", "CaF2", "BN"],
            "band_gap": [6.5, 6.9, 5.1],
            "source": "campaign",
            "iteration": [4, 6, 8],
        }
    )
    pd.concat([initial, found]).to_csv(run / "campaign/labelled.csv", index=False)
    (run / "dft").mkdir()
    pd.DataFrame({"formula": ["LiF"], "dft_band_gap": [8.94], "status": ["ok"]}).to_csv(
        run / "dft/dft.csv", index=False
    )
    (run / "stages").mkdir()
    for name, secs in (("campaign", 12.5), ("screen", 3.0), ("dft", 0.0)):
        status = "skipped" if name == "dft" else "done"
        (run / "stages" / f"{name}.json").write_text(
            json.dumps(
                {"stage": name, "status": status, "seconds": secs, "summary": {"rows": 4}, "reason": ""}
            )
        )
    return run


@pytest.fixture
def hand_run(tmp_path: Path) -> Path:
    """A complete hand-made run directory."""
    return write_run(tmp_path / "run")


@pytest.fixture
def partial_run(tmp_path: Path) -> Path:
    """A run directory where only the screen has run."""
    return write_run(tmp_path / "run", full=False)
