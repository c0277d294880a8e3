"""``gapforge generate``: draw formulas from a saved generator and write the distinct ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gapforge.errors import InputError, ModelError
from gapforge.io import table_format, write_json, write_table
from gapforge.models.base import MODEL_CARD_FILE, resolve_model_dir
from gapforge.models.formula_rnn import FormulaRNN
from gapforge.models.gan import FormulaGAN
from gapforge.models.generation import GeneratedFormulas

logger = logging.getLogger(__name__)

#: Directory name of the default generator under ``gapforge/pretrained/``: the autoregressive
#: one (91 % SMACT-valid over 1.18 M samples against the GAN's 82 %; ``bench_generators.md``).
DEFAULT_GENERATOR = "rnn"
#: ``--model`` names of the generators shipped in the package.
SHIPPED_GENERATORS = {"gan": "gan", "rnn": "rnn"}
#: Generator classes by the ``kind`` in their model card.
GENERATOR_KINDS = {FormulaGAN.kind: FormulaGAN, FormulaRNN.kind: FormulaRNN}

Generator = FormulaGAN | FormulaRNN


def load_generator(model: str | Path | None = "default") -> Generator:
    """A saved generator directory, or a shipped one: ``"default"``/``None``/``"rnn"`` or ``"gan"``.

    Raises:
        ModelError: missing directory or not a generator.
    """
    if model is not None and str(model) in SHIPPED_GENERATORS:
        path = resolve_model_dir("default", SHIPPED_GENERATORS[str(model)])
    else:
        path = resolve_model_dir(model, DEFAULT_GENERATOR)
    try:
        kind = json.loads((path / MODEL_CARD_FILE).read_text()).get("kind")
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path / MODEL_CARD_FILE}: cannot read model card ({exc})") from None
    if kind not in GENERATOR_KINDS:
        raise ModelError(f"{path}: a {kind!r} model, not a formula generator ({', '.join(GENERATOR_KINDS)})")
    return GENERATOR_KINDS[kind].load(path)


def summary_path(out: str | Path) -> Path:
    """Where :func:`generate_formulas` writes its summary (``<out stem>.summary.json``)."""
    out = Path(out)
    name = out.name[: -len(".csv.gz")] if out.name.lower().endswith(".csv.gz") else out.stem
    return out.with_name(f"{name}.summary.json")


def generate_formulas(
    model: str | Path | None,
    n: int,
    *,
    out: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 16_384,
    decode_rule: str | None = None,
    temperature: float | None = None,
    overwrite: bool = False,
) -> GeneratedFormulas:
    """Generate ``n`` samples, decode and de-duplicate them, optionally writing the table.

    The table (``formula``, ``n_generated``, ``n_atoms``, ``n_elements``; one
    row per distinct formula) goes to ``out`` (Parquet or CSV, atomically)
    and the run's counts to ``<stem>.summary.json`` beside it.

    Args:
        model: generator directory, ``"default"`` (= ``"rnn"``) or ``"gan"`` (the MATGAN-style GAN).
        n: samples to draw.
        out: table to write (optional).
        seed: noise seed.
        batch_size: samples per batch.
        decode_rule: override the model's rule (``strict``, ``argmax`` or ``sample``).
        temperature: override the model's softmax temperature (``sample`` rule).
        overwrite: replace an existing output.

    Raises:
        InputError: ``n`` is below 1, the output exists without ``overwrite``,
            or the output name has an unknown extension.
    """
    if n < 1:
        raise InputError("number of samples (-n) must be at least 1", value=n)
    if batch_size < 1:
        raise InputError("batch size must be >= 1", value=batch_size)
    if out is not None:
        table_format(out)
        if Path(out).exists() and not overwrite:
            raise InputError("output exists (use --overwrite)", path=out)
    gan = load_generator(model)
    if decode_rule is not None or temperature is not None:
        gan = gan.with_sampling(decode_rule=decode_rule, temperature=temperature)
    result = gan.generate(n, seed=seed, batch_size=batch_size)
    if out is not None:
        write_table(result.table, out)
        write_json(
            {
                "model": str(model),
                "seed": seed,
                "batch_size": batch_size,
                "decode_rule": gan.decode_rule,
                "temperature": gan.temperature,
                **result.stats.to_dict(),
            },
            summary_path(out),
        )
    return result


__all__ = [
    "DEFAULT_GENERATOR",
    "SHIPPED_GENERATORS",
    "Generator",
    "generate_formulas",
    "load_generator",
    "summary_path",
]
