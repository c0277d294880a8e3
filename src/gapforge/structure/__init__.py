"""From candidate formula to relaxed crystal.

Template search by Element Mover's Distance (:mod:`.elmd`, :mod:`.templates`)
in a library of known structures (:mod:`.library`), element substitution
(:mod:`.substitution`), CHGNet relaxation (:mod:`.relax`, per-structure tasks on :mod:`gapforge.executor`),
formation energy and energy above hull (:mod:`.stability`), the two pipeline
steps (:mod:`.pipeline`) and the stage's own validation (:mod:`.validation`).

Submodules are imported lazily so that ``import gapforge.structure`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "elmd": "gapforge.structure.elmd",
    "elmd_matrix": "gapforge.structure.elmd",
    "TemplateLibrary": "gapforge.structure.library",
    "load_library": "gapforge.structure.library",
    "build_library_from_mp": "gapforge.structure.library",
    "MPQuery": "gapforge.structure.library",
    "SearchSettings": "gapforge.structure.templates",
    "TemplateMatch": "gapforge.structure.templates",
    "search_templates": "gapforge.structure.templates",
    "SubstitutionSettings": "gapforge.structure.substitution",
    "Substitution": "gapforge.structure.substitution",
    "SubstitutionError": "gapforge.structure.substitution",
    "substitute": "gapforge.structure.substitution",
    "RelaxSettings": "gapforge.structure.relax",
    "RelaxResult": "gapforge.structure.relax",
    "RelaxationError": "gapforge.structure.relax",
    "CHGNET_MODEL_VERSION": "gapforge.structure.relax",
    "relax_structure": "gapforge.structure.relax",
    "run_relaxations": "gapforge.structure.relax",
    "ElementalReferences": "gapforge.structure.stability",
    "HullReference": "gapforge.structure.hull",
    "HullResult": "gapforge.structure.hull",
    "load_elemental_references": "gapforge.structure.stability",
    "formation_energy_per_atom": "gapforge.structure.stability",
    "StructureSettings": "gapforge.structure.pipeline",
    "build_structures": "gapforge.structure.pipeline",
    "relax_structures": "gapforge.structure.pipeline",
    "ValidationSettings": "gapforge.structure.validation",
    "validate_rebuild": "gapforge.structure.validation",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
