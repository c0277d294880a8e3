"""Column names of every table gapforge reads and writes (one place, never literals)."""

from __future__ import annotations

FORMULA = "formula"
BAND_GAP = "band_gap"  # eV
ID = "id"
SOURCE = "source"

BAND_GAP_MEAN = "band_gap_mean"  # eV
BAND_GAP_STD = "band_gap_std"  # eV
REASON = "reason"
P_IN_WINDOW = "p_in_window"  # probability that the gap lies in the target window (0-1)
P_METAL = "p_metal"  # probability that the material is a metal (0-1)
IS_METAL = "is_metal"  # label: True for a metal (PBE gap 0 eV)
FIDELITY = "fidelity"  # which gap a prediction stands for: "pbe" or "experiment"

# Structure stage: template library
MATERIAL_ID = "material_id"
REDUCED_FORMULA = "reduced_formula"
ANONYMIZED_FORMULA = "anonymized_formula"
NSITES = "nsites"
SPACEGROUP_NUMBER = "spacegroup_number"
FORMATION_ENERGY_PER_ATOM = "formation_energy_per_atom"  # eV/atom
E_ABOVE_HULL = "e_above_hull"  # eV/atom
CIF = "cif"
LIBRARY_SOURCE = "source"

# Structure stage: candidate -> template -> substituted structure (structures.csv)
CANDIDATE_ROW = "candidate_row"  # 1-based data row of the candidate in the input table
TEMPLATE_RANK = "template_rank"
TEMPLATE_ID = "template_material_id"
TEMPLATE_FORMULA = "template_formula"
TEMPLATE_SPACEGROUP = "template_spacegroup_number"
TEMPLATE_WYCKOFF = "template_wyckoff_label"  # structure type: space group + Wyckoff letters per element
ELMD = "elmd"  # ElMD, modified Pettifor scale
SAME_PROTOTYPE = "same_anonymized_formula"
SUBSTITUTION = "substitution"
OXIDATION_CONSISTENT = "oxidation_consistent"
VOLUME_SCALE = "volume_scale"
CIF_PATH = "cif_path"

# Structure stage: relaxation and stability (relaxed.csv); CONVERGED and WALL_TIME_S also in dft.csv
RELAXED_CIF_PATH = "relaxed_cif_path"
ENERGY_PER_ATOM = "energy_per_atom"  # eV/atom, CHGNet (MP2020-compatible scale)
# Energy (eV/atom) of the potential that chose among the relaxed templates, on the CHGNet-relaxed
# structure (gapforge.structure.rescore); SevenNet-0's is the uncorrected MPtrj (PBE/PBE+U) scale
SELECTION_ENERGY_PER_ATOM = "selection_energy_per_atom"
SELECTION_ENERGY_MODEL = "selection_energy_model"  # which potential: a SelectionEnergy value
RELAX_STEPS = "relax_steps"
CONVERGED = "converged"
WALL_TIME_S = "wall_time_s"
MAX_FORCE = "max_force"  # eV/Å at the last step
N_TEMPLATES_RELAXED = "n_templates_relaxed"
RELAXED_SPACEGROUP = (
    "relaxed_spacegroup_number"  # of the relaxed structure (SpacegroupAnalyzer, symprec 0.1 Å)
)
RELAXED_SPACEGROUP_SYMBOL = "relaxed_spacegroup_symbol"
SYMMETRIZED_CIF_PATH = "symmetrized_cif_path"  # the relaxed structure written with its symmetry
PROTOTYPE_SHARE = (
    "prototype_share"  # share of known entries of the anonymised formula in the template's space group
)
HULL_KNOWN_PHASES = "hull_known_phases"
DECOMPOSITION = "decomposition"  # known phases the candidate decomposes into, e.g. "0.5 LiF + 0.5 NaF"
NEGATIVE_FORMATION = "negative_formation"
# True where e_above_hull < -0.05 eV/atom: below every known phase, so the reference may be missing one
BELOW_KNOWN_HULL = "below_known_hull"
# Bonded-network dimensionality of the relaxed structure, 0-3 (Larsen et al. 2019, CrystalNN bonds):
# 0 = a molecular crystal (isolated molecules), 1 = chains, 2 = layers, 3 = a 3D framework
DIMENSIONALITY = "dimensionality"
# P(within 0.1 eV/atom of the hull | the rebuilt structure's e_above_hull), 0-1 (structure.stability.p_stable)
P_STABLE = "p_stable"

# DFT stage (dft.csv; its other columns are in gapforge.structure.dft)
DFT_BAND_GAP = "dft_band_gap"  # eV, PBE, grid + band path

#: Column names recognised as the formula column, in order of preference.
FORMULA_ALIASES: tuple[str, ...] = (
    "formula",
    "composition",
    "pretty_formula",
    "reduced_formula",
    "formula_pretty",
)
#: Column names recognised as the band-gap column (eV), in order of preference.
BAND_GAP_ALIASES: tuple[str, ...] = ("band_gap", "Eg", "eg", "gap", "bandgap", "target")  # target: matbench
#: Column names recognised as an identifier column.
ID_ALIASES: tuple[str, ...] = ("id", "material_id", "mpid", "task_id")
