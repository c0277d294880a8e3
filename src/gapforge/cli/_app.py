"""The Typer application objects shared by every sub-command module.

Sub-command modules are the ``gapforge.cli.cmd_*`` modules; each registers its
commands on :data:`app` or on one of the sub-applications below and stays a
thin call into one public library function. The library logs; only the CLI
prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="gapforge",
    help="Discover inorganic materials with a target band gap by active-learning-based generative design.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: no '<bool>' metavar after a flag
)
data_app = typer.Typer(help="Inspect the datasets.", no_args_is_help=True, rich_markup_mode=None)
train_app = typer.Typer(
    help="Train a model: oracle (Roost), forest, autoencoder, gan or rnn.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
latent_app = typer.Typer(
    help="Encode formulas to the autoencoder's latent space and back.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
campaign_app = typer.Typer(
    help="Run, resume or drive (ask/tell) an active-learning campaign.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
reproduce_app = typer.Typer(
    help="Reproduce the paper's experiments.", no_args_is_help=True, rich_markup_mode=None
)

app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(latent_app, name="latent")
app.add_typer(campaign_app, name="campaign")
app.add_typer(reproduce_app, name="reproduce")

# Options that mean the same in every sub-command.
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (an integer; same seed, same result).")]
#: --out of commands whose --out is a directory they create (help says what goes in it where it matters).
OutOpt = Annotated[Path, typer.Option("--out", help="Output directory (created).")]


def out_option(help_text: str) -> Any:
    """An ``--out`` option with its own help (what the file or directory holds)."""
    return typer.Option("--out", help=help_text)


#: --workers of commands that run torch in this process: the number of torch threads.
WorkersOpt = Annotated[int, typer.Option("--workers", help="Torch threads used by this command.")]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace an existing output (without it an existing output is refused)."
    ),
]
ExecutorOpt = Annotated[
    Path | None,
    typer.Option(
        "--executor",
        help="Executor settings file (TOML/JSON/YAML with an executor table, or its keys alone): where the "
        "heavy tasks run (serial, local, dask, slurm, pbs). Not part of a run's settings.",
    ),
]
ModelOpt = Annotated[
    str,
    typer.Option("--model", help="Saved model directory, or 'default' for the model shipped in the package."),
]


def executor_settings(executor_file: Path | None, workers: int | None = None):
    """``--executor FILE`` (its worker count replaced by ``--workers`` if given), else ``--workers``.

    ``--workers`` of the task-running commands: 1 runs in this process, N on N local
    Dask workers, 0 or none on every core.
    """
    from gapforge.executor import ExecutorSettings, load_executor_settings

    if executor_file is None:
        return ExecutorSettings.from_workers(workers)
    return load_executor_settings(executor_file).with_workers(workers or None)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only log warnings and errors.")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # Dask's scheduler runs in this process: its routine messages only with --verbose.
    # distributed sets its loggers' levels from dask's config when it is first imported,
    # which happens later (with the first executor), so the level goes into that config too.
    import dask.config

    dask.config.set({"logging.distributed": "debug" if verbose else "warning"})
    logging.getLogger("distributed").setLevel(logging.DEBUG if verbose else logging.WARNING)
