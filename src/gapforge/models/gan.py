"""MATGAN-style formula generator: a Wasserstein GAN with gradient penalty over formula matrices.

Dan et al. (npj Comput. Mater. 6, 84, 2020) generate hypothetical inorganic
compositions with a WGAN over the same one-hot matrices the paper's
autoencoder uses (rows = elements, columns = atom counts). Here:

* the **generator** maps ``z ~ N(0, I)`` (``latent_dim``) through an MLP to
  logits of shape ``(E, L + 1)`` and a softmax per element row over
  ``{absent, 1, ..., L}``, so a row can never ask for two counts at once;
* the **critic** is an MLP on the flattened ``(E, L + 1)`` matrix, trained with
  the WGAN-GP loss (Gulrajani et al. 2017: ``n_critic`` critic steps per
  generator step, gradient-penalty weight 10, Adam ``(0.5, 0.9)``);
* a sample is decoded with :meth:`gapforge.encoding.FormulaEncoder.decode_counts`
  on the count columns (the paper's ``"strict"`` rule by default: a count is
  taken when its probability is at least 0.5; a sample with no element is
  not decodable).

The training set is the distinct encodable Materials Project compositions
(``mp-formulas`` + ``mp-bandgap``), optionally only those that pass SMACT
(MATGAN's 84.5 % validity figure is for a GAN trained on SMACT-screened ICSD
compositions). :meth:`FormulaGAN.generate` draws millions of samples in
batches, decodes and de-duplicates them with bounded memory.
"""

from __future__ import annotations

import json
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
from gapforge.io import atomic_path, write_json
from gapforge.models.base import MODEL_CARD_FILE, verify_weights, weights_record
from gapforge.models.generation import (  # re-exported: the GAN's public API before they were shared
    TRAIN_SETS,
    GeneratedFormulas,
    GenerationQuality,
    GenerationStats,
    collect_distinct,
    generation_quality,
    library_versions,
    load_weights,
    mp_training_formulas,
    prepare_generator_training,
    quality_markdown,
    read_generator_card,
    save_trained_generator,
    training_counts,
)

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "generator.pt"
CRITIC_FILE = "critic.pt"
KIND = "gan"
DECODE_RULES = ("strict", "argmax", "sample")
FAKE_SAMPLES = ("soft", "gumbel")


def _torch():
    import torch

    return torch


def _class_major(generator, n_elements: int, n_classes: int):
    """A copy of ``generator`` whose output is ordered ``(K, E)`` instead of ``(E, K)``.

    The softmax over the K classes of each element row then runs over the
    second axis of a contiguous ``(N, K, E)`` tensor: K long vectorised passes
    instead of N * E tiny ones (``torch.softmax`` over a last axis of 9 is
    slow on CPU).
    """
    import copy

    torch = _torch()
    if not isinstance(generator, torch.nn.Sequential) or not isinstance(generator[-1], torch.nn.Linear):
        return None  # not one of ours: use the plain softmax path
    fast = copy.deepcopy(generator).eval()
    last = fast[-1]
    order = torch.arange(n_elements * n_classes).reshape(n_elements, n_classes).T.reshape(-1)
    with torch.no_grad():
        last.weight.copy_(last.weight[order])
        last.bias.copy_(last.bias[order])
    return fast


def _build_generator(latent_dim: int, hidden: Sequence[int], n_out: int):
    nn = _torch().nn
    layers: list = []
    width = latent_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _build_critic(n_in: int, hidden: Sequence[int]):
    nn = _torch().nn
    layers: list = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


@dataclass
class FormulaGAN:
    """WGAN-GP generator of formula matrices (MATGAN-style).

    Args:
        latent_dim: size of the noise vector ``z``.
        generator_hidden: widths of the generator's hidden layers.
        critic_hidden: widths of the critic's hidden layers.
        epochs: passes over the training formulas (counted in critic steps).
        batch_size: formulas per critic step.
        lr: Adam learning rate of both networks.
        n_critic: critic steps per generator step.
        gp_weight: gradient-penalty weight (lambda).
        train_set: ``"all"`` encodable MP formulas, or ``"smact-valid"`` only.
        decode_rule: ``"strict"`` or ``"argmax"`` (passed to
            ``FormulaEncoder.decode_counts`` with the count probabilities), or
            ``"sample"``: draw each row's class from its softmax (at
            ``temperature``), then decode the one-hot result.
        temperature: softmax temperature of the ``"sample"`` rule.
        fake_samples: what the critic sees of the generator while training:
            ``"soft"`` (the per-row softmax probabilities; MATGAN's choice) or
            ``"gumbel"`` (a one-hot draw per row, straight-through Gumbel-softmax:
            hard one-hot forward, softmax gradient backward). With ``soft`` the
            critic can tell generated from real matrices by their softness alone
            and the generator collapses onto a few sharp outputs; with ``gumbel``
            it is trained on exactly what the ``"sample"`` decoding rule draws,
            so diversity comes from the rows' distributions as well as from ``z``.
        seed: seed of weights, batches and noise.
        encoder: the formula codec (element vocabulary, count levels).
    """

    latent_dim: int = 128
    generator_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 128)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-4
    n_critic: int = 5
    gp_weight: float = 10.0
    train_set: str = "smact-valid"
    decode_rule: str = "strict"
    temperature: float = 1.0
    fake_samples: str = "soft"
    seed: int = 0
    encoder: FormulaEncoder = field(default_factory=FormulaEncoder)

    kind = KIND

    def __post_init__(self) -> None:
        self.generator_hidden = tuple(int(h) for h in self.generator_hidden)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        if self.train_set not in TRAIN_SETS:
            raise InputError(f"train_set must be one of {', '.join(TRAIN_SETS)}", value=self.train_set)
        if self.decode_rule not in DECODE_RULES:
            raise InputError(f"decode rule must be one of {', '.join(DECODE_RULES)}", value=self.decode_rule)
        if not self.temperature > 0:
            raise InputError("temperature must be > 0", value=self.temperature)
        if self.fake_samples not in FAKE_SAMPLES:
            raise InputError(
                f"fake_samples must be one of {', '.join(FAKE_SAMPLES)}", value=self.fake_samples
            )

    # -- parameters -------------------------------------------------------------------
    def get_params(self) -> dict:
        """Hyper-parameters (JSON-ready; ``cls(**params)`` rebuilds the model)."""
        return {
            "latent_dim": self.latent_dim,
            "generator_hidden": list(self.generator_hidden),
            "critic_hidden": list(self.critic_hidden),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "n_critic": self.n_critic,
            "gp_weight": self.gp_weight,
            "train_set": self.train_set,
            "decode_rule": self.decode_rule,
            "temperature": self.temperature,
            "fake_samples": self.fake_samples,
            "seed": self.seed,
        }

    @property
    def _n_classes(self) -> int:
        return self.encoder.n_levels + 1

    # -- training ---------------------------------------------------------------------
    def fit(self, formulas: Sequence[str], *, max_seconds: float | None = None) -> Self:
        """Train on formulas (unencodable ones are dropped and logged; duplicates count once).

        Args:
            formulas: training compositions.
            max_seconds: stop after this wall time (the epoch in progress finishes).

        Raises:
            InputError: no encodable formula.
        """
        torch = _torch()
        counts = training_counts(formulas, self.encoder, self.train_set, label="GAN")
        self.train_counts_ = counts.astype(np.int8)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        e, k = self.encoder.n_elements, self._n_classes
        real_all = torch.from_numpy(
            np.eye(k, dtype=np.float32)[counts.astype(np.int64)].reshape(len(counts), e * k)
        )
        gen = _build_generator(self.latent_dim, self.generator_hidden, e * k)
        critic = _build_critic(e * k, self.critic_hidden)
        opt_g = torch.optim.Adam(gen.parameters(), lr=self.lr, betas=(0.5, 0.9))
        opt_c = torch.optim.Adam(critic.parameters(), lr=self.lr, betas=(0.5, 0.9))
        history: list[dict] = []
        start = time.perf_counter()
        bs = min(self.batch_size, len(counts))
        steps_per_epoch = max(1, len(counts) // bs)
        step = 0
        epochs_done = 0
        from tqdm.auto import tqdm

        for epoch in tqdm(range(self.epochs), desc="GAN epochs", disable=None):
            perm = rng.permutation(len(counts))
            c_losses, g_losses, w_dists = [], [], []
            gen.train()
            for b in range(steps_per_epoch):
                real = real_all[perm[b * bs : (b + 1) * bs]]
                z = torch.randn(len(real), self.latent_dim)
                with torch.no_grad():
                    fake = self._fake(gen(z)).reshape(len(real), -1)
                c_real, c_fake = critic(real).mean(), critic(fake).mean()
                gp = self._gradient_penalty(critic, real, fake)
                loss_c = c_fake - c_real + self.gp_weight * gp
                opt_c.zero_grad()
                loss_c.backward()
                opt_c.step()
                c_losses.append(loss_c.item())
                w_dists.append((c_real - c_fake).item())
                step += 1
                if step % self.n_critic == 0:
                    z = torch.randn(bs, self.latent_dim)
                    loss_g = -critic(self._fake(gen(z)).reshape(bs, -1)).mean()
                    opt_g.zero_grad()
                    loss_g.backward()
                    opt_g.step()
                    g_losses.append(loss_g.item())
            epochs_done = epoch + 1
            gen.eval()
            with torch.no_grad():
                probe = self._fake(gen(torch.randn(1024, self.latent_dim)))[..., 1:].numpy()
            _, probe_ok = self.encoder.decode_counts(probe, rule="strict")
            history.append(
                {
                    "epoch": epochs_done,
                    "decodable_probe": float(probe_ok.mean()),
                    "critic_loss": float(np.mean(c_losses)),
                    "generator_loss": float(np.mean(g_losses)) if g_losses else math.nan,
                    "wasserstein_estimate": float(np.mean(w_dists)),
                }
            )
            logger.info("GAN epoch %d: %s", epochs_done, history[-1])
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                logger.info("GAN: time budget reached after %d epochs", epochs_done)
                break
        gen.eval()
        self.generator_ = gen
        self.critic_ = critic
        self.history_ = history
        self.epochs_trained_ = epochs_done
        self.train_seconds_ = time.perf_counter() - start
        return self

    def _probs(self, logits):
        e, k = self.encoder.n_elements, self._n_classes
        return _torch().softmax(logits.reshape(-1, e, k), dim=-1)

    def _fake(self, logits):
        """What the critic sees of generator logits: ``(N, E, K)`` soft probabilities or hard draws."""
        if self.fake_samples == "gumbel":
            e, k = self.encoder.n_elements, self._n_classes
            return _torch().nn.functional.gumbel_softmax(logits.reshape(-1, e, k), tau=1.0, hard=True, dim=-1)
        return self._probs(logits)

    @staticmethod
    def _gradient_penalty(critic, real, fake):
        torch = _torch()
        alpha = torch.rand(len(real), 1)
        mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        grad = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
        return ((grad.norm(2, dim=1) - 1) ** 2).mean()

    # -- sampling ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "generator_"):
            raise ModelError("the GAN is not trained (call fit or load a saved model)")

    def sample_probabilities(self, n: int, *, seed: int | None = None):
        """Generator output for ``n`` noise vectors.

        Returns:
            ``(n, E, L + 1)`` float32 array: per element row, the probability of
            ``absent`` (column 0) and of each count ``1..L``.
        """
        self._check_fitted()
        torch = _torch()
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        with torch.no_grad():
            z = torch.randn(n, self.latent_dim, generator=g)
            return self._probs(self.generator_(z)).numpy()

    def _batches(self, n: int, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        torch = _torch()
        g = torch.Generator().manual_seed(seed)
        e, k = self.encoder.n_elements, self._n_classes
        fast = _class_major(self.generator_, e, k)
        done = 0
        while done < n:
            m = min(batch_size, n - done)
            with torch.no_grad():
                z = torch.randn(m, self.latent_dim, generator=g)
                # class-major logits (m, K, E): the drawn or scored class of a row is its count
                if fast is not None:
                    x = fast(z).reshape(m, k, e)
                else:
                    x = self.generator_(z).reshape(m, e, k).permute(0, 2, 1).contiguous()
                if self.decode_rule == "sample":
                    # inverse-CDF draw per element row: one uniform per row instead of one
                    # Gumbel variate per class
                    if self.temperature != 1.0:
                        x /= self.temperature
                    x -= x.amax(dim=1, keepdim=True)
                    x.exp_()
                    cdf = x.cumsum_(dim=1)  # unnormalised; cdf[:, -1] is the row's total
                    u = torch.rand((m, 1, e), generator=g) * cdf[:, -1:, :]
                    cls = (cdf < u).sum(dim=1, dtype=torch.int16).clamp_(max=k - 1).numpy()  # (m, E)
                    valid = (cls > 0).any(axis=1)
                    yield reduce_counts(cls), valid
                    done += m
                    continue
                x -= x.amax(dim=1, keepdim=True)
                x.exp_()
                x /= x.sum(dim=1, keepdim=True)
                scores = x[:, 1:, :].permute(0, 2, 1).numpy()  # (m, E, L) strided view
            yield self.encoder.decode_counts(scores, rule=self.decode_rule)
            done += m

    def sample_counts(self, n: int, *, seed: int | None = None, batch_size: int = 16_384):
        """Decoded counts of ``n`` samples (duplicates kept).

        Returns:
            ``(counts (n, E) int16, valid (n,) bool)``.
        """
        self._check_fitted()
        parts = list(self._batches(n, batch_size, self.seed if seed is None else seed))
        if not parts:
            return np.zeros((0, self.encoder.n_elements), np.int16), np.zeros(0, bool)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def generate(
        self, n: int, *, seed: int | None = None, batch_size: int = 16_384, progress: bool | None = None
    ) -> GeneratedFormulas:
        """Draw ``n`` samples; decode and de-duplicate them batch by batch.

        Memory stays bounded by one batch of matrices plus the distinct
        formulas found so far.

        Args:
            n: number of samples to draw.
            seed: noise seed (default: the model's seed).
            batch_size: samples per batch.
            progress: show a progress bar (``None``: only on a terminal).
        """
        self._check_fitted()
        return collect_distinct(
            self._batches(n, batch_size, self.seed if seed is None else seed),
            n,
            self.encoder,
            progress=progress,
        )

    def with_sampling(
        self, *, decode_rule: str | None = None, temperature: float | None = None
    ) -> FormulaGAN:
        """A copy sharing the trained networks, with another decoding rule or temperature."""
        params = {
            **self.get_params(),
            "decode_rule": self.decode_rule if decode_rule is None else decode_rule,
            "temperature": self.temperature if temperature is None else temperature,
        }
        return FormulaGAN(**params, encoder=self.encoder)._with_weights_of(self)

    def _with_weights_of(self, other: FormulaGAN) -> FormulaGAN:
        """Share ``other``'s trained networks (used to change decoding settings)."""
        for name in ("generator_", "critic_", "metadata_", "train_counts_"):
            if hasattr(other, name):
                setattr(self, name, getattr(other, name))
        return self

    # -- persistence ------------------------------------------------------------------
    def save(self, directory: str | Path, *, metadata: dict | None = None) -> Path:
        """Write ``model.json``, ``generator.pt`` and ``critic.pt`` into ``directory``."""
        self._check_fitted()
        torch = _torch()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            torch.save(self.generator_.state_dict(), tmp)
        with atomic_path(directory / CRITIC_FILE) as tmp:
            torch.save(self.critic_.state_dict(), tmp)
        meta = {
            "encoder": self.encoder.to_dict(),
            "versions": library_versions(),
            "n_train_formulas": len(getattr(self, "train_counts_", ())),
            "epochs_trained": getattr(self, "epochs_trained_", None),
            "train_seconds": getattr(self, "train_seconds_", None),
            "history_tail": getattr(self, "history_", [])[-5:],
            **(metadata or {}),
            **weights_record(directory, [WEIGHTS_FILE, CRITIC_FILE]),
        }
        write_json({"kind": KIND, "params": self.get_params(), "metadata": meta}, directory / MODEL_CARD_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FormulaGAN:
        """Load a model written by :meth:`save` (weights only, never pickled objects).

        Raises:
            ModelError: missing files, another model kind or mismatched weights.
        """
        torch = _torch()
        directory = Path(directory)
        card_path = directory / MODEL_CARD_FILE
        try:
            card = json.loads(card_path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{directory}: not a gapforge model directory (no {MODEL_CARD_FILE})") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{card_path}: unreadable model card ({exc.msg})") from None
        if card.get("kind") != KIND:
            raise ModelError(f"{directory}: a {card.get('kind')!r} model, not a {KIND!r} generator")
        enc = FormulaEncoder.from_dict(card["metadata"]["encoder"])
        params = dict(card["params"])
        params["generator_hidden"] = tuple(params["generator_hidden"])
        params["critic_hidden"] = tuple(params["critic_hidden"])
        model = cls(**params, encoder=enc)
        e, k = enc.n_elements, enc.n_levels + 1
        gen = _build_generator(model.latent_dim, model.generator_hidden, e * k)
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelError(f"{directory}: {WEIGHTS_FILE} is missing")
        critic_path = directory / CRITIC_FILE
        verify_weights(
            directory, card.get("metadata", {}), [WEIGHTS_FILE] + [CRITIC_FILE] * critic_path.is_file()
        )
        model.generator_ = load_weights(gen, weights)
        model.metadata_ = card.get("metadata", {})
        if critic_path.is_file():  # optional: only needed to judge samples or continue training
            critic = _build_critic(e * k, model.critic_hidden)
            try:
                critic.load_state_dict(torch.load(critic_path, weights_only=True, map_location="cpu"))
                model.critic_ = critic
            except Exception as exc:
                logger.warning("%s: critic weights not loaded (%s)", critic_path, type(exc).__name__)
        return model


@dataclass(frozen=True)
class TrainGanResult:
    """What :func:`train_gan` produced."""

    directory: Path
    model: FormulaGAN
    quality: GenerationQuality


def train_gan(
    out: str | Path,
    *,
    epochs: int = 10,
    seed: int = 0,
    max_minutes: float | None = None,
    train_set: str = "smact-valid",
    n_eval: int = 50_000,
    formulas: Sequence[str] | None = None,
    overwrite: bool = False,
    **params: Any,
) -> TrainGanResult:
    """Train a :class:`FormulaGAN` on the Materials Project formulas and save it with its metrics.

    Args:
        out: model directory to write.
        epochs: training epochs.
        seed: seed of weights, batches and noise.
        max_minutes: wall-time budget (training stops after the epoch that passes it).
        train_set: ``"all"`` or ``"smact-valid"`` encodable formulas.
        n_eval: samples drawn to measure quality after training.
        formulas: training formulas (default: :func:`mp_training_formulas`); they
            are also the novelty reference.
        overwrite: replace an existing model directory.
        **params: further :class:`FormulaGAN` parameters (``fake_samples``,
            ``decode_rule``, ``temperature``, ``batch_size``, ``lr``, ...).

    Raises:
        InputError: ``out`` already holds a model and ``overwrite`` is false.
    """
    out, known = prepare_generator_training(out, formulas, overwrite=overwrite)
    model = FormulaGAN(epochs=epochs, seed=seed, train_set=train_set, **params)
    model.fit(known, max_seconds=None if max_minutes is None else 60 * max_minutes)
    quality = save_trained_generator(
        model, out, known, seed=seed, n_eval=n_eval, user_formulas=formulas is not None
    )
    write_model_card(out)
    return TrainGanResult(out, model, quality)


def write_model_card(directory: str | Path) -> Path:
    """Write ``README.md`` (a short model card) beside a saved generator, from its ``model.json``."""
    from gapforge.io import write_text

    directory = Path(directory)
    p, m, quality = read_generator_card(directory)

    if p.get("fake_samples", "soft") == "gumbel":
        fake_text = "one-hot draws of each element row (straight-through Gumbel-softmax)"
    else:
        fake_text = "the softmax probabilities (MATGAN's choice)"
    if p["decode_rule"] == "sample":
        decode_text = (
            f"each element row drawn from its softmax (temperature {p.get('temperature', 1.0)}; "
            "Gumbel-max), as the critic saw it in training"
        )
    else:
        decode_text = f'`FormulaEncoder.decode_counts(rule="{p["decode_rule"]}")` on the count probabilities'

    text = f"""# Formula generator (MATGAN-style WGAN-GP)

Generates hypothetical inorganic compositions as one-hot formula matrices
({len(m["encoder"]["elements"])} elements x counts 1..{m["encoder"]["n_levels"]}),
as MATGAN (Dan et al., npj Comput. Mater. 6, 84, 2020) did for the screen of
Xin et al. (J. Phys. Chem. C 2021).

- **Architecture**: generator MLP {p["latent_dim"]} -> {" -> ".join(map(str, p["generator_hidden"]))}
  -> softmax per element row over {{absent, 1..{m["encoder"]["n_levels"]}}}; critic MLP
  {" -> ".join(map(str, p["critic_hidden"]))} -> 1; WGAN-GP (lambda {p["gp_weight"]},
  {p["n_critic"]} critic steps per generator step, Adam lr {p["lr"]}, betas (0.5, 0.9)); the critic
  sees {fake_text}.
- **Training data**: {m.get("training_data", "?")}, distinct encodable formulas,
  `{p["train_set"]}` subset: {m.get("n_train_formulas", "?")} formulas
  (fingerprint `{m.get("data_fingerprint", "?")}`).
- **Training**: {m.get("epochs_trained", "?")} epochs of batch {p["batch_size"]},
  seed {p["seed"]}, {m.get("train_seconds") or 0:.0f} s on one CPU thread.
- **Decoding**: {decode_text}.

## Quality ({quality.get("n_samples", "?")} samples, seed {p["seed"]} + 1)

{quality_markdown(quality)}

`gapforge generate --decode strict|argmax|sample [--temperature T]` overrides the rule;
million-sample figures: `benchmarks/results/bench_generate_screen.md`.

## Reproduce

    export GAPFORGE_DATA_PATH=/path/to/shared/data OMP_NUM_THREADS=1
    gapforge train gan --out DIR --epochs {p["epochs"]} --seed {p["seed"]} --train-set {p["train_set"]} \\
        --fake-samples {p.get("fake_samples", "soft")} --batch-size {p["batch_size"]} --lr {p["lr"]}

Load with `gapforge.screening.generate.load_generator(DIR)` or use `gapforge generate --model DIR`.
Weights are `torch.save(state_dict)` files read with `torch.load(weights_only=True)`.
"""
    return write_text(text, directory / "README.md")


__all__ = [
    "FormulaGAN",
    "GeneratedFormulas",
    "GenerationQuality",
    "GenerationStats",
    "TrainGanResult",
    "collect_distinct",
    "generation_quality",
    "mp_training_formulas",
    "prepare_generator_training",
    "save_trained_generator",
    "train_gan",
    "training_counts",
    "write_model_card",
]
