"""Roost ensemble band-gap model (the paper's oracle architecture).

The network is the real :class:`aviary.roost.model.Roost` from
``aviary-models``; gapforge only supplies the data pipeline (vectorised
batching of stoichiometry graphs, the same graph aviary's
``CompositionData``/``collate_batch`` build: one node per element, weighted
by its fraction, all ordered element pairs including self-pairs as edges),
the training loop (AdamW, cosine learning-rate decay, early stopping on a
validation split, best weights kept) and persistence (``torch.save`` of state
dicts, loaded with ``weights_only=True``; aviary never writes anything).

The ensemble's uncertainty combines the spread of the members' means
(epistemic) with each member's own predicted aleatoric standard deviation
(aviary's robust L1 loss, a Laplace likelihood whose ``exp(log_std)`` is the
standard deviation)::

    std = sqrt(var_members(mean_m) + mean_members(aleatoric_std_m ** 2))

Typical use::

    model = RoostEnsemble(n_members=3, epochs=7).fit(formulas, band_gaps)
    model.predict(["LiF", "GaAs"])  # formula, band_gap_mean, band_gap_std, reason
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.errors import ModelError
from gapforge.formula import parse_formula
from gapforge.io import atomic_path, write_json
from gapforge.models.base import MODEL_CARD_FILE, rebuild_from_card, weights_record
from gapforge.models.metal_gate import blend

log = logging.getLogger(__name__)

KIND = "roost"
WEIGHTS_FILE = "roost_weights.pt"
METAL_CLASSIFIER_FILE = "metal_classifier.skops"
GAP_REGRESSOR_FILE = "gap_regressor.skops"
#: Bumped when the on-disk layout changes; older gapforge refuses newer files.
FORMAT_VERSION = 1
#: aviary's element embedding used by default (pinned: aviary's default has changed before).
DEFAULT_EMBEDDING = "matscholar200"


@dataclass(frozen=True)
class CompositionGraphs:
    """Stoichiometry graphs of a batch of formulas, flattened.

    Attributes:
        z: ``(M,)`` atomic numbers of every node (element) of every formula.
        weight: ``(M,)`` float32 fraction of each element in its formula.
        n_nodes: ``(N,)`` number of elements of each formula (0 where invalid).
        start: ``(N,)`` offset of each formula's first node in ``z``/``weight``.
        valid: ``(N,)`` bool, True where the formula could be read.
        reasons: ``(N,)`` str, why a formula could not be read ("" if it could).
    """

    z: np.ndarray
    weight: np.ndarray
    n_nodes: np.ndarray
    start: np.ndarray
    valid: np.ndarray
    reasons: np.ndarray

    def __len__(self) -> int:
        return len(self.n_nodes)


def _embedding_file(name: str) -> Path:
    from aviary import PKG_DIR

    path = Path(name)
    if path.is_file():
        return path
    path = Path(PKG_DIR) / "embeddings" / "element" / f"{name}.json"
    if not path.is_file():
        raise ModelError(f"aviary element embedding {name!r} not found ({path})")
    return path


def embedding_elements(name: str = DEFAULT_EMBEDDING) -> dict[str, int]:
    """Element symbol -> atomic number of every element an aviary embedding covers."""
    import json

    from gapforge.formula import atomic_number

    with _embedding_file(name).open() as fh:
        symbols = list(json.load(fh))
    return {s: atomic_number(s) for s in symbols}


def build_graphs(formulas: Sequence[str], allowed: dict[str, int]) -> CompositionGraphs:
    """Parse formulas into flattened stoichiometry graphs.

    Each distinct string is parsed once (:func:`gapforge.formula.parse_formula`);
    fractional amounts are allowed. Formulas that cannot be parsed, are
    empty, or hold an element outside ``allowed`` are marked invalid with a
    reason instead of raising.

    Args:
        formulas: ``N`` formula strings.
        allowed: element symbol -> atomic number of the usable elements.
    """
    series = pd.Series(list(formulas), dtype=object).astype(str)
    inverse, uniq = pd.factorize(series)
    u_z: list[np.ndarray] = []
    u_w: list[np.ndarray] = []
    u_reason = np.full(len(uniq), "", dtype=object)
    empty_z = np.zeros(0, dtype=np.int64)
    empty_w = np.zeros(0, dtype=np.float32)
    for i, text in enumerate(uniq):
        try:
            amounts = parse_formula(text)
        except ValueError as exc:
            u_reason[i] = f"cannot parse formula {text!r} ({getattr(exc, 'message', exc)})"
            u_z.append(empty_z)
            u_w.append(empty_w)
            continue
        amounts = {s: a for s, a in amounts.items() if a > 0}
        missing = [s for s in amounts if s not in allowed]
        total = sum(amounts.values())
        if missing:
            u_reason[i] = f"element {missing[0]} has no Roost embedding: {text}"
        elif not amounts or total <= 0:
            u_reason[i] = f"empty formula: {text}"
        if u_reason[i]:
            u_z.append(empty_z)
            u_w.append(empty_w)
            continue
        u_z.append(np.array([allowed[s] for s in amounts], dtype=np.int64))
        u_w.append(np.array([a / total for a in amounts.values()], dtype=np.float32))
    u_n = np.array([len(z) for z in u_z], dtype=np.int64)
    n = u_n[inverse]
    start = np.zeros(len(n), dtype=np.int64)
    np.cumsum(n[:-1], out=start[1:])
    z = np.concatenate([u_z[k] for k in inverse]) if len(n) and n.sum() else empty_z
    w = np.concatenate([u_w[k] for k in inverse]) if len(n) and n.sum() else empty_w
    reasons = u_reason[inverse] if len(n) else np.zeros(0, dtype=object)
    return CompositionGraphs(z=z, weight=w, n_nodes=n, start=start, valid=reasons == "", reasons=reasons)


def collate(graphs: CompositionGraphs, idx: np.ndarray) -> tuple[Any, ...]:
    """Batch formulas ``idx`` into Roost's inputs (vectorised, no per-formula Python).

    Returns:
        ``(elem_weights (M, 1), elem_fea (M,), self_idx (P,), nbr_idx (P,),
        cry_elem_idx (M,))`` tensors, with ``M`` nodes and ``P = sum n_i**2``
        edges, exactly the layout of :func:`aviary.roost.data.collate_batch`.
    """
    import torch

    n = graphs.n_nodes[idx]
    base = np.cumsum(n) - n
    m = int(n.sum())
    pos = np.arange(m) - np.repeat(base, n) + np.repeat(graphs.start[idx], n)
    n2 = n * n
    p = int(n2.sum())
    local = np.arange(p) - np.repeat(np.cumsum(n2) - n2, n2)
    nn = np.repeat(n, n2)
    offset = np.repeat(base, n2)
    return (
        torch.from_numpy(graphs.weight[pos]).unsqueeze(1),
        torch.from_numpy(graphs.z[pos]),
        torch.from_numpy(offset + local // nn),
        torch.from_numpy(offset + local % nn),
        torch.from_numpy(np.repeat(np.arange(len(idx)), n)),
    )


@dataclass
class MemberHistory:
    """Training record of one ensemble member."""

    seed: int
    best_epoch: int = 0
    epochs_run: int = 0
    best_val_mae: float = math.inf
    seconds: float = 0.0
    val_mae: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "seed": self.seed,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "best_val_mae_eV": round(self.best_val_mae, 5),
            "seconds": round(self.seconds, 1),
            "val_mae_eV": [round(v, 5) for v in self.val_mae],
        }


#: Network widths by name. ``compact`` is the shipped oracle's (1 attention head,
#: 64-wide gate/message networks, 256/128 trunk); ``aviary`` is aviary's own Roost
#: default (3 heads, 256, 1024/512): in ``benchmarks/results/bench_models.md`` it
#: cut test MAE from 0.499 to 0.454 eV on seed 0 and predicts 2.9x slower.
WIDTHS: dict[str, dict[str, Any]] = {
    "compact": {
        "elem_heads": 1,
        "cry_heads": 1,
        "hidden": 64,
        "trunk_hidden": (256, 128),
        "out_hidden": (128, 64),
    },
    "aviary": {
        "elem_heads": 3,
        "cry_heads": 3,
        "hidden": 256,
        "trunk_hidden": (1024, 512),
        "out_hidden": (256, 128, 64),
    },
}


class RoostEnsemble:
    """An ensemble of aviary Roost networks predicting band gaps (eV) with uncertainty.

    Args:
        n_members: number of independently initialised networks.
        epochs: maximum training epochs per member.
        patience: stop a member after this many epochs without a better validation MAE.
        batch_size: formulas per optimiser step.
        learning_rate: AdamW peak learning rate (cosine decay to 1 % over ``epochs``).
        weight_decay: AdamW weight decay.
        val_fraction: share of the training data held out for early stopping
            when :meth:`fit` is given no explicit validation set.
        robust: train with aviary's robust L1 loss (adds an aleatoric std per formula).
        elem_embedding: aviary element-embedding name (pinned; default ``matscholar200``).
        elem_fea_len: node feature width of the message-passing layers.
        n_graph: message-passing layers.
        elem_heads: attention heads per message-passing layer.
        hidden: width of the gate/message networks of message passing and pooling.
        cry_heads: attention heads of the pooling.
        trunk_hidden: hidden widths of the residual trunk.
        out_hidden: hidden widths of the output network (first = trunk output).
        weights_dtype: dtype the weights are stored in (``float16`` or ``float32``).
        seed: base random seed (member ``k`` uses ``seed + k``).
        threads: torch intra-op threads while fitting and predicting (None = leave as is).
        metal_head: add a second output head predicting P(metal) (a 0 eV label = metal);
            the gap head then learns non-metal gaps only and :meth:`predict` combines
            both through the metal gate (:mod:`gapforge.models.metal_gate`).
        std_scale: calibration factor on the gap head's std (fitted on validation data).
        gate_point: the mixture statistic reported as the prediction (``median`` or ``mean``).
    """

    kind = KIND
    #: the fitted CDF recalibration (:meth:`recalibrate`), or None
    recalibration_: Any = None
    #: an extra P(metal) classifier blended with the metal head (:meth:`attach_metal_classifier`)
    metal_classifier_: Any = None
    metal_blend_weight_: float = 0.0
    #: an extra non-metal gap regressor blended with the gap head (:meth:`attach_gap_regressor`)
    gap_regressor_: Any = None
    gap_blend_weight_: float = 0.0

    def __init__(
        self,
        n_members: int = 3,
        epochs: int = 7,
        patience: int = 3,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
        val_fraction: float = 0.1,
        robust: bool = True,
        elem_embedding: str = DEFAULT_EMBEDDING,
        elem_fea_len: int = 64,
        n_graph: int = 3,
        elem_heads: int = 1,
        hidden: int = 64,
        cry_heads: int = 1,
        trunk_hidden: Sequence[int] = (256, 128),
        out_hidden: Sequence[int] = (128, 64),
        weights_dtype: str = "float16",
        seed: int = 0,
        threads: int | None = None,
        metal_head: bool = False,
        std_scale: float = 1.0,
        gate_point: str = "median",
    ) -> None:
        self.n_members = n_members
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.robust = robust
        self.elem_embedding = elem_embedding
        self.elem_fea_len = elem_fea_len
        self.n_graph = n_graph
        self.elem_heads = elem_heads
        self.hidden = hidden
        self.cry_heads = cry_heads
        self.trunk_hidden = tuple(trunk_hidden)
        self.out_hidden = tuple(out_hidden)
        self.weights_dtype = weights_dtype
        self.seed = seed
        self.threads = threads
        self.metal_head = metal_head
        self.std_scale = std_scale
        self.gate_point = gate_point

    # -- parameters -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready), as scikit-learn's ``get_params``."""
        return {
            "n_members": self.n_members,
            "epochs": self.epochs,
            "patience": self.patience,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "val_fraction": self.val_fraction,
            "robust": self.robust,
            "elem_embedding": self.elem_embedding,
            "elem_fea_len": self.elem_fea_len,
            "n_graph": self.n_graph,
            "elem_heads": self.elem_heads,
            "hidden": self.hidden,
            "cry_heads": self.cry_heads,
            "trunk_hidden": list(self.trunk_hidden),
            "out_hidden": list(self.out_hidden),
            "weights_dtype": self.weights_dtype,
            "seed": self.seed,
            "threads": self.threads,
            "metal_head": self.metal_head,
            "std_scale": self.std_scale,
            "gate_point": self.gate_point,
        }

    def _network(self) -> Any:
        from aviary.roost.model import Roost

        return Roost(
            robust=self.robust,
            # the metal head is a second 1-wide head read as a logit (aviary doubles every
            # head when robust; the metal head's second output is unused)
            n_targets=[1, 1] if self.metal_head else [1],
            task_dict={C.BAND_GAP: "regression", **({C.P_METAL: "regression"} if self.metal_head else {})},
            elem_embedding=str(_embedding_file(self.elem_embedding)),
            elem_fea_len=self.elem_fea_len,
            n_graph=self.n_graph,
            elem_heads=self.elem_heads,
            elem_gate=(self.hidden,),
            elem_msg=(self.hidden,),
            cry_heads=self.cry_heads,
            cry_gate=(self.hidden,),
            cry_msg=(self.hidden,),
            trunk_hidden=self.trunk_hidden,
            out_hidden=self.out_hidden,
            device="cpu",
        )

    def _allowed(self) -> dict[str, int]:
        return getattr(self, "elements_", None) or embedding_elements(self.elem_embedding)

    # -- fitting ----------------------------------------------------------------------
    def fit(
        self,
        formulas: Sequence[str],
        band_gaps: Sequence[float],
        *,
        val_formulas: Sequence[str] | None = None,
        val_band_gaps: Sequence[float] | None = None,
        checkpoint_dir: str | Path | None = None,
        init_from: RoostEnsemble | None = None,
    ) -> Self:
        """Train every member; keep each member's weights of its best validation epoch.

        With ``metal_head`` a 0 eV label marks a metal: the metal head learns P(metal)
        on every row, the gap head the gaps of the non-metal rows only, and early
        stopping watches the validation MAE of the gated prediction on every row.

        Args:
            formulas: ``N`` training formulas.
            band_gaps: ``N`` band gaps (eV).
            val_formulas: validation formulas for early stopping; when omitted,
                ``val_fraction`` of the training data is held out (seeded).
            val_band_gaps: their band gaps (eV).
            checkpoint_dir: when given, each member's state is saved there after every
                epoch and a later call with the same directory resumes from it (the
                data and parameters must be the same).
            init_from: a fitted ensemble of the same architecture to start from (fine-tuning,
                e.g. pre-trained on every PBE source, then fitted on MP alone): member ``k``
                starts from its member ``k mod K`` and the target normalisation is kept.

        Raises:
            ModelError: no usable training formula, mismatched lengths, or an
                ``init_from`` of another architecture.
        """
        import torch

        formulas = [str(f) for f in formulas]
        y = np.asarray(band_gaps, dtype=np.float64)
        if len(formulas) != len(y):
            raise ModelError(f"{len(formulas)} formulas but {len(y)} band gaps")
        allowed = embedding_elements(self.elem_embedding)
        rng = np.random.default_rng(self.seed)
        if val_formulas is None:
            perm = rng.permutation(len(formulas))
            n_val = max(1, round(self.val_fraction * len(formulas))) if len(formulas) > 1 else 0
            val_idx, tr_idx = perm[:n_val], perm[n_val:]
            val_formulas = [formulas[i] for i in val_idx]
            val_y = y[val_idx]
            formulas = [formulas[i] for i in tr_idx]
            y = y[tr_idx]
        else:
            val_formulas = [str(f) for f in val_formulas]
            val_y = np.asarray(val_band_gaps, dtype=np.float64)
        train = build_graphs(formulas, allowed)
        val = build_graphs(val_formulas, allowed)
        ok = train.valid & np.isfinite(y)
        if not ok.any():
            raise ModelError("no training formula can be read by Roost")
        if (~ok).any():
            log.warning("dropping %d of %d training formulas Roost cannot read", int((~ok).sum()), len(ok))
        tr_rows = np.flatnonzero(ok)
        va_rows = np.flatnonzero(val.valid & np.isfinite(val_y))
        gap_rows = ok & (y > 0) if self.metal_head else ok
        if not gap_rows.any():
            raise ModelError("no non-metal (gap > 0) training formula for the gap head")
        self.target_mean_ = float(y[gap_rows].mean())
        self.target_std_ = float(y[gap_rows].std()) or 1.0
        init_states: list[dict[str, Any]] = []
        if init_from is not None:
            init_from._check_fitted()
            arch = ("robust", "elem_embedding", "elem_fea_len", "n_graph", "elem_heads", "hidden",
                    "cry_heads", "trunk_hidden", "out_hidden", "metal_head")  # fmt: skip
            mine, theirs = self.get_params(), init_from.get_params()
            if diff := [a for a in arch if mine[a] != theirs[a]]:
                raise ModelError(f"init_from has another architecture ({diff[0]}: {theirs[diff[0]]!r})")
            self.target_mean_, self.target_std_ = init_from.target_mean_, init_from.target_std_
            init_states = [copy.deepcopy(net.state_dict()) for net in init_from.members_]
        y_norm = ((y - self.target_mean_) / self.target_std_).astype(np.float32)

        self.elements_ = allowed
        self.histories_: list[MemberHistory] = []
        self.members_: list[Any] = []
        old_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            for k in range(self.n_members):
                net, hist = self._fit_member(
                    k,
                    train,
                    tr_rows,
                    y_norm,
                    val,
                    va_rows,
                    val_y,
                    y <= 0,
                    rng=np.random.default_rng(self.seed + k),
                    checkpoint=Path(checkpoint_dir) / f"member_{k}.pt" if checkpoint_dir else None,
                    init_state=init_states[k % len(init_states)] if init_states else None,
                )
                self.members_.append(net)
                self.histories_.append(hist)
        finally:
            torch.set_num_threads(old_threads)
        self.n_train_ = len(tr_rows)
        self.n_val_ = len(va_rows)
        return self

    def _fit_member(
        self,
        k: int,
        train: CompositionGraphs,
        tr_rows: np.ndarray,
        y_norm: np.ndarray,
        val: CompositionGraphs,
        va_rows: np.ndarray,
        val_y: np.ndarray,
        metal: np.ndarray,
        *,
        rng: np.random.Generator,
        checkpoint: Path | None = None,
        init_state: dict[str, Any] | None = None,
    ) -> tuple[Any, MemberHistory]:
        import torch
        from aviary.losses import robust_l1_loss
        from torch.nn.functional import binary_cross_entropy_with_logits
        from tqdm import tqdm

        torch.manual_seed(self.seed + k)
        net = self._network()
        if init_state is not None:
            ref = net.state_dict()
            net.load_state_dict({n: t.to(ref[n].dtype) for n, t in init_state.items()})
        opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(tr_rows) / self.batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, self.epochs * steps_per_epoch), eta_min=self.learning_rate * 0.01
        )
        hist = MemberHistory(seed=self.seed + k)
        best_state = copy.deepcopy(net.state_dict())
        y_t = torch.from_numpy(y_norm)
        metal_t = torch.from_numpy(metal.astype(np.float32))
        t0 = time.perf_counter()
        bad_epochs = 0
        first_epoch = 0
        if checkpoint is not None and checkpoint.is_file():
            ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
            net.load_state_dict(ck["net"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            best_state = ck["best"]
            rng.bit_generator.state = ck["rng"]
            hist = MemberHistory(**ck["hist"])
            first_epoch, bad_epochs = hist.epochs_run, int(ck["bad_epochs"])
            t0 -= hist.seconds
            log.info("member %d: resumed from %s after epoch %d", k + 1, checkpoint, first_epoch)
        stopped = bad_epochs >= self.patience
        for epoch in tqdm(
            range(first_epoch, self.epochs if not stopped else first_epoch),
            desc=f"roost member {k + 1}/{self.n_members}",
            disable=None,
        ):
            net.train()
            order = tr_rows[rng.permutation(len(tr_rows))]
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                if len(idx) < 2 and len(order) > 1:
                    continue  # a batch of one formula gives BatchNorm-free but noisy steps
                out, *heads = net(*collate(train, idx))
                target = y_t[idx]
                loss = out.sum() * 0.0
                if self.metal_head:  # P(metal) on every row, the gap on the non-metal rows only
                    is_metal = metal_t[idx]
                    loss = loss + binary_cross_entropy_with_logits(heads[0][:, 0], is_metal)
                    out, target = out[is_metal == 0], target[is_metal == 0]
                if len(target) and self.robust:
                    mean, log_std = out.unbind(dim=1)
                    loss = loss + robust_l1_loss(mean, log_std, target)
                elif len(target):
                    loss = loss + torch.nn.functional.l1_loss(out.squeeze(1), target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            hist.epochs_run = epoch + 1
            if len(va_rows):
                mean, std, logit = self._predict_member(net, val, va_rows)
                if self.metal_head:
                    from gapforge.models.metal_gate import combine

                    mean = combine(_sigmoid(logit), mean, std, point=self.gate_point).point
                mae = float(np.abs(mean - val_y[va_rows]).mean())
            else:
                mae = float(loss.item())
            hist.val_mae.append(mae)
            if mae < hist.best_val_mae:
                hist.best_val_mae, hist.best_epoch, bad_epochs = mae, epoch + 1, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad_epochs += 1
            log.info(
                "member %d epoch %d: validation MAE %.4f eV (%.0f s elapsed)",
                k + 1,
                epoch + 1,
                mae,
                time.perf_counter() - t0,
            )
            hist.seconds = time.perf_counter() - t0
            if checkpoint is not None:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(checkpoint) as tmp:
                    torch.save(
                        {
                            "net": net.state_dict(),
                            "opt": opt.state_dict(),
                            "sched": sched.state_dict(),
                            "best": best_state,
                            "rng": rng.bit_generator.state,
                            "hist": dataclasses.asdict(hist),
                            "bad_epochs": bad_epochs,
                        },
                        tmp,
                    )
            if bad_epochs >= self.patience:
                log.info("member %d: early stop at epoch %d (best %d)", k + 1, epoch + 1, hist.best_epoch)
                break
        net.load_state_dict(best_state)
        net.eval()
        hist.seconds = time.perf_counter() - t0
        return net, hist

    # -- prediction -------------------------------------------------------------------
    def _predict_member(
        self, net: Any, graphs: CompositionGraphs, rows: np.ndarray, batch_size: int = 2048
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and aleatoric std (eV) and the metal logit (NaN without a metal head) of one member."""
        import torch

        means, stds, logits = [], [], []
        net.eval()
        with torch.inference_mode():
            for b in range(0, len(rows), batch_size):
                out, *heads = net(*collate(graphs, rows[b : b + batch_size]))
                out = out.double()
                means.append(out[:, 0].numpy())
                stds.append(torch.exp(out[:, 1]).numpy() if self.robust else np.zeros(len(out)))
                logits.append(heads[0][:, 0].double().numpy() if heads else np.full(len(out), np.nan))
        if not means:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        mean = np.concatenate(means) * self.target_std_ + self.target_mean_
        std = np.concatenate(stds) * self.target_std_
        return mean, std, np.concatenate(logits)

    def predict_members(self, formulas: Sequence[str]) -> tuple[np.ndarray, np.ndarray, CompositionGraphs]:
        """Per-member predictions of the gap head.

        Returns:
            ``means (K, N)`` and aleatoric ``stds (K, N)`` in eV (NaN where a
            formula cannot be read) and the parsed graphs (validity, reasons).
            With a metal head the members' P(metal) ``(K, N)`` is kept in
            ``self.last_p_metal_``.
        """
        import torch

        self._check_fitted()
        graphs = build_graphs(formulas, self._allowed())
        rows = np.flatnonzero(graphs.valid)
        means = np.full((len(self.members_), len(graphs)), np.nan)
        stds = np.full_like(means, np.nan)
        p_metal = np.full_like(means, np.nan)
        old_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            for k, net in enumerate(self.members_):
                means[k, rows], stds[k, rows], logit = self._predict_member(net, graphs, rows)
                p_metal[k, rows] = _sigmoid(logit)
        finally:
            torch.set_num_threads(old_threads)
        self.last_p_metal_ = p_metal
        return means, stds, graphs

    def predict(self, formulas: Sequence[str]) -> pd.DataFrame:
        """Predict band gaps (eV) with uncertainty.

        The mean is the members' average clipped at 0 eV (a band gap cannot be
        negative); the std combines member spread and aleatoric std (see module doc),
        times ``std_scale``. With a metal head both go through the metal gate
        (:func:`gapforge.models.metal_gate.combine`, P(metal) = the members' mean
        probability) and the table gains ``p_metal``. With a CDF recalibration
        (:meth:`recalibrate`) the mean and std are those of the recalibrated
        distribution (:meth:`predict_distribution`): its median and σ-equivalent.

        Returns:
            ``formula``, ``band_gap_mean``, ``band_gap_std``, [``p_metal``,] ``reason`` in input order.
        """
        formulas = [str(f) for f in formulas]
        parts = self.components(formulas)
        if self.metal_head or self.recalibration_ is not None:
            return self._distribution(parts).to_table(formulas, p_metal=self.metal_head)
        mean, std = parts[C.BAND_GAP_MEAN].to_numpy(), parts[C.BAND_GAP_STD].to_numpy()
        table = {C.FORMULA: pd.Series(formulas, dtype=object), C.BAND_GAP_MEAN: mean, C.BAND_GAP_STD: std}
        if self.std_scale != 1.0:
            table[C.BAND_GAP_STD] = std * self.std_scale
        table[C.REASON] = parts[C.REASON]
        return pd.DataFrame(table)

    def _distribution(self, parts: pd.DataFrame, *, recalibrated: bool = True) -> Any:
        from gapforge.models.metal_gate import GapDistribution

        p = parts[C.P_METAL].to_numpy() if self.metal_head else np.zeros(len(parts))
        mu = parts[C.BAND_GAP_MEAN].to_numpy()
        p = np.where(np.isnan(mu), np.nan, p)
        return GapDistribution(
            p,
            mu,
            parts[C.BAND_GAP_STD].to_numpy() * self.std_scale,
            self.recalibration_ if recalibrated else None,
            parts[C.REASON].to_numpy(dtype=object),
        )

    def predict_distribution(self, formulas: Sequence[str]) -> Any:
        """Each formula's predictive gap distribution (:class:`~gapforge.models.metal_gate.GapDistribution`).

        The same distribution :meth:`predict` reports the median and σ-equivalent of, and
        the one window probabilities are taken from (recalibrated when :meth:`recalibrate`
        was called). Rows Roost cannot read are NaN.
        """
        return self._distribution(self.components([str(f) for f in formulas]))

    def recalibrate(self, formulas: Sequence[str], band_gaps: Sequence[float], *, seed: int = 0) -> Self:
        """Fit the CDF recalibration on held-out rows (Kuleshov 2018; :mod:`gapforge.models.calibration`).

        Args:
            formulas: validation formulas (never the training rows).
            band_gaps: their gaps (eV; 0 = metal).
            seed: seed of the PIT's randomisation inside the atom at 0 eV.
        """
        from gapforge.models.calibration import CdfRecalibration

        raw = self._distribution(self.components([str(f) for f in formulas]), recalibrated=False)
        self.recalibration_ = CdfRecalibration.fit(raw.pit(np.asarray(band_gaps, dtype=float), seed=seed))
        return self

    def components(self, formulas: Sequence[str]) -> pd.DataFrame:
        """The ensemble's gap head and metal head before the gate (no ``std_scale``).

        Returns:
            ``formula``, ``band_gap_mean`` (members' mean, clipped at 0 eV; the
            non-metal gap with a metal head), ``band_gap_std`` (unscaled),
            ``p_metal`` (members' mean probability, blended with an attached metal
            classifier's; NaN without a metal head), ``reason``. An attached gap
            regressor's gap is blended into ``band_gap_mean`` (:meth:`attach_gap_regressor`).
        """
        formulas = [str(f) for f in formulas]
        means, stds, graphs = self.predict_members(formulas)
        if formulas:
            mean = np.clip(means.mean(axis=0), 0.0, None)
            epistemic = means.var(axis=0)
            aleatoric = (stds**2).mean(axis=0)
            std = np.sqrt(epistemic + aleatoric)
            p = self.last_p_metal_.mean(axis=0)
            if self.metal_classifier_ is not None and self.metal_blend_weight_ > 0:
                p = np.where(
                    np.isnan(p),
                    p,
                    blend(p, self.metal_classifier_.p_metal(formulas), self.metal_blend_weight_),
                )
            if self.gap_regressor_ is not None and self.gap_blend_weight_ > 0:
                mean = np.where(
                    np.isnan(mean),
                    mean,
                    blend(mean, self.gap_regressor_.gap(formulas), self.gap_blend_weight_),
                )
        else:
            mean = std = p = np.zeros(0)
        return pd.DataFrame(
            {
                C.FORMULA: pd.Series(formulas, dtype=object),
                C.BAND_GAP_MEAN: mean,
                C.BAND_GAP_STD: std,
                C.P_METAL: p,
                C.REASON: pd.Series(graphs.reasons, dtype=object).astype(str),
            }
        )

    def attach_metal_classifier(self, classifier: Any, weight: float) -> Self:
        """Blend P(metal) with another classifier's: ``p = weight * p_classifier + (1 - weight) * p_head``.

        Args:
            classifier: a fitted :class:`~gapforge.models.metal_gate.MagpieMetalClassifier`.
            weight: its share in 0-1 (chosen on validation rows, e.g. by AUC).
        """
        if not self.metal_head:
            raise ModelError("a metal classifier is blended with the metal head: fit with metal_head=True")
        if not 0.0 <= weight <= 1.0:
            raise ModelError(f"blend weight must lie in 0-1, got {weight}")
        self.metal_classifier_, self.metal_blend_weight_ = classifier, float(weight)
        return self

    def attach_gap_regressor(self, regressor: Any, weight: float) -> Self:
        """Blend the non-metal gap with another regressor's: ``mu = w * mu_regressor + (1 - w) * mu_head``.

        The std (and so ``std_scale`` and a recalibration, which should be refitted on
        validation rows after attaching) stays the gap head's.

        Args:
            regressor: a fitted :class:`~gapforge.models.metal_gate.MagpieGapRegressor`.
            weight: its share in 0-1 (chosen on validation rows, e.g. by non-metal MAE).
        """
        if not self.metal_head:
            raise ModelError(
                "a gap regressor is blended with the non-metal gap head: fit with metal_head=True"
            )
        if not 0.0 <= weight <= 1.0:
            raise ModelError(f"blend weight must lie in 0-1, got {weight}")
        self.gap_regressor_, self.gap_blend_weight_ = regressor, float(weight)
        return self

    def _check_fitted(self) -> None:
        if not getattr(self, "members_", None):
            raise ModelError("this RoostEnsemble is not fitted; call fit() or load() first")

    # -- persistence ------------------------------------------------------------------
    def save(self, directory: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.json`` and ``roost_weights.pt`` (state dicts in ``weights_dtype``).

        Args:
            directory: created if missing.
            metadata: extra metadata (data fingerprint, metrics, ...) merged into model.json.
        """
        import torch

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        dtype = {"float16": torch.float16, "float32": torch.float32}[self.weights_dtype]
        state = {
            "format_version": torch.tensor(FORMAT_VERSION),
            "members": [
                {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in net.state_dict().items()}
                for net in self.members_
            ],
        }
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            torch.save(state, tmp)
        digest = hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()
        card = {
            "kind": KIND,
            "params": self.get_params(),
            "metadata": {
                **_versions(),
                "format_version": FORMAT_VERSION,
                "weights_file": WEIGHTS_FILE,
                "weights_sha256": digest,
                "elem_embedding_file_sha256": _file_sha(self.elem_embedding),
                "elements": sorted(self._allowed(), key=self._allowed().get),
                "target_mean_eV": self.target_mean_,
                "target_std_eV": self.target_std_,
                "n_train": getattr(self, "n_train_", None),
                "n_val": getattr(self, "n_val_", None),
                "members": [h.to_dict() for h in getattr(self, "histories_", [])],
                **(
                    {"cdf_recalibration": self.recalibration_.to_dict()}
                    if self.recalibration_ is not None
                    else {}
                ),
                **(metadata or {}),
            },
        }
        if self.metal_classifier_ is not None:
            card["metadata"]["metal_classifier"] = {
                **self.metal_classifier_.save(directory / METAL_CLASSIFIER_FILE),
                "blend_weight": self.metal_blend_weight_,
            }
        if self.gap_regressor_ is not None:
            card["metadata"]["gap_regressor"] = {
                **self.gap_regressor_.save(directory / GAP_REGRESSOR_FILE),
                "blend_weight": self.gap_blend_weight_,
            }
        written = [WEIGHTS_FILE] + ([METAL_CLASSIFIER_FILE] if self.metal_classifier_ is not None else [])
        written += [GAP_REGRESSOR_FILE] if self.gap_regressor_ is not None else []
        card["metadata"].update(weights_record(directory, written))
        write_json(card, directory / MODEL_CARD_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild from ``model.json`` (``cls(**params)``) and the saved state dicts.

        Raises:
            ModelError: missing or corrupt files, another model kind, or a newer format.
        """
        import torch

        directory = Path(directory)
        model, card = rebuild_from_card(
            cls, directory, kind=KIND, format_version=FORMAT_VERSION, label="Roost", weights_file=WEIGHTS_FILE
        )
        meta = card.get("metadata", {})
        weights = directory / WEIGHTS_FILE
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(f"{weights}: cannot load weights ({type(exc).__name__}: {exc})") from exc
        members = state.get("members") if isinstance(state, dict) else None
        if not members:
            raise ModelError(f"{weights}: no ensemble members in the weights file")
        model.members_ = []
        for k, sd in enumerate(members):
            net = model._network()
            ref = net.state_dict()
            try:
                net.load_state_dict({n: t.to(ref[n].dtype) if n in ref else t for n, t in sd.items()})
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise ModelError(
                    f"{weights}: member {k} does not match the model.json parameters ({first})"
                ) from exc
            net.eval()
            model.members_.append(net)
        model.target_mean_ = float(meta["target_mean_eV"])
        model.target_std_ = float(meta["target_std_eV"])
        model.elements_ = dict(embedding_elements(model.elem_embedding))
        if meta.get("elements"):
            model.elements_ = {s: model.elements_[s] for s in meta["elements"] if s in model.elements_}
        model.n_train_ = meta.get("n_train")
        model.n_val_ = meta.get("n_val")
        model.histories_ = []
        model.metadata_ = meta
        if meta.get("metal_classifier"):
            from gapforge.models.metal_gate import MagpieMetalClassifier

            info = meta["metal_classifier"]
            clf = MagpieMetalClassifier.load(directory / info["file"], sha256=info["sha256"])
            model.attach_metal_classifier(clf, float(info["blend_weight"]))
        if meta.get("gap_regressor"):
            from gapforge.models.metal_gate import MagpieGapRegressor

            info = meta["gap_regressor"]
            reg = MagpieGapRegressor.load(directory / info["file"], sha256=info["sha256"])
            model.attach_gap_regressor(reg, float(info["blend_weight"]))
        if meta.get("cdf_recalibration"):
            from gapforge.models.calibration import CdfRecalibration

            model.recalibration_ = CdfRecalibration.from_dict(meta["cdf_recalibration"])
        return model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _file_sha(name: str) -> str:
    return hashlib.sha256(_embedding_file(name).read_bytes()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("gapforge", "aviary-models", "torch", "numpy"):
        try:
            out[f"{pkg}_version"] = version(pkg)
        except PackageNotFoundError:
            out[f"{pkg}_version"] = "unknown"
    return out


__all__ = [
    "DEFAULT_EMBEDDING",
    "WIDTHS",
    "CompositionGraphs",
    "RoostEnsemble",
    "build_graphs",
    "collate",
    "embedding_elements",
]
