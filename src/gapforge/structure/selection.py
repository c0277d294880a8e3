"""Which of a candidate's relaxed templates is kept.

The templates come ranked (ElMD + prototype frequency, :mod:`gapforge.structure.templates`)
and each is relaxed with CHGNet. Keeping the lowest relaxed energy ("best-of-k")
sounds right but loses on known materials: on the 200 test materials of
``benchmarks/bench_structure.py`` it matched the true structure for 45.5 %
against 58.5 % for the first-ranked template (dev set: 53 % against 61 %). In 57
of the 58 test materials where another template matched but the lowest-energy
one did not, CHGNet put the kept (wrong) structure *below* its own energy of the
true MP structure (by up to 0.08 eV/atom; mostly Heusler-type site orderings
and layered polymorphs): CHGNet's polymorph ordering at this scale, not
unconverged relaxations (97-100 % converged) nor the element-to-site
assignment (trying every assignment adds no unrelaxed match on test, one in 100 on dev).

The rule kept is a margin: the first-ranked template unless another relaxed
lower by more than :data:`SELECTION_MARGIN`. The margin was chosen on 100
development materials disjoint from the test set (0.630 against 0.610 for
top-1 and 0.530 for lowest energy) and gives 0.595 on the test set (95 %
bootstrap interval 0.530-0.665; top-1 0.585, lowest energy 0.455):
``benchmarks/results/structure_selection.md``. Re-chosen with the learned ranker
(``structure_selection_learned.md``) and with structure-type slots
(``structure_selection_types.md``: dev 0.760, test 0.650): 0.075 both times; a
logistic-regression selector over rank, energy gaps, symmetry and relaxed duplicates
did worse on dev (0.71 left-one-out against 0.75).

A better potential does not choose better (``benchmarks/results/selection_potential.md``):
SevenNet-0 (matbench-discovery F1 0.72 against CHGNet's 0.61, same MPtrj data) re-scoring the 5
CHGNet-relaxed templates, margin chosen on dev, keeps a match for 0.645 of the 200 test materials
with one evaluation per structure (0.050 eV/atom; dev 0.740) and 0.650 after 30 of its own FIRE steps
(0.075; dev 0.750), against 0.650 for CHGNet (dev 0.760); paired +2/-3 and +2/-2. The mean of the two
energies gives 0.660 (+2/-0) on test but no gain on dev (0.750 / 0.760), so it was not adopted. The
lowest-energy misses are mostly intermetallic site orderings (33 of 51 on test) with a median
0.012 eV/atom between the lowest and the matching template, and SevenNet-0, too, puts the wrong one
below the true structure in 47 of its 48: below what either potential resolves. SevenNet-l3i5 (the
larger model in the same wheel) ties too: 0.650 on test (margin 0.1 from dev, where it tied at 0.760;
+1/-1), although its plain lowest energy was the best on dev (0.690 against 0.640; test 0.570 against
0.560). CHGNet stays the default; ``SelectionSettings(energy=SelectionEnergy.SEVENNET_0)`` (or
``SEVENNET_L3I5``) is there to try.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gapforge.structure.rescore import RescoreSettings, SelectionEnergy

#: eV/atom another template must relax below the first-ranked one to be kept instead;
#: chosen on the development set (benchmarks/results/structure_selection.md).
SELECTION_MARGIN = 0.075


@dataclass(frozen=True)
class SelectionSettings:
    """How one of a candidate's relaxed templates is kept.

    Attributes:
        energy: whose energy compares the CHGNet-relaxed templates (CHGNet's own, or another
            potential re-scoring them: :mod:`gapforge.structure.rescore`).
        margin: eV/atom another template must lie below the first-ranked one to be kept instead
            (0 = lowest energy, ``inf`` = first-ranked).
        rescore_steps: with another potential, its own FIRE + cell-filter steps from the
            CHGNet-relaxed structure before the energy is read (0 = one evaluation).
    """

    energy: SelectionEnergy = SelectionEnergy.CHGNET
    margin: float = SELECTION_MARGIN
    rescore_steps: int = 0

    def __post_init__(self) -> None:
        if not self.margin >= 0 or self.rescore_steps < 0:
            raise ValueError(
                f"need margin >= 0 and rescore_steps >= 0 (got {self.margin}, {self.rescore_steps})"
            )
        if self.rescore_steps and self.energy == SelectionEnergy.CHGNET:
            raise ValueError("rescore_steps needs a re-scoring potential (energy other than chgnet)")

    def rescore(self, device: str = "cpu", num_threads: int | None = 1) -> RescoreSettings | None:
        """The re-scoring to run before choosing (``None`` when CHGNet's energies choose)."""
        if self.energy == SelectionEnergy.CHGNET:
            return None
        return RescoreSettings(self.energy, self.rescore_steps, device=device, num_threads=num_threads)


def pick_template(
    energies: Mapping[int, float],
    margin: float = SELECTION_MARGIN,
    *,
    converged: Mapping[int, bool] | None = None,
) -> int:
    """The template rank to keep: the first-ranked unless another relaxed lower by more than ``margin``.

    Args:
        energies: template rank (1 = first) -> relaxed energy per atom (eV/atom); non-finite
            energies are ignored.
        margin: eV/atom; 0 keeps the lowest energy (ties: the better rank), ``inf`` the first-ranked.
        converged: rank -> whether the relaxation converged; when any did, only those compete.

    Returns:
        The kept rank.

    Raises:
        ValueError: no finite energy.

    Example:
        >>> pick_template({1: -5.00, 2: -5.03}, margin=0.05)
        1
        >>> pick_template({1: -5.00, 2: -5.08}, margin=0.05)
        2
    """
    pool = {int(r): float(e) for r, e in energies.items() if math.isfinite(float(e))}
    if converged is not None and any(converged.get(r, False) for r in pool):
        pool = {r: e for r, e in pool.items() if converged.get(r, False)}
    if not pool:
        raise ValueError("no relaxed template with a finite energy")
    first = min(pool)
    lowest = min(pool, key=lambda r: (pool[r], r))
    return lowest if pool[first] - pool[lowest] > margin else first
