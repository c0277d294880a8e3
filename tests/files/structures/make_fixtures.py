"""Regenerate the tiny structure fixtures of tests/structure (run from the repo root).

Ideal prototypes built with pymatgen (no downloaded data). Formation energies and
band gaps are rounded Materials Project values, only there to exercise the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pymatgen.core import Lattice, Structure

HERE = Path(__file__).parent


def rock_salt(a: str, b: str, lat: float) -> Structure:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return s.get_primitive_structure()


def fluorite(a: str, b: str, lat: float) -> Structure:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.25, 0.25, 0.25]])
    return s.get_primitive_structure()


def perovskite(a: str, b: str, x: str, lat: float) -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(lat), [a, b, x], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    )


# material_id, structure, spacegroup, band_gap, formation_energy_per_atom, e_above_hull
LIBRARY = [
    ("fx-NaCl", rock_salt("Na", "Cl", 5.69), 225, 5.0, -2.10, 0.0),
    ("fx-MgO", rock_salt("Mg", "O", 4.21), 225, 4.5, -3.05, 0.0),
    ("fx-CaF2", fluorite("Ca", "F", 5.46), 225, 7.3, -4.20, 0.0),
    ("fx-SrTiO3", perovskite("Sr", "Ti", "O", 3.905), 221, 1.8, -3.50, 0.0),
    ("fx-KF", rock_salt("K", "F", 5.35), 225, 6.0, -2.90, 0.0),
    ("fx-KF2-unstable", fluorite("K", "F", 5.8), 225, 3.0, None, 0.5),  # filtered out: above hull
]


def main() -> None:
    rows = []
    for mpid, s, sg, gap, ef, eh in LIBRARY:
        rows.append(
            {
                "material_id": mpid,
                "reduced_formula": s.composition.reduced_formula,
                "nsites": len(s),
                "spacegroup_number": sg,
                "band_gap": gap,
                "formation_energy_per_atom": ef,
                "e_above_hull": eh,
                "cif": s.to(fmt="cif"),
            }
        )
    pd.DataFrame(rows).to_csv(HERE / "tiny_library.csv", index=False)

    # Hand-made "recorded" mp-api summary.search responses (use_document_model=False).
    docs = []
    for mpid, s, sg, gap, ef, eh in LIBRARY[:3]:
        docs.append(
            {
                "material_id": mpid.replace("fx-", "mp-fx"),
                "formula_pretty": s.composition.reduced_formula,
                "structure": s.as_dict(),
                "nsites": len(s),
                "symmetry": {"number": sg, "symbol": "Fm-3m", "crystal_system": "Cubic"},
                "band_gap": gap,
                "formation_energy_per_atom": ef,
                "energy_above_hull": eh,
            }
        )
    docs.append({"material_id": "mp-fx-nostructure", "formula_pretty": "LiF", "structure": None})
    (HERE / "mp_summary_response.json").write_text(json.dumps(docs, indent=1) + "\n")

    pd.DataFrame(
        {
            "formula": ["KBr", "SrF2", "BaZrO3", "Li3N", "OgF2"],
            "band_gap_mean": [6.0, 7.0, 5.0, 1.0, 0.5],
            "band_gap_std": [0.2, 0.3, 0.4, 0.5, 0.5],
            "valid": [True, True, True, True, False],
        }
    ).to_csv(HERE / "candidates.csv", index=False)


if __name__ == "__main__":
    main()
