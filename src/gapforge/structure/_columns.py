"""Column names of the structure stage's tables (``structures.csv``, ``relaxed.csv``).

Kept here until they move into :mod:`gapforge.columns`.
"""

from __future__ import annotations

# Template library
MATERIAL_ID = "material_id"
REDUCED_FORMULA = "reduced_formula"
ANONYMIZED_FORMULA = "anonymized_formula"
NSITES = "nsites"
SPACEGROUP_NUMBER = "spacegroup_number"
FORMATION_ENERGY_PER_ATOM = "formation_energy_per_atom"  # eV/atom
E_ABOVE_HULL = "e_above_hull"  # eV/atom
CIF = "cif"
LIBRARY_SOURCE = "source"

# Candidate -> template -> substituted structure (structures.csv)
CANDIDATE_ROW = "candidate_row"  # 1-based data row of the candidate in the input table
TEMPLATE_RANK = "template_rank"
TEMPLATE_ID = "template_material_id"
TEMPLATE_FORMULA = "template_formula"
TEMPLATE_SPACEGROUP = "template_spacegroup_number"
ELMD = "elmd"  # ElMD, modified Pettifor scale
SAME_PROTOTYPE = "same_anonymized_formula"
SUBSTITUTION = "substitution"
OXIDATION_CONSISTENT = "oxidation_consistent"
VOLUME_SCALE = "volume_scale"
CIF_PATH = "cif_path"

# Relaxation and stability (relaxed.csv)
RELAXED_CIF_PATH = "relaxed_cif_path"
ENERGY_PER_ATOM = "energy_per_atom"  # eV/atom, CHGNet (MP2020-compatible scale)
RELAX_STEPS = "relax_steps"
CONVERGED = "converged"
WALL_TIME_S = "wall_time_s"
MAX_FORCE = "max_force"  # eV/Å at the last step
N_TEMPLATES_RELAXED = "n_templates_relaxed"
HULL_KNOWN_PHASES = "hull_known_phases"
NEGATIVE_FORMATION = "negative_formation"
