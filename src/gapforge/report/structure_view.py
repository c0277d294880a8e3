"""A crystal structure as a picture and a few facts, for the report (no script, no viewer to load).

:func:`structure_svg` draws the unit cell as an inline SVG: an orthographic
projection of the atoms (VESTA colours from pymatgen, pymatgen's average ionic
radii, drawn back to front) and the cell edges, with a legend. Atoms on a
cell face, edge or corner are repeated on the opposite ones, so a rock-salt cell
looks like one. :func:`structure_facts` gives what a chemist checks first: space
group (pymatgen's ``SpacegroupAnalyzer``), lattice parameters, volume and density.

Example:
    >>> from pymatgen.core import Lattice, Structure
    >>> s = Structure(Lattice.cubic(4.03), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> structure_svg(s).startswith("<svg")
    True
"""

from __future__ import annotations

import base64
import html
import itertools
import math
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

#: Viewing direction: rotation about z, then tilt about x (degrees); a slightly oblique view
#: so that atoms stacked along a cell axis do not hide each other.
VIEW_ROTATION_DEG = (-28.0, -62.0)
_FACE_TOL = 0.02  # fractional distance to a cell face within which an atom is repeated on the other face


@dataclass(frozen=True)
class StructureFacts:
    """What the report shows beside a structure picture.

    Lattice parameters, volume, density and the drawn cell are those of the conventional
    standard cell (``SpacegroupAnalyzer.get_conventional_standard_structure``), as a
    crystallographer quotes them; ``nsites`` counts the atoms of the CIF's own cell.

    Attributes:
        formula: reduced formula of the cell.
        spacegroup_symbol: Hermann–Mauguin symbol (``SpacegroupAnalyzer``, symprec 0.1 Å).
        spacegroup_number: International Tables number.
        a, b, c: lattice lengths of the conventional cell (Å).
        alpha, beta, gamma: lattice angles (°).
        volume: conventional cell volume (Å³).
        density: g/cm³.
        nsites: atoms in the CIF's cell.
        conventional: the conventional standard cell (the CIF's cell if symmetry analysis failed).
    """

    formula: str
    spacegroup_symbol: str
    spacegroup_number: int | None
    a: float
    b: float
    c: float
    alpha: float
    beta: float
    gamma: float
    volume: float
    density: float
    nsites: int
    conventional: Structure


def structure_facts(structure: Structure, *, symprec: float = 0.1) -> StructureFacts:
    """Space group, lattice parameters, volume and density of ``structure``."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        symbol, number = sga.get_space_group_symbol(), int(sga.get_space_group_number())
        conventional = sga.get_conventional_standard_structure()
    except Exception:  # spglib gives up on a badly distorted cell
        symbol, number, conventional = "not determined", None, structure
    lat = conventional.lattice
    return StructureFacts(
        formula=structure.composition.reduced_formula,
        spacegroup_symbol=symbol,
        spacegroup_number=number,
        a=float(lat.a),
        b=float(lat.b),
        c=float(lat.c),
        alpha=float(lat.alpha),
        beta=float(lat.beta),
        gamma=float(lat.gamma),
        volume=float(lat.volume),
        density=float(structure.density),
        nsites=len(structure),
        conventional=conventional,
    )


def _colour(symbol: str) -> str:
    from pymatgen.vis.structure_vtk import EL_COLORS

    rgb = EL_COLORS["VESTA"].get(symbol)
    if rgb is None:
        return "#999999"
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def _radius(symbol: str) -> float:
    """Average ionic radius (Å) where pymatgen knows one (Li+ small, F- large), else the atomic radius."""
    from pymatgen.core import Element

    try:
        el = Element(symbol)
    except ValueError:
        return 1.2
    for r in (el.average_ionic_radius, el.atomic_radius):
        if r is not None and float(r) > 0:
            return float(r)
    return 1.2


def _rotation() -> np.ndarray:
    rz, rx = (math.radians(a) for a in VIEW_ROTATION_DEG)
    z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    return x @ z


def drawn_atoms(structure: Structure) -> list[tuple[str, np.ndarray]]:
    """(element, fractional coordinates) of every atom drawn: the cell's sites plus their face images."""
    atoms = []
    for site in structure:
        frac = np.mod(site.frac_coords, 1.0)
        frac[np.isclose(frac, 1.0, atol=1e-6)] = 0.0
        symbol = site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie)
        shifts = [[0.0, 1.0] if f < _FACE_TOL else [0.0] for f in frac]
        for shift in itertools.product(*shifts):
            atoms.append((symbol, frac + np.array(shift)))
    return atoms


def structure_svg(structure: Structure, *, size: int = 260, title: str = "") -> str:
    """The unit cell of ``structure`` as an inline ``<svg>`` (orthographic, oblique view).

    Args:
        structure: the crystal (``(N,)`` sites; only the first species of a site is drawn).
        size: width and height of the drawing, in CSS pixels.
        title: accessible title (shown as a tooltip).

    Returns:
        ``<svg class="structure" ...>`` with one ``<circle class="atom">`` per drawn atom
        (``data-element`` names it), the 12 cell edges and a colour legend.
    """
    rot = _rotation()
    matrix = structure.lattice.matrix  # rows are the lattice vectors a, b, c (Å)
    atoms = drawn_atoms(structure)
    cart = np.array([frac @ matrix for _, frac in atoms]) if atoms else np.zeros((0, 3))
    corners = np.array([np.array(c, dtype=float) @ matrix for c in itertools.product((0, 1), repeat=3)])
    view = (np.vstack([cart, corners]) - corners.mean(axis=0)) @ rot.T
    radii = np.array([_radius(sym) for sym, _ in atoms]) * 0.5
    pad_r = float(radii.max()) if len(radii) else 0.0
    lo = view[:, :2].min(axis=0) - pad_r
    hi = view[:, :2].max(axis=0) + pad_r
    legend_h = 22
    scale = (size - 16) / max(float((hi - lo).max()), 1e-6)

    def xy(p: np.ndarray) -> tuple[float, float]:
        x = 8 + (p[0] - lo[0]) * scale
        y = 8 + (hi[1] - p[1]) * scale  # SVG y grows downwards
        return round(float(x), 2), round(float(y), 2)

    parts = [
        f'<svg class="structure" xmlns="http://www.w3.org/2000/svg" width="{size}" '
        f'height="{size + legend_h}" viewBox="0 0 {size} {size + legend_h}" role="img">',
        f"<title>{html.escape(title or structure.composition.reduced_formula)}</title>",
        f'<rect width="{size}" height="{size}" fill="#ffffff"/>',
    ]
    corner_view = view[len(atoms) :]
    index = {c: i for i, c in enumerate(itertools.product((0, 1), repeat=3))}
    edges = []
    for c, i in index.items():
        for axis in range(3):
            if c[axis] == 0:
                d = list(c)
                d[axis] = 1
                edges.append((i, index[tuple(d)]))
    for i, j in edges:
        (x1, y1), (x2, y2) = xy(corner_view[i]), xy(corner_view[j])
        parts.append(
            f'<line class="cell-edge" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555" '
            'stroke-width="1" stroke-dasharray="3 2"/>'
        )
    atom_view = view[: len(atoms)]
    for k in np.argsort(atom_view[:, 2], kind="stable"):  # back to front
        sym = atoms[k][0]
        x, y = xy(atom_view[k])
        r = round(float(radii[k] * scale), 2)
        parts.append(
            f'<circle class="atom" data-element="{html.escape(sym)}" cx="{x}" cy="{y}" r="{r}" '
            f'fill="{_colour(sym)}" stroke="#222" stroke-width="0.8"/>'
        )
    x = 6
    for sym in sorted({s for s, _ in atoms}, key=_radius):
        parts.append(
            f'<circle cx="{x + 6}" cy="{size + 11}" r="6" fill="{_colour(sym)}" stroke="#222" '
            'stroke-width="0.8"/>'
            f'<text x="{x + 15}" y="{size + 15}" font-size="12" font-family="sans-serif">'
            f"{html.escape(sym)}</text>"
        )
        x += 22 + 8 * len(sym)
    parts.append("</svg>")
    return "".join(parts)


def cif_data_uri(text: str) -> str:
    """A ``data:`` URI of a CIF file, for a download link that needs no file beside the page."""
    return "data:chemical/x-cif;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


__all__ = ["StructureFacts", "cif_data_uri", "drawn_atoms", "structure_facts", "structure_svg"]
