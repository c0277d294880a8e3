"""The active-learning campaign in the latent space.

One iteration: encode the labelled formulas -> fit the GP surrogate of the band
gap -> optimise the acquisition inside the latent bounds (``q`` slots,
``R`` restarts each) -> decode -> per slot keep the best restart that decodes
to a valid formula not labelled yet (counting invalid decodes and duplicates)
-> label with the oracle -> append -> save the state atomically. A decode is
valid (:meth:`Campaign.admissible`) when it is a compound (``compounds``: by
default at least two elements, not all metals; O2, Ti or TiAl are invalid), has
no excluded element (``exclude_elements``: by default radioactive elements and
noble gases) and, with ``validity: smact`` (the default), is SMACT-valid: the
campaign then cannot climb the oracle's errors on charge-imbalanced formulas
such as H6F5. ``validity: decodable, compounds: any, exclude_elements: []`` is
the paper's rule.

A formula the oracle could not label is never proposed again. Proposals
whose decode is a formula already labelled are kept as GP
observations at the proposed latent point with the known gap (they teach the
surrogate that the region is explored, so it does not propose it again).

Python use::

    from gapforge.active import Campaign, parse_config
    camp = Campaign.create(parse_config({...}), "runs/wide-gap")
    result = camp.run()
    camp = Campaign.open("runs/wide-gap")    # after a crash: continues where it stopped
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gapforge import columns as C
from gapforge.active.acquisition import Goal, propose
from gapforge.active.codec import AutoencoderCodec, LatentCodec, LinearCodec
from gapforge.active.config import CampaignConfig, parse_config
from gapforge.active.oracles import ExternalOracle, ModelOracle, Oracle, TableOracle
from gapforge.active.state import (
    CODEC_DIR,
    CONFIG_FILE,
    STATE_FILE,
    CampaignState,
    empty_proposals,
)
from gapforge.active.surrogate import fit_surrogate
from gapforge.errors import GapforgeError, InputError
from gapforge.io import write_json
from gapforge.screening.rules import Validity, compound_mask, excluded_mask

log = logging.getLogger(__name__)

SOURCE_INITIAL = "initial"


@dataclass(frozen=True)
class IterationRecord:
    """What one iteration did (one row of ``iterations.json``).

    Attributes:
        iteration: 1-based iteration number.
        n_proposed: batch slots (``q``).
        n_valid_first: slots whose best acquisition point decodes to a valid formula.
        n_valid: slots with a valid decode among the restarts.
        n_invalid: slots without any valid decode.
        n_duplicate: slots whose valid decodes were all formulas labelled already.
        n_new: slots with a new formula.
        n_labelled: new formulas the oracle labelled.
        n_unlabelled: new formulas the oracle could not label (NaN).
        n_train: GP training points.
        best_gap: best band gap in the labelled set so far (eV).
        best_formula: its formula.
        best_objective: best objective value so far.
        n_hits: labelled formulas inside the goal window (window goal only).
        fit_seconds: surrogate fit time.
        acquisition_seconds: acquisition optimisation time.
        label_seconds: decoding + labelling time.
    """

    iteration: int
    n_proposed: int
    n_valid_first: int
    n_valid: int
    n_invalid: int
    n_duplicate: int
    n_new: int
    n_labelled: int
    n_unlabelled: int
    n_train: int
    best_gap: float
    best_formula: str
    best_objective: float
    n_hits: int
    fit_seconds: float
    acquisition_seconds: float
    label_seconds: float

    @property
    def valid_rate(self) -> float:
        """Share of slots with a valid decode."""
        return self.n_valid / self.n_proposed if self.n_proposed else float("nan")


@dataclass(frozen=True)
class CampaignResult:
    """The outcome of :meth:`Campaign.run`.

    Attributes:
        labelled: the labelled set (initial + campaign).
        proposals: every proposal with its status.
        iterations: per-iteration records.
        run_dir: the run directory, if any.
    """

    labelled: pd.DataFrame
    proposals: pd.DataFrame
    iterations: pd.DataFrame
    run_dir: Path | None

    def summary(self) -> dict[str, Any]:
        """Totals: proposals, valid-decode rates, new labels, best gap."""
        it = self.iterations
        n = int(it["n_proposed"].sum()) if len(it) else 0
        new = self.labelled[self.labelled["source"] != SOURCE_INITIAL]
        best = self.labelled.loc[self.labelled["band_gap"].idxmax()] if len(self.labelled) else None
        return {
            "iterations": len(it),
            "proposed": n,
            "valid_decode_rate": float(it["n_valid"].sum() / n) if n else None,
            "valid_decode_rate_first": float(it["n_valid_first"].sum() / n) if n else None,
            "duplicates": int(it["n_duplicate"].sum()) if n else 0,
            "invalid": int(it["n_invalid"].sum()) if n else 0,
            "new_labels": len(new),
            "best_gap": None if best is None else float(best["band_gap"]),
            "best_formula": None if best is None else str(best["formula"]),
        }


# -- building the parts from a config --------------------------------------------------------
def build_codec(config: CampaignConfig, run_dir: Path | None = None) -> LatentCodec:
    """The config's latent codec; a linear codec is fitted once and saved in ``run_dir/codec``."""
    cc = config.codec
    if cc.kind == "autoencoder":
        return AutoencoderCodec(cc.model)
    if run_dir is not None and (run_dir / CODEC_DIR / "codec.json").is_file():
        return LinearCodec.load(run_dir / CODEC_DIR)
    from gapforge.data import load_dataset

    df = load_dataset(cc.fit_on, duplicates="mean")
    formulas = df[C.FORMULA].tolist()
    if cc.n_fit is not None and cc.n_fit < len(formulas):
        rng = np.random.default_rng(config.seed)
        formulas = [formulas[i] for i in np.sort(rng.choice(len(formulas), cc.n_fit, replace=False))]
    codec = LinearCodec(latent_dim=cc.latent_dim, rule=cc.rule, threshold=cc.threshold).fit(formulas)
    if run_dir is not None:
        codec.save(run_dir / CODEC_DIR)
    return codec


def build_oracle(config: CampaignConfig) -> Oracle:
    """The config's oracle."""
    oc = config.oracle
    if oc.kind == "table":
        return TableOracle.from_file(oc.path)  # type: ignore[arg-type]
    if oc.kind == "model":
        return ModelOracle.load(oc.model, kind=oc.model_kind)
    return ExternalOracle()


def initial_set(config: CampaignConfig) -> pd.DataFrame:
    """The config's initial labelled set (``formula``, ``band_gap``), filtered and sampled."""
    from gapforge.data import load_dataset

    ic = config.initial
    df = load_dataset(ic.dataset, duplicates="mean")[[C.FORMULA, C.BAND_GAP]]
    if ic.max_gap is not None:
        df = df[df[C.BAND_GAP] < ic.max_gap]
    if ic.n is not None:
        if ic.n > len(df):
            raise InputError(
                f"initial.n = {ic.n} but the initial set has only {len(df)} rows", value=ic.dataset
            )
        df = df.sample(n=ic.n, random_state=ic.sample_seed)
    return df.reset_index(drop=True)


class Campaign:
    """An active-learning campaign (see the module doc).

    Args:
        config: validated configuration.
        codec: latent codec (encode/decode/latent_bounds).
        oracle: labeller.
        state: the campaign state (a new one: :meth:`start` adds the initial set).
        run_dir: directory the state is saved to after every iteration (None: in memory only).
    """

    def __init__(
        self,
        config: CampaignConfig,
        codec: LatentCodec,
        oracle: Oracle,
        state: CampaignState | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        self.config = config
        self.codec = codec
        self.oracle = oracle
        self.state = state or CampaignState.new(config.seed)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.goal: Goal = config.goal.to_goal()
        self._acq = config.acquisition.to_settings()
        self._sur = config.surrogate.to_settings()
        self._bounds = np.asarray(codec.latent_bounds, dtype=np.float64)
        self._smact = None
        if config.validity == Validity.SMACT:
            from gapforge.encoding import FormulaEncoder
            from gapforge.screening.validity import SmactChecker

            self._smact = SmactChecker(FormulaEncoder().elements)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        config: CampaignConfig,
        out: str | Path | None,
        *,
        overwrite: bool = False,
        codec: LatentCodec | None = None,
        oracle: Oracle | None = None,
        initial: pd.DataFrame | None = None,
    ) -> Campaign:
        """Start a campaign: build codec/oracle/initial set from ``config`` unless given, save iteration 0.

        Raises:
            InputError: ``out`` already holds a campaign and ``overwrite`` is False.
        """
        run_dir = None if out is None else Path(out)
        if run_dir is not None:
            if (run_dir / STATE_FILE).exists() and not overwrite:
                raise InputError(
                    "a campaign already exists here (use 'gapforge campaign resume' or --overwrite)",
                    path=run_dir,
                )
            if overwrite and run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(config.to_dict(), run_dir / CONFIG_FILE)
        codec = codec if codec is not None else build_codec(config, run_dir)
        oracle = oracle if oracle is not None else build_oracle(config)
        initial = initial if initial is not None else initial_set(config)
        camp = cls(config, codec, oracle, None, run_dir)
        camp._add_initial(initial)
        camp._save()
        return camp

    @classmethod
    def open(cls, run_dir: str | Path, *, oracle: Oracle | None = None) -> Campaign:
        """Re-open a saved campaign (after a crash, or to run more iterations)."""
        import json

        run_dir = Path(run_dir)
        if not (run_dir / CONFIG_FILE).is_file():
            raise InputError("not a campaign run directory (no config.json)", path=run_dir)
        config = parse_config(json.loads((run_dir / CONFIG_FILE).read_text()), path=run_dir / CONFIG_FILE)
        state = CampaignState.load(run_dir)
        codec = build_codec(config, run_dir)
        return cls(config, codec, oracle if oracle is not None else build_oracle(config), state, run_dir)

    def _add_initial(self, initial: pd.DataFrame) -> None:
        f = initial[C.FORMULA].astype(str).tolist()
        z = self._encode(f)
        ok = np.isfinite(z).all(axis=1) & np.isfinite(initial[C.BAND_GAP].to_numpy(dtype=np.float64))
        if (~ok).any():
            log.warning(
                "dropped %d initial formulas the codec cannot encode or without a gap", int((~ok).sum())
            )
        if ok.sum() < 2:
            raise InputError(
                f"the initial set needs at least 2 encodable labelled formulas, got {int(ok.sum())}"
            )
        gaps = initial[C.BAND_GAP].to_numpy(dtype=np.float64)[ok]
        self.state.labelled = pd.DataFrame(
            {
                "formula": pd.Series(np.asarray(f, dtype=object)[ok], dtype=object),
                "band_gap": gaps,
                "objective": np.asarray(self.goal.objective(gaps), dtype=np.float64),
                "source": pd.Series([SOURCE_INITIAL] * int(ok.sum()), dtype=object),
                "iteration": np.zeros(int(ok.sum()), dtype=np.int64),
            }
        )

    # -- views ----------------------------------------------------------------------------
    @property
    def labelled(self) -> pd.DataFrame:
        """The labelled set."""
        return self.state.labelled

    def result(self) -> CampaignResult:
        """Current tables as a :class:`CampaignResult`."""
        return CampaignResult(
            self.state.labelled.copy(),
            self.state.proposals.copy(),
            pd.DataFrame(self.state.log, columns=list(IterationRecord.__dataclass_fields__)),
            self.run_dir,
        )

    # -- the loop -------------------------------------------------------------------------
    def admissible(self, formulas: list[str | None]) -> list[str | None]:
        """Decodes the campaign may label; the others become ``None`` (counted as invalid decodes).

        A decode is admissible when it is a formula, passes the compound rule
        (``config.compounds``), has no excluded element (``config.exclude_elements``)
        and, with ``validity: smact``, is SMACT-valid.
        """
        text = [f or "" for f in formulas]
        ok = np.array([f != "" for f in text], dtype=bool)
        ok &= compound_mask(text, self.config.compounds)
        ok &= ~excluded_mask(text, self.config.exclude_elements)
        if self._smact is not None:
            ok &= np.asarray(self._smact.check_formulas(text), dtype=bool)
        return [f if good else None for f, good in zip(formulas, ok, strict=True)]

    def _encode(self, formulas: list[str]) -> np.ndarray:
        missing = [f for f in dict.fromkeys(formulas) if f not in self.state.codes]
        if missing:
            z = np.asarray(self.codec.encode(missing), dtype=np.float64)
            self.state.codes.update(zip(missing, z, strict=True))
        d = self._bounds.shape[1]
        return np.stack([self.state.codes[f] for f in formulas]) if formulas else np.zeros((0, d))

    def _training_data(self) -> tuple[np.ndarray, np.ndarray]:
        lab = self.state.labelled
        z = self._encode(lab["formula"].tolist())
        y = lab["objective"].to_numpy(dtype=np.float64)
        dup = self.state.proposals[self.state.proposals["status"] == "duplicate"]
        dup = dup[np.isfinite(dup["band_gap"].to_numpy(dtype=np.float64))]
        if len(dup):
            z = np.concatenate([z, np.stack(dup["z"].to_list())])
            y = np.concatenate([y, np.asarray(self.goal.objective(dup["band_gap"].to_numpy(np.float64)))])
        ok = np.isfinite(z).all(axis=1) & np.isfinite(y)
        return z[ok], y[ok]

    def _propose(self, iteration: int, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Fit, optimise and decode: one row per slot with status new/invalid/duplicate."""
        x, y = self._training_data()
        t0 = time.perf_counter()
        model = None
        if self._acq.kind != "random":
            refit = self.state.hyper is None or (iteration - 1) % self.config.surrogate.refit_every == 0
            fit = fit_surrogate(
                x,
                y,
                self._bounds,
                self._sur,
                warm_start=self.state.hyper,
                fit_hyperparameters=refit,
                seed=self.config.seed,  # one subset key stream for the whole campaign
            )
            model = fit.model
            self.state.hyper = fit.hyperparameters
        fit_s = time.perf_counter() - t0
        prop = propose(model, self._bounds, self.goal, self._acq, best_objective=float(y.max()), seed=seed)
        t1 = time.perf_counter()
        q, r, d = prop.candidates.shape
        decoded = self.codec.decode(prop.candidates.reshape(q * r, d))
        decoded = self.admissible(decoded)
        props = self.state.proposals
        known = set(self.state.labelled["formula"]) | set(
            props.loc[props["status"] == "unlabelled", "formula"]
        )
        gap_of = dict(zip(self.state.labelled["formula"], self.state.labelled["band_gap"], strict=True))
        chosen: set[str] = set()
        rows = []
        n_valid_first = 0
        for j in range(q):
            slot = decoded[j * r : (j + 1) * r]
            n_valid_first += slot[0] is not None
            pick = next(
                (k for k, f in enumerate(slot) if f is not None and f not in known and f not in chosen), None
            )
            if pick is not None:
                status, k, f = "new", pick, slot[pick]
                chosen.add(f)
            else:
                k = next((k for k, f in enumerate(slot) if f is not None), 0)
                f = slot[k]
                status = "invalid" if f is None else "duplicate"
            rows.append(
                {
                    "iteration": iteration,
                    "slot": j,
                    "formula": f or "",
                    "status": status,
                    "acquisition": float(prop.values[j, k]),
                    "band_gap": gap_of.get(f, np.nan) if status == "duplicate" else np.nan,
                    "z": prop.candidates[j, k].copy(),
                }
            )
        table = pd.DataFrame(rows)
        stats = {
            "n_valid_first": n_valid_first,
            "n_train": len(x),
            "fit_seconds": fit_s,
            "acquisition_seconds": prop.seconds,
            "decode_seconds": time.perf_counter() - t1,
        }
        return table, stats

    def _commit(
        self, iteration: int, table: pd.DataFrame, stats: dict[str, Any], source: str
    ) -> IterationRecord:
        """Append the labelled proposals and the record; save."""
        new = table[table["status"] == "labelled"]
        if len(new):
            gaps = new["band_gap"].to_numpy(dtype=np.float64)
            add = pd.DataFrame(
                {
                    "formula": new["formula"].astype(object).to_numpy(),
                    "band_gap": gaps,
                    "objective": np.asarray(self.goal.objective(gaps), dtype=np.float64),
                    "source": source,
                    "iteration": iteration,
                }
            )
            self.state.labelled = pd.concat([self.state.labelled, add], ignore_index=True)
        props = table[list(empty_proposals().columns)]
        self.state.proposals = (
            props.copy()
            if len(self.state.proposals) == 0
            else pd.concat([self.state.proposals, props], ignore_index=True)
        )
        lab = self.state.labelled
        ibest = int(lab["band_gap"].to_numpy().argmax())
        st = table["status"]
        rec = IterationRecord(
            iteration=iteration,
            n_proposed=len(table),
            n_valid_first=int(stats.get("n_valid_first", 0)),
            n_valid=int((st != "invalid").sum()),
            n_invalid=int((st == "invalid").sum()),
            n_duplicate=int((st == "duplicate").sum()),
            n_new=int(st.isin(["labelled", "unlabelled"]).sum()),
            n_labelled=int((st == "labelled").sum()),
            n_unlabelled=int((st == "unlabelled").sum()),
            n_train=int(stats.get("n_train", 0)),
            best_gap=float(lab["band_gap"].iloc[ibest]),
            best_formula=str(lab["formula"].iloc[ibest]),
            best_objective=float(lab["objective"].max()),
            n_hits=int(self.goal.hit(lab["band_gap"].to_numpy()).sum()),
            fit_seconds=float(stats.get("fit_seconds", 0.0)),
            acquisition_seconds=float(stats.get("acquisition_seconds", 0.0)),
            label_seconds=float(stats.get("label_seconds", 0.0)),
        )
        self.state.log.append(asdict(rec))
        self.state.iteration = iteration
        self.state.pending = None
        self.state.status = "done" if iteration >= self.config.iterations else "running"
        self._save()
        return rec

    def _save(self) -> None:
        if self.run_dir is not None:
            self.state.save(self.run_dir)

    def step(self) -> IterationRecord:
        """Run one iteration with the (synchronous) oracle and save."""
        if self.state.pending is not None:
            raise InputError("the campaign is waiting for labels of its pending proposals (use tell)")
        iteration = self.state.iteration + 1
        seed = self.state.next_seed()
        table, stats = self._propose(iteration, seed)
        t0 = time.perf_counter()
        is_new = (table["status"] == "new").to_numpy()
        if is_new.any():
            gaps = self.oracle.label(table.loc[is_new, "formula"].tolist())
            table.loc[is_new, "band_gap"] = gaps
            table.loc[is_new, "status"] = np.where(np.isfinite(gaps), "labelled", "unlabelled")
        stats["label_seconds"] = time.perf_counter() - t0 + stats.pop("decode_seconds")
        return self._commit(iteration, table, stats, self.oracle.name)

    def run(self, iterations: int | None = None, *, progress: bool | None = None) -> CampaignResult:
        """Run until ``config.iterations`` are done (or ``iterations`` more); returns the tables.

        With an external oracle this writes the next proposals (:meth:`ask`) and returns.
        """
        target = self.config.iterations if iterations is None else self.state.iteration + iterations
        if isinstance(self.oracle, ExternalOracle):
            if self.state.iteration < target:
                self.ask()
            return self.result()
        bar = tqdm(
            total=target,
            initial=self.state.iteration,
            desc="campaign",
            unit="it",
            disable=None if progress is None else not progress,
        )
        try:
            while self.state.iteration < target:
                rec = self.step()
                bar.update(1)
                bar.set_postfix(
                    valid=f"{rec.valid_rate:.0%}",
                    new=rec.n_labelled,
                    best=f"{rec.best_gap:.2f} eV",
                    refresh=False,
                )
                log.info(
                    "iteration %d: %d/%d valid, %d new, %d duplicate, best %.3f eV (%s)",
                    rec.iteration,
                    rec.n_valid,
                    rec.n_proposed,
                    rec.n_labelled,
                    rec.n_duplicate,
                    rec.best_gap,
                    rec.best_formula,
                )
        finally:
            bar.close()
        return self.result()

    # -- ask / tell -----------------------------------------------------------------------
    def ask(self) -> pd.DataFrame:
        """Propose the next batch for an external oracle and save it as pending.

        Asking again before telling returns the same pending proposals.

        Returns:
            ``iteration``, ``slot``, ``formula`` of the new formulas to label.
        """
        if self.state.pending is None:
            iteration = self.state.iteration + 1
            seed = self.state.next_seed()
            table, stats = self._propose(iteration, seed)
            table["n_valid_first"] = stats["n_valid_first"]
            table["n_train"] = stats["n_train"]
            table["fit_seconds"] = stats["fit_seconds"]
            table["acquisition_seconds"] = stats["acquisition_seconds"]
            self.state.pending = table
            self.state.status = "waiting"
            self._save()
        pend = self.state.pending
        return pend.loc[pend["status"] == "new", ["iteration", "slot", "formula"]].reset_index(drop=True)

    def tell(self, labels: pd.DataFrame, *, path: str | Path | None = None) -> IterationRecord:
        """Record measured gaps of the pending proposals and complete the iteration.

        Args:
            labels: a table with a formula column and a band-gap column (eV); rows with an
                empty gap are left unlabelled. Formulas not pending are added as extra labels.
            path: file the labels came from (for error messages).

        Raises:
            InputError: nothing pending, no formula/gap column, a bad formula or a bad gap.
        """
        from gapforge.data.loaders import normalize_formulas
        from gapforge.io import find_column

        if self.state.pending is None:
            raise InputError("no pending proposals to label (run 'gapforge campaign ask' first)", path=path)
        fcol = find_column(labels, C.FORMULA_ALIASES, what="formula", path=path)
        gcol = find_column(labels, C.BAND_GAP_ALIASES, what="band gap", path=path)
        formulas = normalize_formulas(labels[fcol].tolist(), path=path)
        gaps = pd.to_numeric(labels[gcol].replace("", np.nan), errors="coerce").to_numpy(dtype=np.float64)
        raw = labels[gcol].tolist()
        for i, (g, v) in enumerate(zip(gaps, raw, strict=True)):
            empty = v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in ("", "nan")
            if not empty and (not np.isfinite(g) or g < 0):
                raise InputError("band gap must be a non-negative number (eV)", path=path, row=i + 1, value=v)
        measured = {f: g for f, g in zip(formulas, gaps, strict=True) if np.isfinite(g)}
        table = self.state.pending.copy()
        iteration = int(table["iteration"].iloc[0])
        stats = {
            k: table[k].iloc[0] for k in ("n_valid_first", "n_train", "fit_seconds", "acquisition_seconds")
        }
        is_new = table["status"] == "new"
        got = table["formula"].map(lambda f: measured.get(f, np.nan)).to_numpy(dtype=np.float64)
        table.loc[is_new, "band_gap"] = got[is_new.to_numpy()]
        table.loc[is_new, "status"] = np.where(np.isfinite(got[is_new.to_numpy()]), "labelled", "unlabelled")
        extra = {
            f: g
            for f, g in measured.items()
            if f not in set(table["formula"]) and f not in set(self.labelled["formula"])
        }
        if extra:
            ef = list(extra)
            z = self._encode(ef)
            rows = pd.DataFrame(
                {
                    "iteration": iteration,
                    "slot": -1,
                    "formula": ef,
                    "status": ["labelled" if np.isfinite(zz).all() else "unlabelled" for zz in z],
                    "acquisition": np.nan,
                    "band_gap": [extra[f] for f in ef],
                    "z": list(z),
                }
            )
            log.info("tell: %d labelled formulas were not pending; added as extra labels", len(extra))
            table = pd.concat([table, rows], ignore_index=True)
        return self._commit(iteration, table, stats, "external")


def run_campaign(config_path: str | Path, out: str | Path, *, overwrite: bool = False) -> CampaignResult:
    """``gapforge campaign run``: read and validate a config file, start the campaign in ``out``, run it."""
    from gapforge.active.config import load_config

    config = load_config(config_path)
    return Campaign.create(config, out, overwrite=overwrite).run()


def resume_campaign(run_dir: str | Path, *, iterations: int | None = None) -> CampaignResult:
    """``gapforge campaign resume``: continue a saved campaign from its last completed iteration."""
    camp = Campaign.open(run_dir)
    if camp.state.pending is not None and not isinstance(camp.oracle, ExternalOracle):
        raise GapforgeError(
            f"{run_dir}: the campaign is waiting for external labels (use 'gapforge campaign tell')"
        )
    return camp.run(iterations)
