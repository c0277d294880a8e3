"""The saved state of a campaign: everything needed to continue it, written atomically.

A run directory holds::

    config.json        the resolved, validated config
    state.json         the commit record: completed iterations, status, numpy RNG state
    labelled.parquet   formula, band_gap (eV), objective, source, iteration (0 = initial set)
    proposals.parquet  iteration, slot, formula, status, acquisition, band_gap, z (latent point)
    iterations.json    one record per completed iteration (counts, best gap, timings)
    surrogate-NNNNN.pt GP hyper-parameters (warm start) and torch's RNG state after iteration NNNNN
    pending.parquet    proposals awaiting external labels (ask/tell), with pending.csv for people
    latent_codes.parquet  the latent code of every formula encoded so far, exactly as computed:
                       a code depends in its last bits on which formulas shared its encoding
                       batch, so a resumed run reuses these instead of re-encoding
    codec/             the linear codec, when one is used

Commit protocol: after an iteration the tables are written first (each file
atomically, each row tagged with its iteration), then ``state.json``. On load,
rows of iterations later than the one recorded in ``state.json`` are dropped,
so a process killed at any instant resumes from its last completed iteration
and repeats the interrupted one exactly (its seed comes from the saved RNG state).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gapforge.errors import InputError
from gapforge.io import atomic_path, write_json, write_table

log = logging.getLogger(__name__)

STATE_VERSION = 1
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
LABELLED_FILE = "labelled.parquet"
PROPOSALS_FILE = "proposals.parquet"
LOG_FILE = "iterations.json"
PENDING_FILE = "pending.parquet"
CODES_FILE = "latent_codes.parquet"
PENDING_CSV = "pending.csv"
CODEC_DIR = "codec"

LABELLED_COLUMNS = ("formula", "band_gap", "objective", "source", "iteration")
PROPOSAL_COLUMNS = ("iteration", "slot", "formula", "status", "acquisition", "band_gap", "z")


def empty_labelled() -> pd.DataFrame:
    """An empty labelled table with the right dtypes."""
    return pd.DataFrame(
        {
            "formula": pd.Series([], dtype=object),
            "band_gap": pd.Series([], dtype=np.float64),
            "objective": pd.Series([], dtype=np.float64),
            "source": pd.Series([], dtype=object),
            "iteration": pd.Series([], dtype=np.int64),
        }
    )


def empty_proposals() -> pd.DataFrame:
    """An empty proposals table with the right dtypes."""
    return pd.DataFrame(
        {
            "iteration": pd.Series([], dtype=np.int64),
            "slot": pd.Series([], dtype=np.int64),
            "formula": pd.Series([], dtype=object),
            "status": pd.Series([], dtype=object),
            "acquisition": pd.Series([], dtype=np.float64),
            "band_gap": pd.Series([], dtype=np.float64),
            "z": pd.Series([], dtype=object),
        }
    )


@dataclass
class CampaignState:
    """The mutable state of a campaign.

    Attributes:
        iteration: number of completed iterations.
        status: ``"running"``, ``"waiting"`` (proposals out for external labels) or ``"done"``.
        rng_state: numpy ``PCG64`` bit-generator state (iteration seeds are drawn from it).
        labelled: the labelled set (see the module doc).
        proposals: every proposal so far.
        log: one record per completed iteration.
        hyper: GP hyper-parameters of the last fit, or None.
        pending: proposals awaiting external labels, or None.
        codes: latent code of every formula encoded so far (see ``CODES_FILE``).
    """

    iteration: int
    status: str
    rng_state: dict[str, Any]
    labelled: pd.DataFrame = field(default_factory=empty_labelled)
    proposals: pd.DataFrame = field(default_factory=empty_proposals)
    log: list[dict[str, Any]] = field(default_factory=list)
    hyper: dict[str, torch.Tensor] | None = None
    pending: pd.DataFrame | None = None
    codes: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def new(cls, seed: int) -> CampaignState:
        """A fresh state whose RNG is seeded with ``seed``."""
        return cls(iteration=0, status="running", rng_state=np.random.default_rng(seed).bit_generator.state)

    def next_seed(self) -> int:
        """Draw the next iteration seed and advance the saved RNG state."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng_state
        seed = int(rng.integers(0, 2**31 - 1))
        self.rng_state = rng.bit_generator.state
        return seed

    # -- persistence ---------------------------------------------------------------------
    def save(self, run_dir: str | Path) -> None:
        """Write every file atomically, ``state.json`` last (the commit point)."""
        run_dir = Path(run_dir)
        write_table(self.labelled, run_dir / LABELLED_FILE)
        props = self.proposals.copy()
        props["z"] = [list(map(float, z)) for z in props["z"]]
        write_table(props, run_dir / PROPOSALS_FILE)
        write_json(self.log, run_dir / LOG_FILE)
        codes = pd.DataFrame(
            {
                "formula": pd.Series(list(self.codes), dtype=object),
                "z": [list(map(float, z)) for z in self.codes.values()],
            }
        )
        write_table(codes, run_dir / CODES_FILE)
        tensors_file = f"surrogate-{self.iteration:05d}.pt"
        with atomic_path(run_dir / tensors_file) as tmp:
            torch.save({"hyper": self.hyper or {}, "torch_rng": torch.get_rng_state()}, tmp)
        pending_file = run_dir / PENDING_FILE
        if self.pending is not None:
            pend = self.pending.copy()
            pend["z"] = [list(map(float, z)) for z in pend["z"]]
            write_table(pend, pending_file)
            new = self.pending[self.pending["status"] == "new"]  # what the lab is asked to measure
            write_table(pd.DataFrame({"formula": new["formula"], "band_gap": np.nan}), run_dir / PENDING_CSV)
        write_json(
            {
                "version": STATE_VERSION,
                "iteration": self.iteration,
                "status": self.status,
                "rng_state": self.rng_state,
                "pending": self.pending is not None,
                "tensors": tensors_file,
                "n_labelled": len(self.labelled),
            },
            run_dir / STATE_FILE,
        )
        if self.pending is None:
            for name in (PENDING_FILE, PENDING_CSV):
                (run_dir / name).unlink(missing_ok=True)
        for old in run_dir.glob("surrogate-*.pt"):
            if old.name != tensors_file:
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, run_dir: str | Path) -> CampaignState:
        """Read a run directory's state, dropping rows of any uncommitted iteration.

        Raises:
            InputError: not a campaign run directory, or an unreadable state.
        """
        run_dir = Path(run_dir)
        path = run_dir / STATE_FILE
        if not path.is_file():
            raise InputError("not a campaign run directory (no state.json)", path=run_dir)
        try:
            meta = json.loads(path.read_text())
            it = int(meta["iteration"])
            labelled = pd.read_parquet(run_dir / LABELLED_FILE)
            proposals = pd.read_parquet(run_dir / PROPOSALS_FILE)
            log_records = json.loads((run_dir / LOG_FILE).read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot read campaign state ({exc})", path=run_dir) from exc
        labelled = labelled[labelled["iteration"] <= it].reset_index(drop=True)
        proposals = proposals[proposals["iteration"] <= it].reset_index(drop=True)
        proposals["z"] = [np.asarray(z, dtype=np.float64) for z in proposals["z"]]
        labelled["formula"] = labelled["formula"].astype(object)
        labelled["source"] = labelled["source"].astype(object)
        proposals["formula"] = proposals["formula"].astype(object)
        proposals["status"] = proposals["status"].astype(object)
        log_records = [r for r in log_records if r["iteration"] <= it]
        hyper = None
        tensors = run_dir / str(meta.get("tensors", ""))
        if tensors.is_file():
            saved = torch.load(tensors, weights_only=True)
            hyper = saved["hyper"] or None
            torch.set_rng_state(saved["torch_rng"])
        codes: dict[str, np.ndarray] = {}
        if (run_dir / CODES_FILE).is_file():  # the exact codes the interrupted run used
            table = pd.read_parquet(run_dir / CODES_FILE)
            codes = {
                f: np.asarray(z, dtype=np.float64) for f, z in zip(table["formula"], table["z"], strict=True)
            }
        pending = None
        if meta.get("pending") and (run_dir / PENDING_FILE).is_file():
            pending = pd.read_parquet(run_dir / PENDING_FILE)
            pending["z"] = [np.asarray(z, dtype=np.float64) for z in pending["z"]]
            pending["formula"] = pending["formula"].astype(object)
        return cls(
            iteration=it,
            status=str(meta.get("status", "running")),
            rng_state=meta["rng_state"],
            labelled=labelled,
            proposals=proposals,
            log=log_records,
            hyper=hyper,
            pending=pending,
            codes=codes,
        )
