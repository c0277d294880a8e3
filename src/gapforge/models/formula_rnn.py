"""Autoregressive formula generator: a recurrent network that writes a formula element by element.

The MATGAN-style GAN (:mod:`gapforge.models.gan`) draws the 89 element rows of
a formula matrix independently given its noise vector. Trained on this data
its rows end up diffuse, so element-count correlations (and with them charge
balance) are weak. This generator instead factorises the probability of a
composition exactly,

    p(formula) = prod_t p(element_t, count_t | elements and counts before t),

and learns it by maximum likelihood:

* a formula is the sequence of its elements in order of **Pauling
  electronegativity** (ties by atomic number; elements without one last), each
  with its count 1..L, then a *stop* token. Cations come first and anions last,
  so the anion's count is chosen knowing the cations;
* a GRU reads the sequence; at each step one head scores the next element
  (only elements later in the order than the previous one, or *stop*, are
  allowed, so every sequence is one formula written one way) and a second head
  scores that element's count;
* sampling draws element and count at a softmax ``temperature`` (Gumbel-max)
  and stops at the stop token or after ``max_elements`` elements. Every sample
  is a formula: the decodable share is 100 % by construction.

Training uses the same formulas as the GAN (distinct encodable Materials
Project formulas, by default only the SMACT-valid ones), keeps a seeded
held-out share and restores the epoch with the lowest held-out negative
log-likelihood. ``temperature`` trades validity for diversity: above 1 the
samples are more often new and distinct and less often SMACT-valid
(``benchmarks/bench_generators.py`` measures the curve).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from gapforge.encoding import FormulaEncoder, reduce_counts
from gapforge.errors import InputError, ModelError
from gapforge.io import atomic_path, write_json, write_text
from gapforge.models.base import MODEL_CARD_FILE, rebuild_from_card, weights_record
from gapforge.models.generation import (
    TRAIN_SETS,
    GeneratedFormulas,
    GenerationQuality,
    collect_distinct,
    library_versions,
    load_weights,
    prepare_generator_training,
    quality_markdown,
    read_generator_card,
    save_trained_generator,
    training_counts,
)

logger = logging.getLogger(__name__)

KIND = "rnn-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"


def _torch():
    import torch

    return torch


@functools.cache
def _net_class():
    """The torch module (built on first use so that importing gapforge does not import torch)."""
    nn = _torch().nn

    class FormulaRNNNet(nn.Module):
        """GRU over (element, count) steps with an element head and an element-conditioned count head."""

        def __init__(self, n_elements: int, n_levels: int, hidden: int, embed: int) -> None:
            super().__init__()
            # inputs: element tokens 0..E-1, E = stop (padding), E + 1 = start; counts 0..L-1, L = start
            self.element_in = nn.Embedding(n_elements + 2, embed)
            self.count_in = nn.Embedding(n_levels + 1, embed)
            self.gru = nn.GRU(embed, hidden, batch_first=True)
            self.element_out = nn.Linear(hidden, n_elements + 1)  # + stop
            self.element_ctx = nn.Embedding(n_elements, hidden)
            self.count_out = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_levels))

    return FormulaRNNNet


def element_order(encoder: FormulaEncoder) -> np.ndarray:
    """Vocabulary indices in writing order: Pauling electronegativity, ties by atomic number.

    Elements without an electronegativity come last (in atomic-number order).
    """
    from gapforge.screening.validity import SmactChecker

    x = SmactChecker(encoder.elements).electronegativity
    x = np.where(np.isnan(x), np.inf, x)
    return np.lexsort((np.arange(len(x)), x))


def _forbidden(prev_rank, n_elements: int, step: int, max_elements: int):
    """Mask of the element-head logits that may not be drawn after ``prev_rank`` at ``step``."""
    torch = _torch()
    tokens = torch.arange(n_elements + 1)
    bad = tokens[None, :] <= prev_rank[:, None]  # elements must come later in the order
    bad[:, n_elements] = step == 0  # a formula has at least one element
    if step >= max_elements:
        bad[:, :n_elements] = True  # ... and at most max_elements
    return bad


@dataclass
class FormulaRNN:
    """Autoregressive (element, count) generator of compositions.

    Args:
        hidden: GRU state size.
        embed: size of the element and count input embeddings.
        epochs: passes over the training formulas (the best held-out epoch is kept).
        batch_size: formulas per optimiser step.
        lr: Adam learning rate.
        val_fraction: share of the training formulas held out for early stopping.
        max_elements: most elements in one formula (training formulas with more are dropped).
        train_set: ``"all"`` encodable MP formulas, or ``"smact-valid"`` only.
        temperature: softmax temperature of sampling (1 = the learned distribution).
        seed: seed of weights, split, batches and sampling.
        encoder: the formula codec (element vocabulary, count levels).
    """

    hidden: int = 128
    embed: int = 64
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    val_fraction: float = 0.05
    max_elements: int = 8
    train_set: str = "smact-valid"
    temperature: float = 1.25
    seed: int = 0
    encoder: FormulaEncoder = field(default_factory=FormulaEncoder)

    kind = KIND
    #: the only decoding rule: every sample is drawn (kept for the generator interface)
    decode_rule = "sample"

    def __post_init__(self) -> None:
        if self.train_set not in TRAIN_SETS:
            raise InputError(f"train_set must be one of {', '.join(TRAIN_SETS)}", value=self.train_set)
        if not self.temperature > 0:
            raise InputError("temperature must be > 0", value=self.temperature)
        if not 0 <= self.val_fraction < 1:
            raise InputError("val_fraction must be in [0, 1)", value=self.val_fraction)
        for name in ("hidden", "embed", "epochs", "batch_size", "max_elements"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1", value=getattr(self, name))

    def get_params(self) -> dict:
        """Hyper-parameters (JSON-ready; ``cls(**params)`` rebuilds the model)."""
        return {
            "hidden": self.hidden,
            "embed": self.embed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "val_fraction": self.val_fraction,
            "max_elements": self.max_elements,
            "train_set": self.train_set,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    def with_sampling(
        self, *, decode_rule: str | None = None, temperature: float | None = None
    ) -> FormulaRNN:
        """A copy sharing the trained network, sampling at another temperature.

        Raises:
            InputError: a decoding rule other than ``"sample"``.
        """
        if decode_rule not in (None, "sample"):
            raise InputError(
                "the autoregressive generator only samples (decode rule 'sample')", value=decode_rule
            )
        other = FormulaRNN(
            **{**self.get_params(), "temperature": self.temperature if temperature is None else temperature},
            encoder=self.encoder,
        )
        for name in ("net_", "order_", "metadata_", "history_", "train_counts_"):
            if hasattr(self, name):
                setattr(other, name, getattr(self, name))
        return other

    # -- sequences --------------------------------------------------------------------
    def _sequences(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Element-rank and count-index sequences ``(N, max_elements + 1)``; padding = stop."""
        e, steps = self.encoder.n_elements, self.max_elements + 1
        rank = np.empty(e, dtype=np.int64)
        rank[self.order_] = np.arange(e)
        present = counts > 0
        ranks = np.where(present, rank[None, :], e)  # absent elements sort after every present one
        ranks.sort(axis=1)
        ranks = ranks[:, :steps]
        elements = np.full((len(counts), steps), e, dtype=np.int64)
        elements[:, : ranks.shape[1]] = ranks
        cols = self.order_[np.minimum(elements, e - 1)]
        levels = np.take_along_axis(counts.astype(np.int64), cols, axis=1) - 1
        levels[elements == e] = 0
        return elements, levels

    # -- training ---------------------------------------------------------------------
    def fit(self, formulas: Sequence[str]) -> Self:
        """Train by maximum likelihood (unencodable formulas are dropped and logged).

        Raises:
            InputError: no usable training formula.
        """
        torch = _torch()
        counts = training_counts(formulas, self.encoder, self.train_set, label="RNN generator")
        k = (counts > 0).sum(axis=1)
        if (k > self.max_elements).any():
            logger.info(
                "RNN generator: %d formulas with more than %d elements dropped",
                int((k > self.max_elements).sum()),
                self.max_elements,
            )
            counts = counts[k <= self.max_elements]
        if len(counts) == 0:
            raise InputError(f"no training formula with at most {self.max_elements} elements")
        self.train_counts_ = counts.astype(np.int8)
        self.order_ = element_order(self.encoder)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(len(counts))
        n_val = round(self.val_fraction * len(counts)) if len(counts) >= 20 else 0
        elements, levels = (torch.from_numpy(a) for a in self._sequences(counts))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        net = _net_class()(self.encoder.n_elements, self.encoder.n_levels, self.hidden, self.embed)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        history: list[dict] = []
        best: tuple[float, dict] | None = None
        start = time.perf_counter()
        from tqdm.auto import tqdm

        for epoch in tqdm(range(self.epochs), desc="RNN generator epochs", disable=None):
            net.train()
            order = rng.permutation(train_idx)
            total = 0.0
            for b in range(0, len(order), self.batch_size):
                idx = torch.from_numpy(order[b : b + self.batch_size])
                loss = self._nll(net, elements[idx], levels[idx]).sum() / len(idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            net.eval()
            row = {"epoch": epoch + 1, "train_nll": total / max(len(train_idx), 1)}
            if n_val:
                with torch.no_grad():
                    idx = torch.from_numpy(val_idx)
                    row["val_nll"] = float(self._nll(net, elements[idx], levels[idx]).mean())
                if best is None or row["val_nll"] < best[0]:
                    best = (row["val_nll"], {k: v.clone() for k, v in net.state_dict().items()})
            history.append(row)
            logger.info("RNN generator epoch %d: %s", epoch + 1, row)
        if best is not None:
            net.load_state_dict(best[1])
        net.eval()
        self.net_ = net
        self.history_ = history
        self.best_epoch_ = (
            min(history, key=lambda r: r["val_nll"])["epoch"] if n_val else history[-1]["epoch"]
        )
        self.n_val_ = n_val
        self.train_seconds_ = time.perf_counter() - start
        return self

    def _nll(self, net, elements, levels):
        """Per-formula negative log-likelihood (nats) of teacher-forced sequences."""
        torch = _torch()
        f = torch.nn.functional
        n, steps = elements.shape
        e, lv = self.encoder.n_elements, self.encoder.n_levels
        prev_el = torch.cat([torch.full((n, 1), e + 1), elements[:, :-1]], dim=1)
        prev_lv = torch.cat([torch.full((n, 1), lv), levels[:, :-1]], dim=1)
        h, _ = net.gru(net.element_in(prev_el) + net.count_in(prev_lv))
        logits = net.element_out(h)
        prev_rank = torch.where(prev_el > e, -1, prev_el)  # start -> -1; after stop every element masked
        for t in range(steps):
            logits[:, t] = logits[:, t].masked_fill(
                _forbidden(prev_rank[:, t], e, t, self.max_elements), -1e9
            )
        active = torch.cat([torch.ones(n, 1, dtype=torch.bool), elements[:, :-1] < e], dim=1)
        el_nll = f.cross_entropy(logits.reshape(-1, e + 1), elements.reshape(-1), reduction="none")
        has = elements < e
        lv_logits = net.count_out(h + net.element_ctx(elements.clamp(max=e - 1)))
        lv_nll = f.cross_entropy(lv_logits.reshape(-1, lv), levels.reshape(-1), reduction="none")
        return (el_nll.reshape(n, steps) * active).sum(1) + (lv_nll.reshape(n, steps) * has).sum(1)

    def log_likelihood(self, formulas: Sequence[str]) -> np.ndarray:
        """Log-probability (nats, temperature 1) of each formula; ``nan`` where it cannot be written.

        A formula cannot be written when it is not encodable or has more than
        ``max_elements`` elements.
        """
        self._check_fitted()
        torch = _torch()
        batch = self.encoder.encode(formulas)
        out = np.full(len(batch), np.nan)
        ok = batch.valid & ((batch.counts > 0).sum(axis=1) <= self.max_elements)
        rows = np.flatnonzero(ok)
        for start in range(0, len(rows), 50_000):  # bounds the (n, steps, hidden) activations
            chunk = rows[start : start + 50_000]
            elements, levels = (
                torch.from_numpy(a) for a in self._sequences(reduce_counts(batch.counts[chunk]))
            )
            with torch.no_grad():
                out[chunk] = -self._nll(self.net_, elements, levels).numpy()
        return out

    # -- sampling ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ModelError("the RNN generator is not trained (call fit or load a saved model)")

    def _batches(self, n: int, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        torch = _torch()
        g = torch.Generator().manual_seed(seed)
        net, e, lv = self.net_, self.encoder.n_elements, self.encoder.n_levels
        order = torch.from_numpy(self.order_)
        inv_t = 1.0 / self.temperature
        done = 0
        while done < n:
            m = min(batch_size, n - done)
            out = torch.zeros((m, e), dtype=torch.int16)
            with torch.no_grad():
                alive = torch.arange(m)
                prev_el = torch.full((m,), e + 1)
                prev_lv = torch.full((m,), lv)
                prev_rank = torch.full((m,), -1)
                h = None
                for step in range(self.max_elements + 1):
                    o, h = net.gru((net.element_in(prev_el) + net.count_in(prev_lv))[:, None], h)
                    o = o[:, 0]
                    logits = net.element_out(o).mul_(inv_t)
                    logits.masked_fill_(_forbidden(prev_rank, e, step, self.max_elements), -math.inf)
                    el = _gumbel_argmax(logits, g)
                    go_on = el < e
                    if not bool(go_on.any()):
                        break
                    alive, o, h, el = alive[go_on], o[go_on], h[:, go_on], el[go_on]
                    level = _gumbel_argmax(net.count_out(o + net.element_ctx(el)).mul_(inv_t), g)
                    out[alive, order[el]] = (level + 1).to(torch.int16)
                    prev_el, prev_lv, prev_rank = el, level, el
            counts = out.numpy()
            yield reduce_counts(counts), (counts > 0).any(axis=1)
            done += m

    def sample_counts(self, n: int, *, seed: int | None = None, batch_size: int = 16_384):
        """Reduced counts of ``n`` samples (duplicates kept).

        Returns:
            ``(counts (n, E) int16, valid (n,) bool)``; every sample is valid.
        """
        self._check_fitted()
        parts = list(self._batches(n, batch_size, self.seed if seed is None else seed))
        if not parts:
            return np.zeros((0, self.encoder.n_elements), np.int16), np.zeros(0, bool)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def generate(
        self, n: int, *, seed: int | None = None, batch_size: int = 16_384, progress: bool | None = None
    ) -> GeneratedFormulas:
        """Draw ``n`` samples and de-duplicate them batch by batch (see :func:`collect_distinct`)."""
        self._check_fitted()
        return collect_distinct(
            self._batches(n, batch_size, self.seed if seed is None else seed),
            n,
            self.encoder,
            progress=progress,
        )

    # -- persistence ------------------------------------------------------------------
    def save(self, directory: str | Path, *, metadata: dict | None = None) -> Path:
        """Write ``model.json`` and ``weights.pt`` into ``directory``."""
        self._check_fitted()
        torch = _torch()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            torch.save(self.net_.state_dict(), tmp)
        meta = {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder.to_dict(),
            "element_order": [self.encoder.elements[i] for i in self.order_],
            "versions": library_versions(),
            "n_train_formulas": len(getattr(self, "train_counts_", ())),
            "n_heldout_formulas": getattr(self, "n_val_", None),
            "best_epoch": getattr(self, "best_epoch_", None),
            "train_seconds": getattr(self, "train_seconds_", None),
            "history": getattr(self, "history_", []),
            **(metadata or {}),
            **weights_record(directory, [WEIGHTS_FILE]),
        }
        write_json({"kind": KIND, "params": self.get_params(), "metadata": meta}, directory / MODEL_CARD_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FormulaRNN:
        """Load a model written by :meth:`save` (weights only, never pickled objects).

        Raises:
            ModelError: missing or partial directory, another kind or format, mismatched weights.
        """
        directory = Path(directory)
        model, card = rebuild_from_card(
            cls,
            directory,
            kind=KIND,
            format_version=FORMAT_VERSION,
            label="RNN generator",
            weights_file=WEIGHTS_FILE,
        )
        meta = card["metadata"]
        try:
            model.encoder = FormulaEncoder.from_dict(meta["encoder"])
            index = {s: i for i, s in enumerate(model.encoder.elements)}
            model.order_ = np.array([index[s] for s in meta["element_order"]], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{directory / MODEL_CARD_FILE}: incomplete generator card ({exc})") from None
        if sorted(model.order_.tolist()) != list(range(model.encoder.n_elements)):
            raise ModelError(
                f"{directory / MODEL_CARD_FILE}: element_order is not a permutation of the vocabulary"
            )
        net = _net_class()(model.encoder.n_elements, model.encoder.n_levels, model.hidden, model.embed)
        model.net_ = load_weights(net, directory / WEIGHTS_FILE)
        model.metadata_ = meta
        return model


def _gumbel_argmax(logits, generator):
    """One categorical draw per row of ``logits`` (Gumbel-max); ``-inf`` logits are never drawn."""
    torch = _torch()
    u = torch.rand(logits.shape, generator=generator).clamp_(min=1e-12)
    return (logits - torch.log(-torch.log(u))).argmax(dim=1)


@dataclass(frozen=True)
class TrainRnnResult:
    """What :func:`train_rnn_generator` produced."""

    directory: Path
    model: FormulaRNN
    quality: GenerationQuality


def train_rnn_generator(
    out: str | Path,
    *,
    seed: int = 0,
    n_eval: int = 50_000,
    formulas: Sequence[str] | None = None,
    overwrite: bool = False,
    **params: Any,
) -> TrainRnnResult:
    """Train a :class:`FormulaRNN` on the Materials Project formulas and save it with its metrics.

    Args:
        out: model directory to write.
        seed: seed of weights, split, batches and sampling.
        n_eval: samples drawn (seed + 1) to measure quality after training.
        formulas: training formulas (default: :func:`mp_training_formulas`); they
            are also the novelty reference.
        overwrite: replace an existing model directory.
        **params: further :class:`FormulaRNN` parameters.

    Raises:
        InputError: ``out`` already holds a model and ``overwrite`` is false.
    """
    out, known = prepare_generator_training(out, formulas, overwrite=overwrite)
    model = FormulaRNN(seed=seed, **params).fit(known)
    quality = save_trained_generator(
        model, out, known, seed=seed, n_eval=n_eval, user_formulas=formulas is not None
    )
    write_rnn_model_card(out)
    return TrainRnnResult(out, model, quality)


def write_rnn_model_card(directory: str | Path) -> Path:
    """Write ``README.md`` (a short model card) beside a saved RNN generator, from its ``model.json``."""
    directory = Path(directory)
    p, m, quality = read_generator_card(directory)

    history = m.get("history", [])
    best = next((r for r in history if r["epoch"] == m.get("best_epoch")), {})
    val = f"{best['val_nll']:.3f}" if "val_nll" in best else "n/a"
    text = f"""# Formula generator (autoregressive GRU)

Writes hypothetical inorganic compositions element by element: elements in
order of Pauling electronegativity (cations first), each with a count
1..{m["encoder"]["n_levels"]}, then stop; at most {p["max_elements"]} elements; vocabulary of
{len(m["encoder"]["elements"])} elements. Trained by maximum likelihood. An alternative to the
MATGAN-style GAN (`gapforge/pretrained/gan`), whose independently drawn element
rows learn little of the correlation between elements and counts.

- **Architecture**: embeddings {p["embed"]} -> GRU {p["hidden"]} -> element head (next element
  later in the order, or stop) and count head (conditioned on the chosen element).
- **Training data**: {m.get("training_data", "?")}, distinct encodable formulas,
  `{p["train_set"]}` subset: {m.get("n_train_formulas", "?")} formulas, of which
  {m.get("n_heldout_formulas", "?")} held out (seed {p["seed"]}) to pick the epoch
  (fingerprint `{m.get("data_fingerprint", "?")}`).
- **Training**: {p["epochs"]} epochs of batch {p["batch_size"]}, Adam lr {p["lr"]}, best held-out
  epoch {m.get("best_epoch", "?")} (negative log-likelihood {val} nats per formula),
  {m.get("train_seconds") or 0:.0f} s.
- **Sampling**: element and count drawn at temperature {p["temperature"]} (Gumbel-max);
  every sample is a formula.

## Quality ({quality.get("n_samples", "?")} samples, seed {p["seed"]} + 1, temperature {p["temperature"]})

{quality_markdown(quality)} Million-sample figures and the
temperature curve: `benchmarks/results/bench_generators.md`.

## Reproduce

    export GAPFORGE_DATA_PATH=/path/to/shared/data OMP_NUM_THREADS=1
    gapforge train rnn --out DIR --epochs {p["epochs"]} --seed {p["seed"]} --train-set {p["train_set"]} \\
        --hidden {p["hidden"]} --temperature {p["temperature"]}

Use it with `gapforge generate --model rnn` (or `--model DIR`) and
`gapforge generate --model rnn --temperature T` to sample at another temperature.
Weights are a `torch.save(state_dict)` file read with `torch.load(weights_only=True)`.
"""
    return write_text(text, directory / "README.md")


__all__ = ["FormulaRNN", "TrainRnnResult", "element_order", "train_rnn_generator", "write_rnn_model_card"]
