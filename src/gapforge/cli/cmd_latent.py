"""``gapforge train autoencoder`` and ``gapforge latent encode|decode|sample|map``."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from gapforge.cli._app import ModelOpt, OverwriteOpt, SeedOpt, WorkersOpt, latent_app, out_option, train_app
from gapforge.cli._policy import (
    SkipBadOpt,
    check_formulas,
    check_table_output,
    refuse_existing,
    refuse_model_reasons,
    usable_formulas,
)
from gapforge.errors import InputError


def _set_threads(workers: int | None) -> None:
    if workers:
        import torch

        torch.set_num_threads(int(workers))


def _check_output(path: Path, overwrite: bool) -> None:
    refuse_existing(path, overwrite=overwrite)


@train_app.command("autoencoder")
def train_autoencoder_cmd(
    out: Annotated[Path, out_option("Model directory to create (model.json and the weights).")],
    arch: Annotated[
        str,
        typer.Option("--arch", help="softmax (per-element softmax decoder, beta-VAE) or paper (reference)."),
    ] = "softmax",
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 30,
    seed: SeedOpt = 0,
    holdout: Annotated[
        float, typer.Option("--holdout", help="Fraction of formulas held out for evaluation.")
    ] = 0.05,
    beta: Annotated[float | None, typer.Option("--beta", help="KL weight (softmax; default 0.01).")] = None,
    latent_noise: Annotated[
        float | None,
        typer.Option(
            "--latent-noise", help="Std of Gaussian noise on the code while training (default: none)."
        ),
    ] = None,
    latent_dim: Annotated[
        int, typer.Option("--latent-dim", help="Latent dimension (numbers per code).")
    ] = 128,
    hidden: Annotated[
        int | None,
        typer.Option("--hidden", help="Width of the set encoder and softmax decoder layers (softmax: 512)."),
    ] = None,
    factor_rank: Annotated[
        int | None,
        typer.Option(
            "--factor-rank",
            help="Rank of the shared element x count factors (softmax default 32; 0 = independent pairs).",
        ),
    ] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option("--lr-schedule", help="constant or cosine (softmax default: cosine)."),
    ] = None,
    kl_warmup: Annotated[
        int | None,
        typer.Option(
            "--kl-warmup",
            help="Epochs over which the KL weight ramps up (default 0: full weight from the start).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Mini-batch size.")] = 128,
    max_formulas: Annotated[
        int | None,
        typer.Option(
            "--max-formulas", help="Train on a random subsample of this many formulas. Default: all."
        ),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="Train on the formulas of this table instead of the MP sets."),
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="Saved weights: float32 or float16.")
    ] = "float32",
    samples: Annotated[
        int, typer.Option("--samples", help="Random latent points per method in the evaluation.")
    ] = 2000,
    workers: WorkersOpt = 1,
    skip_bad: SkipBadOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a composition autoencoder on the distinct encodable Materials Project formulas."""
    from gapforge.models.autoencoder import train_autoencoder

    if arch not in ("softmax", "paper"):
        raise typer.BadParameter(f"unknown architecture {arch!r}", param_hint="--arch")
    if precision not in ("float32", "float16"):
        raise typer.BadParameter(f"unknown precision {precision!r}", param_hint="--precision")
    formulas = None
    if input_file is not None:
        formulas = usable_formulas(input_file, skip_bad=skip_bad)
    params: dict = {"latent_dim": latent_dim, "batch_size": batch_size, "threads": workers}
    if beta is not None:
        params["beta"] = beta
    if latent_noise is not None:
        params["latent_noise"] = latent_noise
    if hidden is not None:
        params["hidden"] = hidden
    if factor_rank is not None:
        params["factor_rank"] = factor_rank
    if lr_schedule is not None:
        if lr_schedule not in ("constant", "cosine"):
            raise typer.BadParameter(f"unknown schedule {lr_schedule!r}", param_hint="--lr-schedule")
        params["lr_schedule"] = lr_schedule
    if kl_warmup is not None:
        params["kl_warmup"] = kl_warmup
    command = "gapforge " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    result = train_autoencoder(
        out,
        arch=arch,  # type: ignore[arg-type]
        epochs=epochs,
        seed=seed,
        holdout=holdout,
        max_formulas=max_formulas,
        formulas=formulas,
        precision=precision,  # type: ignore[arg-type]
        overwrite=overwrite,
        n_samples=samples,
        command=command,
        **params,
    )
    m = result.metrics
    typer.echo(f"saved {result.arch} autoencoder to {result.model_dir}")
    typer.echo(
        f"trained on {result.n_train:,} formulas in {result.seconds:.0f} s ({result.n_heldout:,} held out)"
    )
    if m.get("heldout"):
        h = m["heldout"]
        typer.echo(f"held-out exact reconstruction {h['exact']:.2%}  valid {h['valid']:.2%}")
    for src in ("uniform", "gaussian"):
        s = m[src]
        typer.echo(
            f"{src:<9} points: valid {s['valid']:.2%}  "
            f"SMACT-valid {s['smact_valid']:.2%}  novel {s['novel']:.2%}"
        )


def _read_formulas(path: Path) -> list[str]:
    from gapforge.columns import FORMULA_ALIASES
    from gapforge.io import find_column, read_table

    df = read_table(path)
    if len(df) == 0:
        raise InputError("no data rows", path=path)
    col = find_column(df, FORMULA_ALIASES, what="formula", path=path)
    return df[col].astype(str).tolist()


@latent_app.command("encode")
def latent_encode(
    formulas: Annotated[
        list[str] | None, typer.Argument(metavar="FORMULA", help="Formulas to encode (or use --input).")
    ] = None,
    model: ModelOpt = "default",
    input_file: Annotated[Path | None, typer.Option("--input", help="Table with a formula column.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Output table (.csv/.parquet) or .npy (valid rows only).")
    ] = None,
    skip_bad: SkipBadOpt = False,
    refine_steps: Annotated[
        int | None,
        typer.Option(
            "--refine-steps",
            help="Gradient steps that fix a code not decoding back to its formula "
            "(default: the model's, 100; 0 = the encoder's one-pass code).",
            min=0,
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 1,
) -> None:
    """Encode formulas to latent vectors (columns formula, reduced_formula, reason, z0..z{D-1})."""
    from gapforge.io import atomic_path, write_table
    from gapforge.models.autoencoder import CompositionAutoencoder, encode_table

    _set_threads(workers)
    if bool(formulas) == (input_file is not None):
        raise typer.BadParameter("give formulas as arguments or --input FILE (exactly one)")
    items = list(formulas) if formulas else _read_formulas(input_file)  # type: ignore[arg-type]
    if output is not None and output.suffix.lower() != ".npy":
        check_table_output(output, overwrite=overwrite)
    refuse_existing(output, overwrite=overwrite)
    parsed = check_formulas(items, path=input_file, skip_bad=True)  # first bad row in file order below
    ae = CompositionAutoencoder.load(model)
    if refine_steps is not None:
        ae.refine_steps = refine_steps
    table = encode_table(ae, items)
    reasons = [p or m for p, m in zip(parsed.reasons, table["reason"], strict=True)]
    n_bad = refuse_model_reasons(reasons, items, path=input_file, skip_bad=skip_bad)
    if output is None:
        show = table[["formula", "reduced_formula", "reason", "z0", "z1", "z2"]]
        typer.echo(show.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    elif output.suffix.lower() == ".npy":
        with atomic_path(output) as tmp, tmp.open("wb") as fh:
            np.save(fh, table.loc[table["reason"] == "", [f"z{i}" for i in range(ae.latent_dim)]].to_numpy())
    else:
        write_table(table, output)
    if n_bad:
        typer.echo(f"{n_bad} formula(s) could not be encoded (see the reason column)", err=True)
    if output is not None:
        typer.echo(f"wrote {len(table)} latent vectors to {output}", err=True)


@latent_app.command("decode")
def latent_decode(
    input_file: Annotated[
        Path, typer.Option("--input", help=".npy (N, D) or a table with columns z0..z{D-1}.")
    ],
    model: ModelOpt = "default",
    output: Annotated[Path | None, typer.Option("--output", help="Output table (.csv/.parquet).")] = None,
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 1,
) -> None:
    """Decode latent vectors to formulas (columns formula, valid, smact_valid, novel, reason)."""
    from gapforge.io import write_table
    from gapforge.models.autoencoder import CompositionAutoencoder, decode_table, read_latent_file

    _set_threads(workers)
    if output is not None:
        _check_output(output, overwrite)
    ae = CompositionAutoencoder.load(model)
    z = ae.check_latent(read_latent_file(input_file, ae.latent_dim), path=input_file)
    table = decode_table(ae, z)
    if output is None:
        typer.echo(table.to_string(index=False))
    else:
        write_table(table, output)
        typer.echo(f"wrote {len(table)} decodes to {output} ({table['valid'].mean():.1%} valid)", err=True)


@latent_app.command("sample")
def latent_sample(
    n: Annotated[int, typer.Option("--n", help="Number of latent points.")] = 1000,
    method: Annotated[
        str, typer.Option("--method", help="gaussian (fitted to training codes) or uniform.")
    ] = ("gaussian"),
    model: ModelOpt = "default",
    output: Annotated[
        Path | None, typer.Option("--output", help="Output table (.csv/.parquet) of decodes.")
    ] = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Draw random latent points, decode them and report validity, SMACT validity and novelty."""
    from gapforge.io import write_table
    from gapforge.models.autoencoder import CompositionAutoencoder, decode_table

    if method not in ("gaussian", "uniform"):
        raise typer.BadParameter(f"unknown method {method!r}", param_hint="--method")
    if output is not None:
        _check_output(output, overwrite)
    ae = CompositionAutoencoder.load(model)
    table = decode_table(ae, ae.sample(n, method=method, seed=seed))  # type: ignore[arg-type]
    if output is not None:
        write_table(table, output)
    else:
        typer.echo(table.head(20).to_string(index=False))
    valid = table["valid"]
    typer.echo(
        f"{n} {method} points: valid {valid.mean():.2%}  SMACT-valid {table['smact_valid'].mean():.2%}  "
        f"novel {table.loc[valid, 'novel'].mean() if valid.any() else 0:.2%}",
        err=output is None,
    )


@latent_app.command("map")
def latent_map_cmd(
    out: Annotated[Path, out_option("PNG file of the map.")],
    model: ModelOpt = "default",
    dataset: Annotated[
        str, typer.Option("--dataset", help="Labelled dataset (name or file) for the colours.")
    ] = ("mp-bandgap"),
    tsne: Annotated[
        int, typer.Option("--tsne", help="Also a t-SNE panel of this many random points (0 = no).")
    ] = 0,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 1,
) -> None:
    """PNG of the latent space (PCA, optionally t-SNE) coloured by band gap."""
    from gapforge.data import load_dataset
    from gapforge.models.autoencoder import CompositionAutoencoder
    from gapforge.models.latent_metrics import latent_map

    _set_threads(workers)
    _check_output(out, overwrite)
    if out.suffix.lower() != ".png":
        raise InputError("the latent map is a PNG (use a .png name)", path=out)
    ae = CompositionAutoencoder.load(model)
    df = load_dataset(dataset)
    result = latent_map(ae, df["formula"].tolist(), df["band_gap"].to_numpy(), out, tsne=tsne, seed=seed)
    typer.echo(
        f"wrote {out}: {result.n_points:,} encodings; PC1+PC2 explain "
        f"{sum(result.pca_explained):.1%} of the variance"
    )


@latent_app.command("info")
def latent_info(model: ModelOpt = "default") -> None:
    """Show a saved autoencoder's parameters and recorded metrics."""
    from gapforge.models.autoencoder import CompositionAutoencoder

    ae = CompositionAutoencoder.load(model)
    meta = dict(ae.metadata_)
    meta.pop("latent_bounds", None)
    meta.pop("history", None)
    typer.echo(json.dumps({"path": str(ae.path_), "params": ae.get_params(), "metadata": meta}, indent=2))
