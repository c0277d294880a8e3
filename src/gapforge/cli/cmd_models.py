"""``gapforge train oracle|forest``, ``gapforge predict`` and ``gapforge evaluate``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from gapforge import columns as C
from gapforge.cli._app import ModelOpt, OverwriteOpt, SeedOpt, app, out_option, train_app
from gapforge.cli._policy import (
    SkipBadOpt,
    check_formulas,
    check_table_output,
    choice,
    refuse_existing,
    refuse_model_reasons,
)
from gapforge.io import read_formula_column, write_table

DataOpt = Annotated[
    str, typer.Option("--data", help="Dataset name (gapforge data list) or a labelled CSV/Parquet/JSON file.")
]
HoldoutOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--holdout",
        metavar="DATASET",
        help="Dataset whose formulas are removed before the split and scored after training "
        "(repeatable; default: test-500 when --data is mp-bandgap).",
    ),
]
NoHoldoutOpt = Annotated[bool, typer.Option("--no-holdout", help="Hold nothing out besides the split.")]
SplitOpt = Annotated[str, typer.Option("--split", help="Train/validation/test fractions, comma separated.")]
FidelityOpt = Annotated[
    str,
    typer.Option(
        "--fidelity",
        help="Which gap: pbe (the oracle's PBE gap, the paper's; default) or experiment "
        "(the oracle's experimental-gap head, trained on measured gaps).",
    ),
]
KindOpt = Annotated[
    str, typer.Option("--kind", help="Which shipped model --model default means: oracle (Roost) or forest.")
]


def _holdout(data: str, holdout: list[str] | None, no_holdout: bool) -> list[str]:
    if no_holdout:
        return []
    if holdout:
        return list(holdout)
    return ["test-500"] if data == "mp-bandgap" else []


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise typer.BadParameter(f"expected three fractions summing to 1, got {text!r}", param_hint="--split")
    return parts  # type: ignore[return-value]


def _report_training(result: Any) -> None:
    typer.echo(f"saved {result.kind} model to {result.directory} ({result.seconds:.0f} s of training)")
    typer.echo(f"split sizes: {result.sizes}")
    for part, m in result.metrics.items():
        typer.echo(
            f"{part:<12} n={m['n']:<6} R2={m['r2']:.3f}  MAE={m['mae_eV']:.3f} eV  RMSE={m['rmse_eV']:.3f} eV"
        )


def _train(
    kind: str,
    data: str,
    out: Path,
    seed: int,
    holdout: Any,
    split: str,
    overwrite: bool,
    params: dict[str, Any],
) -> None:
    """Fit, score and save one band-gap model (``train_model``), recording the command line."""
    from gapforge.models.registry import train_model

    result = train_model(
        kind,
        data,
        out,
        seed=seed,
        holdout=holdout,
        fractions=_fractions(split),
        overwrite=overwrite,
        params=params,
        command=shlex.join(["gapforge", *sys.argv[1:]]),
    )
    _report_training(result)


@train_app.command("oracle")
def train_oracle(
    data: DataOpt = "mp-bandgap",
    out: Annotated[Path, out_option("Model directory to create (model.json and the weights).")] = Path(
        "models/oracle"
    ),
    seed: SeedOpt = 0,
    epochs: Annotated[
        int,
        typer.Option(
            "--epochs",
            help="Maximum epochs per ensemble member (the learning rate follows one cosine over them; "
            "~15-20 s per epoch on one core).",
        ),
    ] = 40,
    members: Annotated[int, typer.Option("--members", help="Ensemble members.")] = 3,
    patience: Annotated[int, typer.Option("--patience", help="Early-stopping patience (epochs).")] = 6,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Formulas per training step.")] = 128,
    learning_rate: Annotated[float, typer.Option("--lr", help="AdamW peak learning rate.")] = 1e-3,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads used for training.")] = 1,
    widths: Annotated[
        str,
        typer.Option(
            "--widths",
            help="Network widths: 'compact' (the shipped oracle's) or 'aviary' (aviary's own Roost: "
            "3 heads, 256, 1024/512; ~9 % lower MAE, ~3x slower).",
        ),
    ] = "compact",
    holdout: HoldoutOpt = None,
    no_holdout: NoHoldoutOpt = False,
    split: SplitOpt = "0.8,0.1,0.1",
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a Roost ensemble (aviary) band-gap oracle and save it to --out."""
    from gapforge.errors import InputError
    from gapforge.models.roost import WIDTHS

    if widths not in WIDTHS:
        raise InputError(f"--widths must be one of {', '.join(WIDTHS)}", value=widths)
    params = {
        "epochs": epochs,
        "n_members": members,
        "patience": patience,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "threads": threads,
        **WIDTHS[widths],
    }
    _train("oracle", data, out, seed, _holdout(data, holdout, no_holdout), split, overwrite, params)


@train_app.command("forest")
def train_forest(
    data: DataOpt = "mp-bandgap",
    out: Annotated[Path, out_option("Model directory to create (model.json and the weights).")] = Path(
        "models/forest"
    ),
    seed: SeedOpt = 0,
    estimator: Annotated[
        str,
        typer.Option(
            "--estimator", help="rf (random forest, tree std) or hgb (gradient boosting, quantile std)."
        ),
    ] = "rf",
    n_estimators: Annotated[
        int | None,
        typer.Option(
            "--n-estimators", help="Trees (rf; default 60) or boosting iterations (hgb; default 500)."
        ),
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", help="Boosting learning rate (hgb only; default 0.1).")
    ] = None,
    min_samples_leaf: Annotated[
        int | None,
        typer.Option("--min-samples-leaf", help="Fewest formulas per leaf (rf default 3, hgb default 20)."),
    ] = None,
    max_features: Annotated[
        float | None,
        typer.Option(
            "--max-features", help="Share of the descriptors tried per split, 0-1 (rf default 0.33, hgb 1.0)."
        ),
    ] = None,
    max_leaf_nodes: Annotated[
        int | None,
        typer.Option(
            "--max-leaf-nodes", help="Leaves per tree, 0 = unbounded (rf default 1000, hgb default 63)."
        ),
    ] = None,
    holdout: HoldoutOpt = None,
    no_holdout: NoHoldoutOpt = False,
    split: SplitOpt = "0.8,0.1,0.1",
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a random-forest (or gradient-boosting) model on Magpie descriptors and save it to --out."""
    from gapforge.models.forest import ESTIMATOR_DEFAULTS

    if estimator not in ESTIMATOR_DEFAULTS:
        raise typer.BadParameter(f"unknown estimator {estimator!r} (use hgb or rf)", param_hint="--estimator")
    given = {
        "n_estimators": n_estimators,
        "learning_rate": learning_rate,
        "min_samples_leaf": min_samples_leaf,
        "max_features": max_features,
        "max_leaf_nodes": max_leaf_nodes,
    }
    params: dict[str, Any] = {"estimator": estimator, **ESTIMATOR_DEFAULTS[estimator]}
    params.update({k: v for k, v in given.items() if v is not None})
    if params.get("max_leaf_nodes") == 0:
        params["max_leaf_nodes"] = None
    _train("forest", data, out, seed, _holdout(data, holdout, no_holdout), split, overwrite, params)


@train_app.command("experiment-head")
def train_experiment_head_cmd(
    oracle: Annotated[str, typer.Option("--oracle", help="PBE oracle directory or 'default'.")] = "default",
    data: DataOpt = "expt-gap",
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to save the head (default: ORACLE/experiment).")
    ] = None,
    seed: SeedOpt = 0,
    features: Annotated[
        str, typer.Option("--features", help="magpie+pbe (transfer from the oracle) or magpie.")
    ] = "magpie+pbe",
    recal_folds: Annotated[
        int,
        typer.Option(
            "--recal-folds",
            help="Cross-fit the CDF recalibration over this many folds (0: on validation rows).",
        ),
    ] = 5,
    host_fraction: Annotated[
        float | None,
        typer.Option(
            "--host-fraction",
            help="Leave elements below this share of the atoms out of the order statistics and the "
            "PBE oracle's formula (dopants, e.g. 0.05; default 0: the plain composition).",
        ),
    ] = None,
    target: Annotated[
        str,
        typer.Option("--target", help="What the gap regressor fits: gap (eV) or log1p (of the gap)."),
    ] = "gap",
    regressor_learning_rate: Annotated[
        float | None,
        typer.Option("--regressor-learning-rate", help="The gap regressor's learning rate (default 0.05)."),
    ] = None,
    regressor_max_iter: Annotated[
        int | None,
        typer.Option("--regressor-max-iter", help="The gap regressor's boosting iterations (default 300)."),
    ] = None,
    regressor_max_features: Annotated[
        float | None,
        typer.Option(
            "--regressor-max-features",
            help="Share of the inputs each split of the gap regressor may use, 0-1 (default: all).",
        ),
    ] = None,
    regressor_l2: Annotated[
        float | None,
        typer.Option("--regressor-l2", help="The gap regressor's L2 regularisation (default 0)."),
    ] = None,
    n_bags: Annotated[
        int,
        typer.Option("--n-bags", help="Gap regressors averaged, seeds SEED, SEED+1, ... (default 1)."),
    ] = 1,
    bag_fraction: Annotated[
        float,
        typer.Option(
            "--bag-fraction",
            help="Share of the rows each bagged regressor sees (1: all; then the members differ "
            "through --regressor-max-features only).",
        ),
    ] = 0.8,
) -> None:
    """Fit the experimental-gap head (gradient boosting + metal gate) on measured gaps beside an oracle."""
    from gapforge.errors import InputError, ModelError
    from gapforge.models.boosting import changed_settings
    from gapforge.models.experiment import (
        HEAD_BOOSTER,
        HeadFeatures,
        HeadTarget,
        check_bagging,
        train_experiment_head,
    )

    features = choice("--features", features, HeadFeatures).value
    target = choice("--target", target, HeadTarget).value
    try:
        regressor_booster = changed_settings(
            HEAD_BOOSTER,
            learning_rate=regressor_learning_rate,
            max_iter=regressor_max_iter,
            max_features=regressor_max_features,
            l2_regularization=regressor_l2,
        )
    except ModelError as exc:
        flags = "--regressor-learning-rate / --regressor-max-iter / --regressor-max-features / --regressor-l2"
        raise InputError(f"{flags}: {exc}") from None
    try:
        check_bagging(n_bags, bag_fraction)
    except ModelError as exc:
        raise InputError(f"--n-bags / --bag-fraction: {exc}") from None

    target, head = train_experiment_head(
        oracle,
        data,
        out=out,
        features=features,
        seed=seed,
        recalibration_folds=recal_folds,
        **({"host_fraction": host_fraction} if host_fraction is not None else {}),
        target=target,
        regressor_booster=regressor_booster,
        n_bags=n_bags,
        bag_fraction=bag_fraction,
        command=shlex.join(["gapforge", *sys.argv[1:]]),
    )
    typer.echo(f"saved experimental head to {target} ({head.n_train_} rows, std scale {head.std_scale_:.2f})")


def _echo_predictions(table: Any) -> None:
    """Print a prediction table with units: formula, mean and std (eV), P(metal), fidelity, reason."""
    width = max(len(C.FORMULA), *(len(f) for f in table[C.FORMULA]))
    mean_head, std_head = f"{C.BAND_GAP_MEAN} (eV)", f"{C.BAND_GAP_STD} (eV)"

    def line(formula: str, mean: str, std: str, p: str, fid: str, reason: str) -> str:
        return f"{formula:<{width}}  {mean:>{len(mean_head)}}  {std:>{len(std_head)}}  {p:>7}  {fid:>10}" + (
            f"  {reason}" if reason else ""
        )

    typer.echo(line(C.FORMULA, mean_head, std_head, C.P_METAL, C.FIDELITY, C.REASON))
    for formula, mean, std, p, fid, reason in zip(
        table[C.FORMULA],
        table[C.BAND_GAP_MEAN],
        table[C.BAND_GAP_STD],
        table[C.P_METAL],
        table[C.FIDELITY],
        table[C.REASON],
        strict=True,
    ):
        if reason:
            typer.echo(line(formula, "nan", "nan", "nan", fid, reason))
        else:
            typer.echo(line(formula, f"{mean:.3f}", f"{std:.3f}", f"{p:.3f}", fid, ""))


@app.command("predict")
def predict(
    formulas: Annotated[
        list[str] | None, typer.Argument(metavar="FORMULA", help="Formulas to predict (or use --input).")
    ] = None,
    model: ModelOpt = "default",
    kind: KindOpt = "oracle",
    fidelity: FidelityOpt = "pbe",
    input_path: Annotated[
        Path | None,
        typer.Option("--input", help="CSV/Parquet table with a formula/composition column."),
    ] = None,
    output_path: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="CSV/Parquet/JSON file for the predictions: formula, band_gap_mean and band_gap_std "
            "(eV), p_metal, fidelity, reason. Default: print them.",
        ),
    ] = None,
    skip_bad: SkipBadOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Predict band gaps (eV, mean and std) and P(metal) of formulas or of a table of formulas."""
    from gapforge.models.experiment import Fidelity
    from gapforge.models.registry import predict_formulas

    if fidelity not in tuple(Fidelity):
        raise typer.BadParameter(f"use {' or '.join(Fidelity)}", param_hint="--fidelity")
    if input_path is not None and formulas:
        raise typer.BadParameter("give formulas or --input, not both")
    if input_path is None and not formulas:
        raise typer.BadParameter("give one or more formulas, or --input FILE")
    check_table_output(output_path, overwrite=overwrite)
    values = read_formula_column(input_path) if input_path is not None else list(formulas or [])
    checked = check_formulas(values, path=input_path, skip_bad=True)  # first bad row in file order below
    usable = [i for i, why in enumerate(checked.reasons) if not why]
    pred = predict_formulas([values[i] for i in usable], model, kind, fidelity)
    out = pd.DataFrame(
        {
            C.FORMULA: values,
            C.BAND_GAP_MEAN: np.nan,
            C.BAND_GAP_STD: np.nan,
            C.P_METAL: np.nan,
            C.FIDELITY: str(fidelity),
            C.REASON: list(checked.reasons),
        }
    )
    for col in (C.BAND_GAP_MEAN, C.BAND_GAP_STD, C.P_METAL, C.REASON):
        out.loc[usable, col] = pred[col].to_numpy()
    n_bad = refuse_model_reasons(out[C.REASON], values, path=input_path, skip_bad=skip_bad)
    if output_path is not None:
        write_table(out, output_path)
        typer.echo(f"wrote {len(out)} predictions to {output_path}", err=True)
    else:
        _echo_predictions(out)
    if n_bad:
        typer.echo(f"{n_bad} of {len(out)} formulas could not be predicted (see the reason column)", err=True)


@app.command("evaluate")
def evaluate(
    data: DataOpt = "test-500",
    model: ModelOpt = "default",
    kind: KindOpt = "oracle",
    out: Annotated[
        Path | None, typer.Option("--out", help="Parity plot to write (.png). Default: no plot.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Score a model on a labelled dataset: R², MAE, RMSE (eV) and an optional parity plot."""
    from gapforge.models.registry import evaluate_model

    refuse_existing(out, overwrite=overwrite)

    ev = evaluate_model(model, data, out=out, kind=kind)
    m = ev.metrics
    typer.echo(f"n      {m.n}" + (f"  ({m.n_missing} not predictable)" if m.n_missing else ""))
    typer.echo(f"R2     {m.r2:.4f}")
    typer.echo(f"MAE    {m.mae:.4f} eV")
    typer.echo(f"RMSE   {m.rmse:.4f} eV")
    if m.within_1sigma == m.within_1sigma:  # not NaN
        typer.echo(f"|err| <= 1 std: {m.within_1sigma:.1%}   <= 2 std: {m.within_2sigma:.1%}")
    if ev.plot is not None:
        typer.echo(f"parity plot: {ev.plot}")
