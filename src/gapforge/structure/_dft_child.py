"""The process one DFT task runs in: ``python -m gapforge.structure._dft_child IN.json OUT.json [LOG]``.

Started by :func:`gapforge.structure.dft.dft_task`, directly or behind an MPI
launch command (``srun -n 4 python -m ...``), and killed when it overruns its
time budget. Reads the structure and settings from ``IN.json``, runs
:func:`~gapforge.structure.dft.compute_band_gap` and writes the
:class:`~gapforge.structure.dft.DFTResult` to ``OUT.json`` (rank 0 only under MPI).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _rank() -> int:
    try:
        from gpaw.mpi import world
    except ImportError:
        return 0
    return int(world.rank)


def main(argv: list[str]) -> int:
    """Compute one structure; the result (or the error) goes to the output file."""
    from pymatgen.core import Structure

    from gapforge.io import write_json
    from gapforge.structure.dft import STATUS_ERROR, DFTResult, DFTSettings, compute_band_gap

    in_path, out_path = Path(argv[0]), Path(argv[1])
    txt = argv[2] if len(argv) > 2 and argv[2] else None
    data = json.loads(in_path.read_text())
    try:
        result = compute_band_gap(
            Structure.from_dict(data["structure"]), DFTSettings.from_dict(data["settings"]), txt=txt
        )
    except Exception as exc:  # written as the structure's result; the stage goes on
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        result = DFTResult(status=STATUS_ERROR, converged=False, message=message)
    if _rank() == 0:
        write_json(result.to_dict(), out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
