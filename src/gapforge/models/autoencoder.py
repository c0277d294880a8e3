"""Composition autoencoder: formulas <-> a continuous latent space.

Two architectures share one convolutional encoder (one-hot matrix
``(1, E, L)`` -> two conv layers -> dense -> ``latent_dim``):

* ``"paper"`` -- the reference of Xin et al. (2021): dense + two transposed
  convolutions + sigmoid back to the ``(E, L)`` one-hot matrix, binary
  cross-entropy, Adam (lr 1e-3). Decoded with the paper's strict rule
  (binarise at 0.5; a row with two 1s, or an all-zero matrix, is invalid).
* ``"softmax"`` -- the default: the decoder outputs, for every element row, a
  softmax over ``{absent, 1, ..., L}`` (categorical cross-entropy), so every
  decode is a well-formed formula by construction (only an all-absent decode
  is invalid). The latent space is regularised as a beta-VAE (``beta`` > 0:
  the encoder outputs a mean and a log-variance, the decoder is trained on
  samples, a KL term pulls the code towards N(0, I)) and/or by additive
  Gaussian noise (``latent_noise``), so points between training codes decode
  to plausible chemistry. ``encode`` returns the posterior mean.

Example:
    >>> ae = CompositionAutoencoder.load("default")  # doctest: +SKIP
    >>> z = ae.encode(["LiF", "SrYF5"])  # (2, 128)  # doctest: +SKIP
    >>> ae.decode(z)  # doctest: +SKIP
    ['LiF', 'SrYF5']
    >>> ae.latent_bounds.shape  # doctest: +SKIP
    (2, 128)
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import pickle
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import pandas as pd

from gapforge.encoding import MP_BANDGAP_ELEMENTS, FormulaEncoder
from gapforge.errors import FormulaError, InputError, ModelError
from gapforge.io import atomic_path, write_json
from gapforge.models.base import MODEL_CARD_FILE, resolve_model_dir, verify_weights, weights_record

log = logging.getLogger(__name__)

KIND = "composition-autoencoder"
DEFAULT_NAME = "autoencoder"
WEIGHTS_FILE = "weights.pt"
LATENT_FILE = "latent_stats.npz"
TRAINING_FORMULAS_FILE = "training_formulas.txt.gz"
HELDOUT_FORMULAS_FILE = "heldout_formulas.txt.gz"
FORMAT_VERSION = 1

Arch = Literal["paper", "softmax"]
ARCHS: tuple[str, ...] = ("paper", "softmax")


# ----------------------------------------------------------------------------------------------
# networks
# ----------------------------------------------------------------------------------------------
def _build_net(arch: str, n_elements: int, n_levels: int, params: dict[str, Any]):  # -> torch.nn.Module
    """Build the torch module of an architecture (imported lazily: torch is slow to import)."""
    import torch
    from torch import nn

    c1, c2 = (int(c) for c in params["channels"])
    latent = int(params["latent_dim"])
    h2 = (n_elements - 1) // 2 + 1  # element positions after the stride-2 convolution
    flat = c2 * h2
    variational = arch == "softmax" and float(params["beta"]) > 0
    encoder = params.get("encoder_type") or ("conv" if arch == "paper" else "set")
    hidden = int(params["hidden"])
    factor_rank = int(params.get("factor_rank") or 0)

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.variational = variational
            out = 2 * latent if variational else latent
            if encoder == "conv":
                # The one-hot matrix enters as a 1-D signal along the element axis with the L
                # count levels as channels: conv 1 sees 3 neighbouring elements x all levels,
                # conv 2 (stride 2) halves the element axis (the cheap CPU form of 2-D convs).
                self.conv = nn.Sequential(
                    nn.Conv1d(n_levels, c1, kernel_size=3, padding=1),
                    nn.ReLU(),
                    nn.Conv1d(c1, c2, kernel_size=3, stride=2, padding=1),
                    nn.ReLU(),
                    nn.Flatten(),
                )
                self.to_latent = nn.Linear(flat, out)
            elif encoder == "set":
                # A formula is a set of (element, count) tokens: sum their embeddings (a dense
                # layer on the flattened one-hot matrix, computed sparsely), then ReLU + dense.
                self.tokens = nn.EmbeddingBag(n_elements * n_levels, hidden, mode="sum")
                self.token_bias = nn.Parameter(torch.zeros(hidden))
                if factor_rank:
                    # (element, count) = element + count + pair: a rare pair such as (Sn, 8)
                    # borrows what Sn and count 8 learned from every other formula
                    self.element_tokens = nn.EmbeddingBag(n_elements, hidden, mode="sum")
                    self.count_tokens = nn.EmbeddingBag(n_levels, hidden, mode="sum")
                self.to_latent = nn.Sequential(nn.ReLU(), nn.Linear(hidden, out))
            else:
                raise ValueError(f"unknown encoder type {encoder!r} (use conv or set)")
            if arch == "paper":
                self.from_latent = nn.Sequential(nn.Linear(latent, flat), nn.ReLU())
                self.deconv1 = nn.Sequential(
                    nn.ConvTranspose1d(
                        c2, c1, kernel_size=3, stride=2, padding=1, output_padding=n_elements - (2 * h2 - 1)
                    ),
                    nn.ReLU(),
                )
                self.deconv2 = nn.ConvTranspose1d(c1, n_levels, kernel_size=3, padding=1)
            else:
                self.head = nn.Sequential(
                    nn.Linear(latent, hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, n_elements * (n_levels + 1)),
                )
                if factor_rank:
                    # low-rank element x count term added to the logits: the row of element e
                    # scores count c by <a_e(h), b_c>, shared across elements
                    self.element_factors = nn.Linear(hidden, n_elements * factor_rank)
                    self.count_factors = nn.Parameter(0.1 * torch.randn(n_levels + 1, factor_rank))

        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            """One-hot ``(N, E, L)`` float -> latent mean ``(N, D)`` and log-variance or None."""
            if encoder == "conv":
                h = self.to_latent(self.conv(x.transpose(1, 2)))
            else:
                rows, tokens = x.flatten(1).nonzero(as_tuple=True)
                offsets = torch.zeros(len(x), dtype=torch.long)
                offsets[1:] = torch.bincount(rows, minlength=len(x)).cumsum(0)[:-1]
                emb = self.tokens(tokens, offsets) + self.token_bias
                if factor_rank:
                    emb = emb + self.element_tokens(tokens // n_levels, offsets)
                    emb = emb + self.count_tokens(tokens % n_levels, offsets)
                h = self.to_latent(emb)
            if self.variational:
                mu, logvar = h.chunk(2, dim=1)
                return mu, logvar.clamp(-12.0, 6.0)
            return h, None

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            """Latent ``(N, D)`` -> logits: paper ``(N, E, L)``; softmax ``(N, E, L + 1)``."""
            if arch == "paper":
                h = self.deconv1(self.from_latent(z).view(-1, c2, h2))  # (N, c1, E)
                return self.deconv2(h).transpose(1, 2)  # (N, E, L)
            if not factor_rank:
                return self.head(z).view(-1, n_elements, n_levels + 1)
            h = self.head[:-1](z)
            logits = self.head[-1](h).view(-1, n_elements, n_levels + 1)
            a = self.element_factors(h).view(-1, n_elements, factor_rank)
            return logits + a @ self.count_factors.T

    return _Net()


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochRecord:
    """One training epoch: mean loss terms and, if a validation set was given, its exact reconstruction."""

    epoch: int
    loss: float
    reconstruction_loss: float
    kl: float
    seconds: float
    val_exact: float | None = None


@dataclass(frozen=True)
class LatentEncoding:
    """Latent vectors of a batch of formulas.

    Attributes:
        z: ``(N, D)`` float32 latent vectors (NaN rows where not encodable).
        reduced: ``(N,)`` reduced formula of each input (``""`` where not encodable).
        valid: ``(N,)`` bool.
        reasons: ``(N,)`` why a row is not encodable (``""`` where valid).
    """

    z: np.ndarray
    reduced: np.ndarray
    valid: np.ndarray
    reasons: np.ndarray


# ----------------------------------------------------------------------------------------------
# the estimator
# ----------------------------------------------------------------------------------------------
class CompositionAutoencoder:
    """Autoencoder between chemical formulas and a ``latent_dim``-d latent space.

    Args:
        arch: ``"softmax"`` (default; per-element softmax decoder, beta-VAE) or
            ``"paper"`` (the reference: sigmoid decoder, BCE, strict decoding).
        latent_dim: size ``D`` of the latent space.
        encoder_type: ``"conv"`` (two convolutions + dense; the paper's) or
            ``"set"`` (sum of (element, count) token embeddings + dense, i.e. a
            dense layer on the sparse one-hot matrix; cheap). Default: conv for
            ``paper``, set for ``softmax``.
        channels: output channels of the two encoder convolutions (mirrored by
            the paper decoder's transposed convolutions).
        hidden: width of the set encoder and of the softmax decoder's two hidden layers.
        factor_rank: softmax/set only: add element + count embeddings to the
            encoder's (element, count) tokens and a rank-``factor_rank``
            element x count term to the decoder's logits, so rare pairs (an
            element with count 7 or 8) share statistics with common ones
            (0 = independent pairs, as before).
        beta: KL weight of the softmax architecture (0 = plain autoencoder).
            Per formula, the loss is the summed per-row cross-entropy plus
            ``beta`` times the summed KL divergence.
        latent_noise: standard deviation of Gaussian noise added to the code
            while training (both architectures; 0 = none).
        epochs: training epochs.
        lr_schedule: ``"constant"`` or ``"cosine"`` (the learning rate decays
            from ``learning_rate`` to 1 % of it over the epochs, step by step).
        kl_warmup: epochs over which the KL weight ramps linearly from 0 to
            ``beta`` (0 = full weight from the start).
        batch_size: mini-batch size.
        learning_rate: Adam learning rate.
        seed: seed of weight initialisation, batch order and noise.
        elements: element vocabulary (atomic-number order); default the 89
            elements of the Materials Project band-gap data.
        n_levels: largest encodable count ``L`` of one element.
        decode_rule: how the ``paper`` architecture turns sigmoid outputs into a
            formula: ``"strict"`` (the paper's; a row with two levels above 0.5
            or an all-zero matrix is invalid) or ``"argmax"`` (most probable
            level per row, present if >= 0.5). Ignored by ``softmax``.
        threads: torch intra-op threads while fitting/encoding (None = leave torch's setting).
        refine_steps: softmax only: when the encoder's code of a formula does
            not decode back to it, take up to this many Adam steps on that code
            (decoder cross-entropy of the formula, step size ``refine_lr``) and
            keep the first code that decodes exactly (semi-amortised inference;
            0 = the encoder's code as is). Codes that already decode correctly,
            and formulas no step fixes, keep the encoder's code.
        refine_lr: Adam step size of the refinement, in latent units.
    """

    kind = KIND

    def __init__(
        self,
        arch: Arch = "softmax",
        *,
        latent_dim: int = 128,
        encoder_type: Literal["conv", "set"] | None = None,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 256,
        factor_rank: int = 0,
        beta: float = 0.01,
        latent_noise: float = 0.0,
        epochs: int = 30,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        kl_warmup: int = 0,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        seed: int = 0,
        elements: Sequence[str] | None = None,
        n_levels: int = 8,
        decode_rule: Literal["strict", "argmax"] = "strict",
        threads: int | None = None,
        refine_steps: int = 100,
        refine_lr: float = 0.05,
    ) -> None:
        self.arch = arch
        self.latent_dim = latent_dim
        self.encoder_type = encoder_type
        self.channels = channels
        self.hidden = hidden
        self.factor_rank = factor_rank
        self.beta = beta
        self.latent_noise = latent_noise
        self.epochs = epochs
        self.lr_schedule = lr_schedule
        self.kl_warmup = kl_warmup
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.elements = elements
        self.n_levels = n_levels
        self.decode_rule = decode_rule
        self.threads = threads
        self.refine_steps = refine_steps
        self.refine_lr = refine_lr

    # -- parameters ------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-ready dict (``cls(**params)`` rebuilds the model)."""
        return {
            "arch": self.arch,
            "latent_dim": int(self.latent_dim),
            "encoder_type": self.encoder_type,
            "channels": [int(c) for c in self.channels],
            "hidden": int(self.hidden),
            "factor_rank": int(self.factor_rank),
            "beta": float(self.beta),
            "latent_noise": float(self.latent_noise),
            "epochs": int(self.epochs),
            "lr_schedule": self.lr_schedule,
            "kl_warmup": int(self.kl_warmup),
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "seed": int(self.seed),
            "elements": list(self.elements) if self.elements is not None else None,
            "n_levels": int(self.n_levels),
            "decode_rule": self.decode_rule,
            "threads": self.threads,
            "refine_steps": int(self.refine_steps),
            "refine_lr": float(self.refine_lr),
        }

    def _check_params(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"unknown autoencoder architecture (use {' or '.join(ARCHS)})", value=self.arch)
        if self.decode_rule not in ("strict", "argmax"):
            raise InputError("unknown decode rule (use strict or argmax)", value=self.decode_rule)
        if self.encoder_type not in (None, "conv", "set"):
            raise InputError("unknown encoder type (use conv or set)", value=self.encoder_type)
        if int(self.latent_dim) < 1:
            raise InputError("latent_dim must be >= 1", value=self.latent_dim)
        if self.beta < 0 or self.latent_noise < 0:
            raise InputError("beta and latent_noise must be >= 0", value=(self.beta, self.latent_noise))
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise InputError("epochs and batch_size must be >= 1", value=(self.epochs, self.batch_size))
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError(
                "unknown learning-rate schedule (use constant or cosine)", value=self.lr_schedule
            )
        if int(self.kl_warmup) < 0:
            raise InputError("kl_warmup must be >= 0", value=self.kl_warmup)
        if int(self.factor_rank) < 0:
            raise InputError("factor_rank must be >= 0", value=self.factor_rank)
        if int(self.refine_steps) < 0 or not float(self.refine_lr) > 0:
            raise InputError(
                "refine_steps must be >= 0 and refine_lr > 0", value=(self.refine_steps, self.refine_lr)
            )

    @property
    def formula_encoder(self) -> FormulaEncoder:
        """The formula <-> one-hot codec (element vocabulary and count levels)."""
        enc = getattr(self, "encoder_", None)
        if enc is None:
            enc = FormulaEncoder(tuple(self.elements or MP_BANDGAP_ELEMENTS), int(self.n_levels))
        return enc

    # -- fitted state ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if getattr(self, "net_", None) is None:
            raise ModelError("the autoencoder is not fitted (call fit or load a model directory)")

    @property
    def latent_bounds(self) -> np.ndarray:
        """``(2, D)`` per-dimension min (row 0) and max (row 1) of the training encodings."""
        self._check_fitted()
        return self.latent_bounds_

    @property
    def latent_mean(self) -> np.ndarray:
        """``(D,)`` mean of the training encodings."""
        self._check_fitted()
        return self.latent_mean_

    @property
    def latent_cov(self) -> np.ndarray:
        """``(D, D)`` covariance of the training encodings (for Gaussian sampling)."""
        self._check_fitted()
        return self.latent_cov_

    @property
    def training_formulas(self) -> frozenset[str]:
        """Reduced formulas the model was trained on (for novelty checks)."""
        self._check_fitted()
        return self.training_formulas_

    # -- training --------------------------------------------------------------------------
    def fit(self, formulas: Sequence[str], *, validation: Sequence[str] | None = None) -> Self:
        """Train on formulas (duplicates, by reduced formula, count once).

        Args:
            formulas: training formulas; every one must be encodable.
            validation: optional formulas whose exact reconstruction rate is
                logged after every epoch (not used for training).

        Raises:
            FormulaError: a formula cannot be encoded (names its position and value).
        """
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        self._check_params()
        self.encoder_ = self.formula_encoder
        batch = self.encoder_.encode(list(formulas))
        if not batch.valid.all():
            i = int(np.flatnonzero(~batch.valid)[0])
            raise FormulaError(
                f"cannot encode ({batch.reasons[i]}); {int((~batch.valid).sum())} such formulas",
                row=i + 1,
                value=batch.formulas[i],
            )
        reduced, first = np.unique(batch.reduced, return_index=True)
        if len(reduced) == 0:
            raise InputError("no formulas to train on")
        counts = batch.counts[first]
        self.training_formulas_ = frozenset(reduced.tolist())
        val_counts = None
        if validation is not None and len(validation):
            val_counts = self.encoder_.formulas_to_counts(list(validation))

        threads_before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            torch.manual_seed(int(self.seed))
            gen = torch.Generator().manual_seed(int(self.seed))
            net = _build_net(self.arch, *self.encoder_.shape, self.get_params())
            self.net_ = net
            _init_output_bias(net, self.arch, counts, levels=int(self.n_levels))
            opt = torch.optim.Adam(net.parameters(), lr=float(self.learning_rate))
            x_all = torch.from_numpy(counts.astype(np.int64))
            n = len(x_all)
            bs = int(self.batch_size)
            steps_per_epoch = -(-n // bs)
            sched = None
            if self.lr_schedule == "cosine":
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                    opt, T_max=int(self.epochs) * steps_per_epoch, eta_min=0.01 * float(self.learning_rate)
                )
            levels = int(self.n_levels)
            history: list[EpochRecord] = []
            bar = tqdm(range(int(self.epochs)), desc=f"autoencoder ({self.arch})", disable=None)
            for epoch in bar:
                net.train()
                t0 = time.perf_counter()
                tot = rec_tot = kl_tot = 0.0
                perm = torch.randperm(n, generator=gen)
                for step, start in enumerate(range(0, n, bs)):
                    beta = float(self.beta)
                    if int(self.kl_warmup) > 0:
                        beta *= min(1.0, (epoch + step / steps_per_epoch) / int(self.kl_warmup))
                    idx = perm[start : start + bs]
                    c = x_all[idx]
                    x = _onehot(c, levels)
                    mu, logvar = net.encode(x)
                    z = mu
                    if logvar is not None:
                        z = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
                    if self.latent_noise > 0:
                        z = z + float(self.latent_noise) * torch.randn(mu.shape, generator=gen)
                    logits = net.decode(z)
                    if self.arch == "paper":
                        rec = F.binary_cross_entropy_with_logits(logits, x)
                    else:
                        # summed over element rows, averaged over formulas
                        rec = F.cross_entropy(
                            logits.reshape(-1, levels + 1), c.reshape(-1), reduction="sum"
                        ) / len(c)
                    kl = torch.zeros(())
                    if logvar is not None:
                        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(c)
                    loss = rec + beta * kl
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    k = len(c)
                    tot += float(loss.detach()) * k
                    rec_tot += float(rec.detach()) * k
                    kl_tot += float(kl.detach()) * k
                val_exact = None
                if val_counts is not None:
                    val_exact = float(
                        np.mean(
                            np.all(self._reconstruct_counts(val_counts, refine=False) == val_counts, axis=1)
                        )
                    )
                rec_ = EpochRecord(
                    epoch + 1, tot / n, rec_tot / n, kl_tot / n, round(time.perf_counter() - t0, 3), val_exact
                )
                history.append(rec_)
                log.info(
                    "epoch %d/%d loss %.4f (reconstruction %.4f, KL %.2f) %.1fs%s",
                    rec_.epoch,
                    self.epochs,
                    rec_.loss,
                    rec_.reconstruction_loss,
                    rec_.kl,
                    rec_.seconds,
                    "" if val_exact is None else f" held-out exact {val_exact:.4f}",
                )
            self.history_ = history
            # the search box is the range of the encoder's own codes; refinement stays inside it
            self._set_latent_stats(self._encode_counts(counts, refine=False))
        finally:
            torch.set_num_threads(threads_before)
        return self

    def _set_latent_stats(self, z: np.ndarray) -> None:
        self.latent_bounds_ = np.stack([z.min(axis=0), z.max(axis=0)]).astype(np.float32)
        self.latent_mean_ = z.mean(axis=0).astype(np.float32)
        self.latent_cov_ = (
            np.cov(z, rowvar=False).astype(np.float32).reshape(self.latent_dim, self.latent_dim)
        )

    # -- encoding --------------------------------------------------------------------------
    def _encode_counts(
        self, counts: np.ndarray, batch_size: int = 4096, *, refine: bool = True
    ) -> np.ndarray:
        import torch

        net = self.net_
        net.eval()
        out = np.empty((len(counts), int(self.latent_dim)), dtype=np.float32)
        with torch.no_grad():
            for s in range(0, len(counts), batch_size):
                c = torch.from_numpy(np.asarray(counts[s : s + batch_size], dtype=np.int64))
                mu, _ = net.encode(_onehot(c, int(self.n_levels)))
                out[s : s + len(c)] = mu.numpy()
        if refine and self.arch != "paper" and int(self.refine_steps) > 0 and len(counts):
            out = self._refine_codes(np.asarray(counts, dtype=np.int64), out)
        return out

    def _refine_codes(self, counts: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Fix codes that do not decode to their formula by gradient steps on the code alone.

        Only rows whose argmax decode differs from ``counts`` move; each keeps
        the first code whose decode is exact, or its encoder code if none is.
        Codes are kept inside the latent bounds (the search box) once those
        are known. The decoder's weights are not touched.
        """
        import torch
        import torch.nn.functional as F

        dec, _ = self.decode_counts(z)
        bad = np.flatnonzero((dec.astype(np.int64) != counts).any(axis=1))
        self.last_refined_ = (len(bad), 0)
        if not len(bad):
            return z
        net = self.net_
        k = int(self.n_levels) + 1
        target = torch.from_numpy(counts[bad])
        code = torch.tensor(z[bad], requires_grad=True)
        result = z[bad].copy()
        done = np.zeros(len(bad), dtype=bool)
        opt = torch.optim.Adam([code], lr=float(self.refine_lr))
        lo = hi = None
        if getattr(self, "latent_bounds_", None) is not None:  # stay inside the search box
            lo, hi = (torch.from_numpy(np.asarray(b, dtype=np.float32)) for b in self.latent_bounds_)
        params = [p.requires_grad for p in net.parameters()]
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            for step in range(int(self.refine_steps) + 1):  # check, then step; the last pass only checks
                logits = net.decode(code)
                new = (logits.argmax(dim=-1) == target).all(dim=-1).numpy() & ~done
                if new.any():
                    result[new] = code.detach().numpy()[new]
                    done |= new
                if done.all() or step == int(self.refine_steps):
                    break
                loss = F.cross_entropy(logits.reshape(-1, k), target.reshape(-1), reduction="sum")
                opt.zero_grad()
                loss.backward()
                opt.step()
                if lo is not None:
                    with torch.no_grad():
                        code.clamp_(lo, hi)
        finally:
            for p, flag in zip(net.parameters(), params, strict=True):
                p.requires_grad_(flag)
        out = z.copy()
        out[bad] = result
        self.last_refined_ = (len(bad), int(done.sum()))
        log.debug("refined %d of %d codes that decoded wrongly", int(done.sum()), len(bad))
        return out

    def encode_batch(self, formulas: Sequence[str]) -> LatentEncoding:
        """Encode formulas, keeping the ones that cannot be encoded as NaN rows with a reason."""
        self._check_fitted()
        batch = self.encoder_.encode(list(formulas))
        z = np.full((len(batch), int(self.latent_dim)), np.nan, dtype=np.float32)
        if batch.valid.any():
            z[batch.valid] = self._encode_counts(batch.counts[batch.valid])
        return LatentEncoding(z=z, reduced=batch.reduced, valid=batch.valid, reasons=batch.reasons)

    def encode(
        self, formulas: Sequence[str] | str, *, errors: Literal["raise", "nan"] = "raise"
    ) -> np.ndarray:
        """Latent vectors of formulas.

        Args:
            formulas: formula strings (a single string is one formula).
            errors: ``"raise"`` (default) raises on the first formula that
                cannot be encoded; ``"nan"`` returns a NaN row for it instead.

        Returns:
            ``(N, D)`` float32 latent vectors (the posterior mean for a VAE).

        Raises:
            FormulaError: with ``errors="raise"``, a formula that cannot be encoded.
        """
        if isinstance(formulas, str):
            formulas = [formulas]
        enc = self.encode_batch(formulas)
        if errors == "raise" and not enc.valid.all():
            i = int(np.flatnonzero(~enc.valid)[0])
            raise FormulaError(f"cannot encode ({enc.reasons[i]})", row=i + 1, value=list(formulas)[i])
        return enc.z

    # -- decoding --------------------------------------------------------------------------
    def check_latent(
        self, z: np.ndarray | Sequence[Sequence[float]], *, path: str | Path | None = None
    ) -> np.ndarray:
        """Validate latent vectors: shape ``(N, D)`` (or ``(D,)``), finite numbers.

        Raises:
            InputError: wrong dimension, non-numeric or non-finite values (names the row).
        """
        try:
            arr = np.array(z, dtype=np.float32)  # a writable copy (torch.from_numpy needs one)
        except (TypeError, ValueError) as exc:
            raise InputError("latent vectors must be numbers", path=path) from exc
        if arr.ndim == 1 and arr.shape[0] == self.latent_dim:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.latent_dim:
            raise InputError(
                f"latent vectors must have shape (N, {self.latent_dim}), got {arr.shape}", path=path
            )
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"latent vector is not finite ({int(bad.sum())} such rows)",
                path=path,
                row=i + 1,
                value="NaN/inf",
            )
        return arr

    def decode_scores(self, z: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Decoder probabilities.

        Returns:
            paper: ``(N, E, L)`` sigmoid probabilities of each count level;
            softmax: ``(N, E, L + 1)`` class probabilities, column 0 = absent.
        """
        import torch

        self._check_fitted()
        arr = self.check_latent(z)
        k = int(self.n_levels) + (0 if self.arch == "paper" else 1)
        out = np.empty((len(arr), self.encoder_.n_elements, k), dtype=np.float32)
        self.net_.eval()
        with torch.no_grad():
            for s in range(0, len(arr), batch_size):
                logits = self.net_.decode(torch.from_numpy(arr[s : s + batch_size]))
                p = torch.sigmoid(logits) if self.arch == "paper" else torch.softmax(logits, dim=-1)
                out[s : s + len(logits)] = p.numpy()
        return out

    def decode_counts(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latent ``(N, D)`` -> gcd-reduced counts ``(N, E)`` int16 and validity ``(N,)`` bool.

        paper: the strict rule of :mod:`gapforge.encoding`. softmax: the most
        probable formula under the decoder's per-element distributions with
        at least one element present -- each row's argmax, except that an
        all-absent argmax switches on the single row whose best count costs
        the least probability (the exact constrained maximum). Every softmax
        decode is therefore valid; :attr:`last_forced_` counts how many
        needed the switch.
        """
        scores = self.decode_scores(z)
        if self.arch == "paper":
            return self.encoder_.decode_counts(scores, rule=self.decode_rule, threshold=0.5)
        counts = scores.argmax(axis=2).astype(np.int64)
        empty = ~(counts > 0).any(axis=1)
        if empty.any():
            p = np.clip(scores[empty].astype(np.float64), 1e-12, None)
            best = p[:, :, 1:].argmax(axis=2)  # (M, E) best count level - 1
            top = np.take_along_axis(p[:, :, 1:], best[..., None], axis=2)[..., 0]
            gain = np.log(top) - np.log(p[:, :, 0])
            row = gain.argmax(axis=1)
            counts[np.flatnonzero(empty), row] = best[np.arange(len(row)), row] + 1
        self.last_forced_ = int(empty.sum())
        valid = (counts > 0).any(axis=1)
        g = np.gcd.reduce(counts, axis=1)
        counts[valid] //= g[valid, None]
        return counts.astype(np.int16), valid

    def decode(self, z: np.ndarray | Sequence[Sequence[float]]) -> list[str | None]:
        """Decode latent vectors ``(N, D)`` to reduced formulas; ``None`` where the decode is invalid.

        Raises:
            InputError: wrong latent dimension or non-finite values.
        """
        counts, valid = self.decode_counts(self.check_latent(z))
        out: list[str | None] = [None] * len(counts)
        idx = np.flatnonzero(valid)
        if len(idx):
            for i, f in zip(idx, self.encoder_.counts_to_formulas(counts[idx]), strict=True):
                out[i] = f
        return out

    def _reconstruct_counts(self, counts: np.ndarray, *, refine: bool = True) -> np.ndarray:
        z = self._encode_counts(counts, refine=refine)
        dec, valid = self.decode_counts(z)
        dec = dec.astype(np.int64)
        dec[~valid] = -1
        return dec

    def reconstruct(self, formulas: Sequence[str]) -> list[str | None]:
        """Encode then decode (raises on formulas that cannot be encoded)."""
        return self.decode(self.encode(formulas))

    def sample(
        self, n: int, *, method: Literal["gaussian", "uniform"] = "gaussian", seed: int | None = 0
    ) -> np.ndarray:
        """Random latent points ``(n, D)``: Gaussian fitted to the training codes, or uniform in bounds."""
        self._check_fitted()
        rng = np.random.default_rng(seed)
        if method == "uniform":
            lo, hi = self.latent_bounds_.astype(np.float64)
            return rng.uniform(lo, hi, size=(n, self.latent_dim)).astype(np.float32)
        if method == "gaussian":
            return rng.multivariate_normal(
                self.latent_mean_.astype(np.float64),
                self.latent_cov_.astype(np.float64),
                size=n,
                method="eigh",
            ).astype(np.float32)
        raise InputError("unknown sampling method (use gaussian or uniform)", value=method)

    # -- persistence -----------------------------------------------------------------------
    def save(
        self,
        directory: str | Path,
        *,
        precision: Literal["float32", "float16"] = "float32",
        metadata: dict[str, Any] | None = None,
        heldout: Sequence[str] | None = None,
    ) -> Path:
        """Write the model directory (each file written atomically).

        Files: ``model.json`` (kind, params, metadata), ``weights.pt``
        (state dict; ``precision="float16"`` halves its size),
        ``latent_stats.npz`` (bounds ``(2, D)``, mean ``(D,)``, cov ``(D, D)``),
        ``training_formulas.txt.gz`` and, if given, ``heldout_formulas.txt.gz``.
        """
        import torch

        self._check_fitted()
        if precision not in ("float32", "float16"):
            raise InputError("precision must be float32 or float16", value=precision)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.net_.state_dict()
        if precision == "float16":
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            torch.save(state, tmp)
        with atomic_path(directory / LATENT_FILE) as tmp, tmp.open("wb") as fh:
            np.savez(fh, bounds=self.latent_bounds_, mean=self.latent_mean_, cov=self.latent_cov_)
        _write_formulas(sorted(self.training_formulas_), directory / TRAINING_FORMULAS_FILE)
        if heldout is not None:
            _write_formulas(list(heldout), directory / HELDOUT_FORMULAS_FILE)
        meta = {
            "format_version": FORMAT_VERSION,
            "encoding": self.encoder_.to_dict(),
            "precision": precision,
            "n_training_formulas": len(self.training_formulas_),
            "training_fingerprint": _formulas_fingerprint(self.training_formulas_),
            "latent_bounds": {"min": self.latent_bounds_[0].tolist(), "max": self.latent_bounds_[1].tolist()},
            "history": [asdict(h) for h in getattr(self, "history_", [])],
            "versions": _versions(),
            **(metadata or {}),
            **weights_record(
                directory,
                [WEIGHTS_FILE, LATENT_FILE, TRAINING_FORMULAS_FILE]
                + [HELDOUT_FORMULAS_FILE] * (directory / HELDOUT_FORMULAS_FILE).is_file(),
            ),
        }
        write_json({"kind": KIND, "params": self.get_params(), "metadata": meta}, directory / MODEL_CARD_FILE)
        log.info("saved %s autoencoder to %s", self.arch, directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path | None = "default") -> Self:
        """Load a model directory; ``"default"`` (or None) is the model shipped in the package.

        Raises:
            ModelError: missing or incomplete directory, or not an autoencoder.
        """
        import torch

        path = resolve_model_dir(directory, DEFAULT_NAME)
        try:
            card = json.loads((path / MODEL_CARD_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path / MODEL_CARD_FILE}: unreadable model card ({exc})") from exc
        if card.get("kind") != KIND:
            raise ModelError(f"{path}: not a composition autoencoder (kind {card.get('kind')!r})")
        for name in (WEIGHTS_FILE, LATENT_FILE, TRAINING_FORMULAS_FILE):
            if not (path / name).is_file():
                raise ModelError(f"{path}: incomplete model directory ({name} missing)")
        verify_weights(path, card.get("metadata", {}), [WEIGHTS_FILE, LATENT_FILE, TRAINING_FORMULAS_FILE])
        params = dict(card["params"])
        params["channels"] = tuple(params["channels"])
        model = cls(**params)
        model._check_params()
        enc = card.get("metadata", {}).get("encoding")
        model.encoder_ = FormulaEncoder.from_dict(enc) if enc else model.formula_encoder
        net = _build_net(model.arch, *model.encoder_.shape, model.get_params())
        try:
            state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except (RuntimeError, OSError, KeyError, pickle.UnpicklingError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path / WEIGHTS_FILE}: cannot load weights ({first})") from exc
        net.eval()
        model.net_ = net
        with np.load(path / LATENT_FILE, allow_pickle=False) as stats:
            model.latent_bounds_ = stats["bounds"].astype(np.float32)
            model.latent_mean_ = stats["mean"].astype(np.float32)
            model.latent_cov_ = stats["cov"].astype(np.float32)
        model.training_formulas_ = frozenset(_read_formulas(path / TRAINING_FORMULAS_FILE))
        model.history_ = [EpochRecord(**h) for h in card.get("metadata", {}).get("history", [])]
        model.metadata_ = card.get("metadata", {})
        model.path_ = path
        return model

    def heldout_formulas(self) -> list[str]:
        """Held-out formulas saved beside a loaded model (empty if none were saved)."""
        path = getattr(self, "path_", None)
        if path is None or not (path / HELDOUT_FORMULAS_FILE).is_file():
            return []
        return _read_formulas(path / HELDOUT_FORMULAS_FILE)

    def __repr__(self) -> str:
        p = self.get_params()
        shown = ", ".join(
            f"{k}={p[k]!r}" for k in ("arch", "latent_dim", "beta", "latent_noise", "epochs", "seed")
        )
        return f"{type(self).__name__}({shown})"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _init_output_bias(net, arch: str, counts: np.ndarray, *, levels: int) -> None:
    """Start the decoder's output at the data's class frequencies (log-prior bias).

    Softmax: per element row, the log frequency of {absent, 1..L}; paper: the
    logit of each count level's frequency. Without it the first epoch is spent
    learning that almost every element is absent.
    """
    import torch

    n, e = counts.shape
    with torch.no_grad():
        if arch == "softmax":
            freq = np.stack([np.bincount(counts[:, j], minlength=levels + 1) for j in range(e)]).astype(
                np.float64
            )
            freq = (freq + 1.0) / (n + levels + 1.0)
            net.head[-1].bias.copy_(torch.from_numpy(np.log(freq).ravel()).float())
        else:
            onehot = counts[..., None] == np.arange(1, levels + 1)
            p = np.clip(onehot.mean(axis=(0, 1)), 1e-6, 1 - 1e-6)
            net.deconv2.bias.copy_(torch.from_numpy(np.log(p / (1 - p))).float())


def _onehot(counts, n_levels: int):
    """Counts tensor ``(N, E)`` int64 -> float one-hot ``(N, E, L)`` (absent = all-zero row)."""
    import torch.nn.functional as F

    return F.one_hot(counts, n_levels + 1)[..., 1:].float()


def _write_formulas(formulas: Sequence[str], path: Path) -> None:
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(formulas) + ("\n" if formulas else ""))


def _read_formulas(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [line for line in fh.read().splitlines() if line]


def _formulas_fingerprint(formulas: frozenset[str] | Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(formulas)).encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    import torch

    import gapforge

    return {
        "gapforge": gapforge.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------------------------
# training data and the training command
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingData:
    """Distinct encodable formulas for the autoencoder and what was left out."""

    formulas: list[str]
    n_candidates: int
    n_not_encodable: int
    sources: tuple[str, ...]


def mp_training_formulas(
    sources: Sequence[str] = ("mp-formulas", "mp-bandgap"), encoder: FormulaEncoder | None = None
) -> TrainingData:
    """The distinct encodable formulas of the Materials Project sets (sorted).

    ``mp-formulas`` is read with :func:`gapforge.data.load_formulas`, labelled
    sets (``mp-bandgap``) with :func:`gapforge.data.load_dataset`.
    """
    from gapforge.data import load_dataset, load_formulas
    from gapforge.data.registry import REGISTRY

    encoder = encoder or FormulaEncoder()
    everything: list[str] = []
    for name in sources:
        entry = REGISTRY.get(name)
        df = load_formulas(name) if entry is not None and entry.kind != "bandgap" else load_dataset(name)
        everything.extend(df["formula"].astype(str).tolist())
    distinct = list(dict.fromkeys(everything))
    batch = encoder.encode(distinct)
    formulas = sorted(set(batch.reduced[batch.valid].tolist()))
    log.info(
        "%d distinct formulas from %s; %d encodable, %d not",
        len(distinct),
        ", ".join(sources),
        len(formulas),
        int((~batch.valid).sum()),
    )
    return TrainingData(formulas, len(distinct), int((~batch.valid).sum()), tuple(sources))


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_autoencoder` produced."""

    model_dir: Path
    arch: str
    n_train: int
    n_heldout: int
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        return d


#: Architecture defaults used by the training command when the caller does not override them.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"beta": 0.0, "latent_noise": 0.0},
    "softmax": {
        "beta": 0.01,
        "latent_noise": 0.0,
        "hidden": 512,
        "factor_rank": 32,
        "lr_schedule": "cosine",
        "kl_warmup": 0,  # a warm-up measured worse: codes spread at beta ~ 0, then must contract
    },
}


def train_autoencoder(
    out: str | Path,
    *,
    arch: Arch = "softmax",
    epochs: int = 30,
    seed: int = 0,
    holdout: float = 0.05,
    max_formulas: int | None = None,
    formulas: Sequence[str] | None = None,
    precision: Literal["float32", "float16"] = "float32",
    overwrite: bool = False,
    n_samples: int = 2000,
    command: str | None = None,
    **params: Any,
) -> TrainResult:
    """Train an autoencoder on the Materials Project formulas, evaluate it and save it to ``out``.

    A ``holdout`` fraction of the distinct formulas (chosen by ``seed``) is
    kept out of training; the held-out exact reconstruction and the decode
    measures of random latent points (see :mod:`gapforge.models.latent_metrics`)
    are stored in ``model.json`` beside the seed and the command.

    Args:
        out: model directory to create.
        arch: ``"softmax"`` or ``"paper"``.
        epochs: training epochs.
        seed: seed of the split, the initialisation and the batch order.
        holdout: fraction of formulas held out for evaluation (0 = none).
        max_formulas: train on a random subsample of at most this many formulas.
        formulas: train on these formulas instead of the Materials Project sets
            (non-encodable ones are dropped with a warning).
        precision: dtype of the saved weights.
        overwrite: replace an existing model directory.
        n_samples: random latent points per sampling method in the evaluation.
        command: the command line that produced the model (recorded).
        **params: further :class:`CompositionAutoencoder` parameters.

    Raises:
        InputError: ``out`` exists (without ``overwrite``), bad parameters.
    """
    from gapforge.models.latent_metrics import evaluate_autoencoder

    out = Path(out)
    if (out / MODEL_CARD_FILE).exists() and not overwrite:
        raise InputError("model directory already exists (use --overwrite)", path=out)
    if not 0 <= holdout < 1:
        raise InputError("holdout must be in [0, 1)", value=holdout)
    if arch not in ARCHS:
        raise InputError(f"unknown autoencoder architecture (use {' or '.join(ARCHS)})", value=arch)
    encoder = FormulaEncoder(
        tuple(params.pop("elements", None) or MP_BANDGAP_ELEMENTS), params.pop("n_levels", 8)
    )
    if formulas is None:
        data = mp_training_formulas(encoder=encoder)
        pool, sources = data.formulas, list(data.sources)
    else:
        batch = encoder.encode(list(formulas))
        if not batch.valid.all():
            log.warning("dropping %d formulas that cannot be encoded", int((~batch.valid).sum()))
        pool, sources = sorted(set(batch.reduced[batch.valid].tolist())), ["user"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    n_hold = math.floor(holdout * len(pool))
    heldout = sorted(pool[i] for i in order[:n_hold])
    train = [pool[i] for i in order[n_hold:]]
    if max_formulas is not None and len(train) > max_formulas:
        train = train[:max_formulas]  # already in random order
    train = sorted(train)
    settings = {**ARCH_DEFAULTS[arch], **params}
    model = CompositionAutoencoder(
        arch=arch, epochs=epochs, seed=seed, elements=encoder.elements, n_levels=encoder.n_levels, **settings
    )
    log.info("training %r on %d formulas (%d held out)", model, len(train), len(heldout))
    t0 = time.perf_counter()
    model.fit(train, validation=heldout[:2000] or None)
    seconds = time.perf_counter() - t0
    if precision == "float16":  # evaluate what is shipped: round the weights through float16
        import torch

        with torch.no_grad():
            for p in model.net_.parameters():
                p.copy_(p.half().float())
        model._set_latent_stats(model._encode_counts(encoder.formulas_to_counts(train), refine=False))
    meta = {
        "seed": seed,
        "holdout": holdout,
        "n_heldout": len(heldout),
        "max_formulas": max_formulas,
        "data_sources": sources,
        "command": command,
        "torch_threads": model.threads,
        "metrics": {"train_seconds": round(seconds, 1)},
    }
    # save first (an interrupted evaluation must not lose the training), then add the measures
    model.save(out, precision=precision, metadata=meta, heldout=heldout)
    evaluation = evaluate_autoencoder(model, heldout, n_samples=n_samples, seed=seed)
    metrics = {"train_seconds": round(seconds, 1), **evaluation.to_dict()}
    card = json.loads((out / MODEL_CARD_FILE).read_text())
    card["metadata"]["metrics"] = metrics
    write_json(card, out / MODEL_CARD_FILE)
    write_model_card(out)
    return TrainResult(out, arch, len(train), len(heldout), round(seconds, 1), metrics)


def write_model_card(directory: str | Path) -> Path:
    """Write ``README.md`` (a short model card) beside a saved model, from its ``model.json``."""
    from gapforge.io import write_text

    directory = Path(directory)
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    p, meta = card["params"], card["metadata"]
    m = meta.get("metrics", {})
    enc = p.get("encoder_type") or ("conv" if p["arch"] == "paper" else "set")

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f} %"

    lines = [
        f"# Composition autoencoder ({p['arch']})",
        "",
        "Maps a chemical formula (one-hot matrix: "
        f"{len(meta['encoding']['elements'])} elements x counts 1..{meta['encoding']['n_levels']}) "
        f"to a {p['latent_dim']}-d latent vector and back. Load it with "
        "`CompositionAutoencoder.load(...)` or use `gapforge latent encode|decode|sample|map`.",
        "",
        "## Architecture and training",
        "",
        f"- architecture `{p['arch']}`, encoder `{enc}`, hidden {p['hidden']}, "
        f"element x count factor rank {p.get('factor_rank', 0)}, channels {p['channels']}, "
        f"KL weight beta {p['beta']} (linear warm-up over {p.get('kl_warmup', 0)} epochs), "
        f"latent noise {p['latent_noise']}",
        f"- Adam lr {p['learning_rate']} ({p.get('lr_schedule', 'constant')} schedule), "
        f"batch {p['batch_size']}, {p['epochs']} epochs, seed {p['seed']}, "
        f"{meta.get('torch_threads')} torch thread(s), {m.get('train_seconds')} s wall",
        f"- data: {meta.get('n_training_formulas')} distinct encodable formulas of "
        f"{', '.join(meta.get('data_sources') or [])} (fingerprint `{meta.get('training_fingerprint')}`), "
        f"{meta.get('n_heldout')} more held out ({meta.get('holdout')}, chosen by the seed)",
        f"- weights stored as {meta.get('precision')}",
        *(
            [
                f"- encoding: the encoder's code, then, for a formula whose code does not decode back "
                f"to it, up to {p.get('refine_steps', 100)} Adam steps (step {p.get('refine_lr', 0.05)}) "
                "on the code alone, inside the latent bounds (`refine_steps=0` turns this off)"
            ]
            if p["arch"] == "softmax" and p.get("refine_steps", 100)
            else []
        ),
        f"- command: `{meta.get('command')}`",
        "",
        "## Measures (recorded at training time)",
        "",
        "| set | n | exact reconstruction | valid | SMACT-valid | novel | unique |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("heldout", "uniform", "gaussian"):
        s = m.get(key)
        if s:
            lines.append(
                f"| {s['source']} | {s['n']} | {pct(s.get('exact'))} | {pct(s['valid'])} | "
                f"{pct(s['smact_valid'])} | {pct(s['novel'])} | {pct(s['unique'])} |"
            )
    lines += [
        "",
        "Uniform points are drawn inside the per-dimension bounds of the training encodings, Gaussian points "
        "from a Gaussian fitted to them. SMACT-valid: charge neutral with ICSD-24 oxidation states and "
        "Pauling-electronegativity ordered (`smact.screening.smact_validity`, alloys not accepted), "
        "as a share of all points. See `benchmarks/bench_autoencoder.py` for the side-by-side comparison.",
        "",
        "## Limits",
        "",
        f"- Only formulas whose gcd-reduced counts are all <= {meta['encoding']['n_levels']} and whose "
        "elements are in the vocabulary can be encoded (about 70 % of distinct Materials Project formulas).",
        "- Decodes are compositions only: no structure, no stability, no guarantee that the compound exists.",
        "",
    ]
    return write_text("\n".join(lines), directory / "README.md")


def load_autoencoder(model: str | Path | None = "default") -> CompositionAutoencoder:
    """Load a saved autoencoder (``"default"`` = the shipped one)."""
    return CompositionAutoencoder.load(model)


def encode_table(model: CompositionAutoencoder, formulas: Sequence[str]) -> pd.DataFrame:
    """Latent vectors as a table: ``formula`` (as given), ``reduced_formula``, ``reason``, ``z0..z{D-1}``."""
    enc = model.encode_batch(formulas)
    df = pd.DataFrame(enc.z, columns=[f"z{i}" for i in range(model.latent_dim)])
    df.insert(0, "reason", enc.reasons.astype(str))
    df.insert(0, "reduced_formula", enc.reduced.astype(str))
    df.insert(0, "formula", [str(f) for f in formulas])
    return df


def decode_table(model: CompositionAutoencoder, z: np.ndarray) -> pd.DataFrame:
    """Decode latent vectors ``(N, D)`` into a table.

    Columns: ``formula`` (reduced, ``""`` where invalid), ``valid``,
    ``smact_valid``, ``novel`` (not a training formula), ``n_elements``,
    ``n_atoms`` (per reduced formula unit) and ``reason``.
    """
    from gapforge.models.latent_metrics import smact_valid

    counts, valid = model.decode_counts(model.check_latent(z))
    formulas = np.full(len(counts), "", dtype=object)
    if valid.any():
        formulas[valid] = model.formula_encoder.counts_to_formulas(counts[valid])
    training = model.training_formulas
    return pd.DataFrame(
        {
            "formula": formulas.astype(str),
            "valid": valid,
            "smact_valid": smact_valid([f if v else None for f, v in zip(formulas, valid, strict=True)]),
            "novel": [bool(v) and f not in training for f, v in zip(formulas, valid, strict=True)],
            "n_elements": (counts > 0).sum(axis=1),
            "n_atoms": counts.astype(np.int64).sum(axis=1),
            "reason": np.where(
                valid, "", "invalid decode (no element)" if model.arch == "softmax" else "invalid decode"
            ).astype(str),
        }
    )


def read_latent_file(path: str | Path, latent_dim: int) -> np.ndarray:
    """Read latent vectors from ``.npy`` (``(N, D)``) or a table with columns ``z0..z{D-1}``.

    A table without ``z`` columns must have exactly ``D`` numeric columns.

    Raises:
        InputError: missing file, wrong dimension, non-numeric values.
    """
    from gapforge.io import read_table

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read .npy file ({exc})", path=path) from exc
        return arr
    df = read_table(path)
    zcols = [c for c in df.columns if isinstance(c, str) and c.startswith("z") and c[1:].isdigit()]
    if zcols:
        zcols.sort(key=lambda c: int(c[1:]))
        if len(zcols) != latent_dim:
            raise InputError(
                f"found {len(zcols)} latent columns z0.., the model needs {latent_dim}", path=path
            )
        df = df[zcols]
    elif df.shape[1] != latent_dim:
        raise InputError(
            f"expected {latent_dim} latent columns (z0..z{latent_dim - 1}), found {df.shape[1]}", path=path
        )
    values = df.apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1) & ~df.isna().any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError("latent value is not a number", path=path, row=i + 1, value=df.iloc[i].tolist()[:3])
    return values.to_numpy(dtype=np.float32)


__all__ = [
    "ARCHS",
    "CompositionAutoencoder",
    "EpochRecord",
    "LatentEncoding",
    "TrainResult",
    "TrainingData",
    "decode_table",
    "encode_table",
    "load_autoencoder",
    "mp_training_formulas",
    "read_latent_file",
    "train_autoencoder",
    "write_model_card",
]
