"""``gapforge train gan|rnn``, ``gapforge generate`` and ``gapforge screen``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gapforge.cli._app import (
    ExecutorOpt,
    OverwriteOpt,
    SeedOpt,
    app,
    executor_settings,
    out_option,
    train_app,
)
from gapforge.cli._policy import (
    SkipBadOpt,
    check_formulas,
    check_table_output,
    refuse_existing,
    usable_formulas,
)

# options shared by the generator trainers
TrainSetOpt = Annotated[
    str, typer.Option("--train-set", help="'smact-valid' (MATGAN's choice) or 'all' encodable MP formulas.")
]
NEvalOpt = Annotated[int, typer.Option("--n-eval", help="Samples drawn to measure quality.")]
TrainFormulasOpt = Annotated[
    Path | None,
    typer.Option("--input", help="Train on this formula table instead of the Materials Project formulas."),
]


def _echo_trained(result) -> None:
    """The trainer's summary line: where the model went and its sample quality."""
    q = result.quality
    typer.echo(f"saved {result.directory}")
    typer.echo(
        f"{q.n_samples} samples: decodable {q.decodable:.1%}, unique {q.unique:.1%}, "
        f"novel {q.novel:.1%}, SMACT-valid {q.smact_valid:.1%}"
    )


@train_app.command("gan")
def train_gan_cmd(
    out: Annotated[Path, out_option("Model directory to create (model.json and the weights).")],
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 10,
    seed: SeedOpt = 0,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes", help="Stop training after this wall time (minutes). Default: no limit."
        ),
    ] = None,
    train_set: TrainSetOpt = "smact-valid",
    n_eval: NEvalOpt = 50_000,
    fake_samples: Annotated[
        str,
        typer.Option(
            "--fake-samples",
            help="What the critic sees: 'gumbel' (one-hot draws, straight-through; default) or 'soft' "
            "(softmax probabilities, MATGAN's).",
        ),
    ] = "gumbel",
    decode: Annotated[
        str | None,
        typer.Option(
            "--decode", help="Default decoding rule saved with the model (gumbel: sample; soft: strict)."
        ),
    ] = None,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Softmax temperature of the sample rule.")
    ] = 1.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Formulas per critic step.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate of both networks.")] = 3e-4,
    input_file: TrainFormulasOpt = None,
    skip_bad: SkipBadOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train the MATGAN-style formula generator (WGAN-GP) on the Materials Project formulas."""
    from gapforge.models.gan import train_gan

    result = train_gan(
        out,
        formulas=None if input_file is None else usable_formulas(input_file, skip_bad=skip_bad),
        epochs=epochs,
        seed=seed,
        max_minutes=max_minutes,
        train_set=train_set,
        n_eval=n_eval,
        overwrite=overwrite,
        fake_samples=fake_samples,
        decode_rule=decode or ("sample" if fake_samples == "gumbel" else "strict"),
        temperature=temperature,
        batch_size=batch_size,
        lr=lr,
    )
    _echo_trained(result)


@train_app.command("rnn")
def train_rnn_cmd(
    out: Annotated[Path, out_option("Model directory to create (model.json and the weights).")],
    epochs: Annotated[
        int, typer.Option("--epochs", help="Training epochs (the best held-out one is kept).")
    ] = 30,
    seed: SeedOpt = 0,
    train_set: TrainSetOpt = "smact-valid",
    hidden: Annotated[int, typer.Option("--hidden", help="GRU state size.")] = 128,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Sampling temperature saved with the model.")
    ] = 1.25,
    n_eval: NEvalOpt = 50_000,
    input_file: TrainFormulasOpt = None,
    skip_bad: SkipBadOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train the autoregressive formula generator (a GRU writing element, count, ..., stop)."""
    from gapforge.models.formula_rnn import train_rnn_generator

    result = train_rnn_generator(
        out,
        formulas=None if input_file is None else usable_formulas(input_file, skip_bad=skip_bad),
        epochs=epochs,
        seed=seed,
        train_set=train_set,
        hidden=hidden,
        temperature=temperature,
        n_eval=n_eval,
        overwrite=overwrite,
    )
    _echo_trained(result)


@app.command("generate")
def generate_cmd(
    out: Annotated[
        Path,
        out_option(
            "Table of the distinct formulas (.parquet or .csv: formula, n_generated, n_atoms, "
            "n_elements); the counts go to <stem>.summary.json beside it."
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Generator: 'default' (= 'rnn', the autoregressive one), 'gan' (MATGAN-style) or a "
            "saved model directory.",
        ),
    ] = "default",
    n: Annotated[
        int, typer.Option("-n", "--n-samples", help="Samples to draw from the generator (at least 1).")
    ] = 1_180_000,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per batch.")] = 16_384,
    decode: Annotated[
        str | None,
        typer.Option(
            "--decode",
            help="GAN decoding rule: sample (its default), strict (the paper's) or argmax; "
            "the RNN only samples.",
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            help="Sampling temperature. Default: the one saved with the model (rnn 1.25, gan 1.0).",
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Generate hypothetical formulas; decode and de-duplicate them (one row per distinct formula)."""
    from gapforge.screening.generate import generate_formulas

    result = generate_formulas(
        model,
        n,
        out=out,
        seed=seed,
        batch_size=batch_size,
        decode_rule=decode,
        temperature=temperature,
        overwrite=overwrite,
    )
    s = result.stats
    typer.echo(
        f"{s.n_samples} samples -> {s.n_decodable} decodable ({s.decodable_fraction:.1%}) -> "
        f"{s.n_unique} distinct formulas in {s.seconds:.1f} s; wrote {out}"
    )


@app.command("screen")
def screen_cmd(
    input_file: Annotated[Path, typer.Option("--input", help="Table of formulas (CSV or Parquet).")],
    out: Annotated[
        Path,
        out_option(
            "Candidate table (.csv or .parquet); <stem>.screened<ext> and <stem>.funnel.json go beside it."
        ),
    ],
    gap_min: Annotated[float, typer.Option("--gap-min", help="Lowest predicted band gap kept (eV).")],
    gap_max: Annotated[
        float | None,
        typer.Option("--gap-max", help="Highest predicted band gap kept (eV). Default: no upper edge."),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Band-gap model directory, or 'default' for the random forest shipped in the package.",
        ),
    ] = "default",
    max_atoms: Annotated[
        int, typer.Option("--max-atoms", help="Keep formulas with fewer atoms per reduced formula unit.")
    ] = 8,
    max_elements: Annotated[
        int, typer.Option("--max-elements", help="Keep formulas with fewer distinct elements.")
    ] = 4,
    no_smact: Annotated[bool, typer.Option("--no-smact", help="Do not require SMACT validity.")] = False,
    keep_known: Annotated[bool, typer.Option("--keep-known", help="Do not require novelty.")] = False,
    known_file: Annotated[
        Path | None,
        typer.Option(
            "--known", help="Formulas that are not novel (default: every Materials Project formula)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Formulas per prediction batch.")] = 100_000,
    exclude_elements: Annotated[
        str | None,
        typer.Option(
            "--exclude-elements",
            help="Comma-separated elements whose formulas are dropped (default: radioactive elements "
            "and noble gases; 'none' keeps every element).",
        ),
    ] = None,
    skip_bad: SkipBadOpt = False,
    overwrite: OverwriteOpt = False,
    fidelity: Annotated[
        str,
        typer.Option(
            "--fidelity",
            help="pbe (default: the screening model's PBE gaps) or experiment (the oracle's "
            "experimental-gap head; --model then names the oracle; ~10x slower).",
        ),
    ] = "pbe",
    executor: ExecutorOpt = None,
) -> None:
    """Predict band gaps and filter: elements, gap window, simplicity, SMACT validity, novelty.

    With --executor, each prediction batch (PBE fidelity) is a task on the executor's workers.
    """
    from gapforge.screening.rules import parse_element_list
    from gapforge.screening.screen import (
        ScreenSettings,
        funnel_path,
        read_formula_column,
        screen_file,
        screened_path,
    )
    from gapforge.window import GapWindow

    check_table_output(out, overwrite=overwrite)
    refuse_existing(screened_path(out), funnel_path(out), overwrite=overwrite)
    checked = check_formulas(read_formula_column(input_file), path=input_file, skip_bad=skip_bad)

    settings = ScreenSettings(
        window=GapWindow(gap_min, gap_max),
        max_atoms=max_atoms,
        max_elements=max_elements,
        require_smact=not no_smact,
        require_novel=not keep_known,
        batch_size=batch_size,
        **({} if exclude_elements is None else {"exclude_elements": parse_element_list(exclude_elements)}),
    )
    known = None if known_file is None else read_formula_column(known_file)
    result = screen_file(
        input_file,
        out,
        model=model,
        settings=settings,
        known=known,
        overwrite=overwrite,
        fidelity=fidelity,
        executor=None if executor is None else executor_settings(executor),
    )
    typer.echo(json.dumps(result.funnel, indent=1))
    if result.n_candidates == 0:
        typer.echo("no formula passed every filter; wrote an empty candidate table with headers", err=True)
    if checked.n_bad:
        typer.echo(
            f"{checked.n_bad} formulas could not be used (see dropped_by in {screened_path(out)})", err=True
        )
    typer.echo(f"{result.n_candidates} candidates; wrote {out} and {result.summary_path}")
