from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from gapforge import columns as C
from gapforge.structure.library import TemplateLibrary, load_library, normalise_library_table

FILES = Path(__file__).resolve().parents[1] / "files" / "structures"
SHARED_DATA = Path("/work/shared/data")


@pytest.fixture
def files() -> Path:
    return FILES


@pytest.fixture
def tiny_library_path() -> Path:
    return FILES / "tiny_library.csv"


@pytest.fixture
def data_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point GAPFORGE_DATA_PATH at the shared data (tests marked ``data``)."""
    if not (SHARED_DATA / "structures").is_dir():
        pytest.skip("shared data not available")
    monkeypatch.setenv("GAPFORGE_DATA_PATH", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture
def rock_salt_and_cscl(tiny_library_path) -> TemplateLibrary:
    """The tiny library (rock salts, fluorite, perovskite) plus a CsCl-type CsBr."""
    cscl = Structure(Lattice.cubic(4.3), ["Cs", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    base = load_library(tiny_library_path, max_e_above_hull=0.1).table
    row = {C.MATERIAL_ID: "fx-CsBr", C.REDUCED_FORMULA: "CsBr", C.CIF: str(CifWriter(cscl))}
    row.update({C.NSITES: 2, C.SPACEGROUP_NUMBER: 221, C.E_ABOVE_HULL: 0.0})
    table = normalise_library_table(pd.concat([base, pd.DataFrame([row])], ignore_index=True))
    return TemplateLibrary(table, source="test")
