"""``gapforge generate``: draw formulas from a saved generator and write the distinct ones."""

from __future__ import annotations

import logging
from pathlib import Path

from gapforge.errors import InputError
from gapforge.io import table_format, write_json, write_table
from gapforge.models.base import resolve_model_dir
from gapforge.models.gan import FormulaGAN, GeneratedFormulas

logger = logging.getLogger(__name__)

#: Directory name of the shipped generator under ``gapforge/pretrained/``.
DEFAULT_GENERATOR = "gan"


def load_generator(model: str | Path | None = "default") -> FormulaGAN:
    """A saved generator directory, or the shipped one for ``"default"``/``None``.

    Raises:
        ModelError: missing directory or not a generator.
    """
    return FormulaGAN.load(resolve_model_dir(model, DEFAULT_GENERATOR))


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
        model: generator directory or ``"default"``.
        n: samples to draw.
        out: table to write (optional).
        seed: noise seed.
        batch_size: samples per batch.
        decode_rule: override the model's rule (``strict``, ``argmax`` or ``sample``).
        temperature: override the model's softmax temperature (``sample`` rule).
        overwrite: replace an existing output.

    Raises:
        InputError: ``n`` is negative, the output exists without ``overwrite``,
            or the output name has an unknown extension.
    """
    if n < 0:
        raise InputError("number of samples must be >= 0", value=n)
    if batch_size < 1:
        raise InputError("batch size must be >= 1", value=batch_size)
    if out is not None:
        table_format(out)
        if Path(out).exists() and not overwrite:
            raise InputError("output exists (use --overwrite)", path=out)
    gan = load_generator(model)
    if decode_rule is not None or temperature is not None:
        gan = FormulaGAN(
            **{
                **gan.get_params(),
                "decode_rule": decode_rule or gan.decode_rule,
                "temperature": temperature or gan.temperature,
            },
            encoder=gan.encoder,
        )._with_weights_of(gan)
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


__all__ = ["DEFAULT_GENERATOR", "generate_formulas", "load_generator", "summary_path"]
