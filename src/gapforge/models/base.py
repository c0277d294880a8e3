"""The protocol every band-gap predictor follows.

A predictor is fitted on (formulas, band gaps in eV), predicts a mean and a
standard deviation per formula, and round-trips through a model directory::

    model = SomeModel(**params).fit(formulas, gaps)
    table = model.predict(formulas)   # formula, band_gap_mean, band_gap_std, reason
    model.save(directory)
    same = SomeModel.load(directory)

A model directory holds ``model.json`` (``{"kind", "params", "metadata"}``:
hyper-parameters, element vocabulary, versions, seed, training-data
fingerprint, metrics) beside its weights. :func:`gapforge.models.load_model`
reads ``kind`` and dispatches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import pandas as pd

from gapforge.io import atomic_path, file_sha256

MODEL_CARD_FILE = "model.json"
#: ``metadata`` key of ``model.json`` mapping each weights/data file of a model directory to its sha256.
FILES_SHA256_KEY = "files_sha256"


@runtime_checkable
class BandGapModel(Protocol):
    """What every band-gap predictor provides."""

    kind: str

    def fit(self, formulas: Sequence[str], band_gaps: Sequence[float]) -> Self:
        """Fit on formulas and their band gaps (eV); return self."""
        ...

    def predict(self, formulas: Sequence[str]) -> pd.DataFrame:
        """Predict band gaps.

        Returns:
            One row per input formula, in input order, with columns
            ``formula``, ``band_gap_mean`` (eV), ``band_gap_std`` (eV) and
            ``reason`` (empty string, or why the row could not be predicted;
            its mean and std are then NaN).
        """
        ...

    def save(self, directory: str | Path) -> Path:
        """Save to ``directory`` (created; written atomically file by file)."""
        ...

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Load from a directory written by :meth:`save`."""
        ...


def pretrained_dir(name: str) -> Path:
    """Directory of a model shipped inside the package (``gapforge/pretrained/NAME``)."""
    return Path(__file__).resolve().parent.parent / "pretrained" / name


def resolve_model_dir(model: str | Path | None, default_name: str) -> Path:
    """Turn a ``--model`` value into an existing model directory.

    ``None`` and ``"default"`` mean the model shipped in the package under
    ``default_name``.

    Raises:
        ModelError: the directory or its ``model.json`` is missing.
    """
    from gapforge.errors import ModelError

    if model is None or str(model) == "default":
        path = pretrained_dir(default_name)
        if not (path / MODEL_CARD_FILE).is_file():
            raise ModelError(f"the shipped default model {default_name!r} is missing from {path}")
        return path
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(f"{path}: model directory not found")
    if not (path / MODEL_CARD_FILE).is_file():
        raise ModelError(f"{path}: not a gapforge model directory (no {MODEL_CARD_FILE})")
    return path


def rebuild_from_card(
    cls: type,
    directory: str | Path,
    *,
    kind: str,
    format_version: int | tuple[int, ...],
    label: str,
    weights_file: str,
    build: Callable[[dict], object] | None = None,
) -> tuple[object, dict]:
    """Read ``model.json``, check kind and format, rebuild ``cls(**params)``.

    Shared by every model's ``load``: also checks that ``weights_file`` is there and
    that its sha256 is the one recorded in ``model.json`` (:func:`verify_weights`).
    ``format_version`` may list several readable versions; ``build`` (default ``cls(**params)``)
    rebuilds the model from the card's params (a class that reads older layouts).

    Returns:
        The unfitted model and the card (``{"kind", "params", "metadata"}``).

    Raises:
        ModelError: unreadable card, another kind, another format version,
            incompatible parameters, a missing weights file or one whose sha256 differs.
    """
    import json

    from gapforge.errors import ModelError

    directory = Path(directory)
    card_path = directory / MODEL_CARD_FILE
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path}: cannot read model card ({exc})") from exc
    if card.get("kind") != kind:
        raise ModelError(f"{directory}: a {card.get('kind')!r} model, not {kind!r}")
    meta = card.get("metadata", {})
    readable = (format_version,) if isinstance(format_version, int) else tuple(format_version)
    if int(meta.get("format_version", -1)) not in readable:
        raise ModelError(
            f"{directory}: {label} model format {meta.get('format_version')!r}, "
            f"this gapforge reads format {' or '.join(map(str, readable))}"
        )
    try:
        model = cls(**card["params"]) if build is None else build(card["params"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{card_path}: incompatible parameters ({exc})") from exc
    if not (directory / weights_file).is_file():
        raise ModelError(f"{directory}: partial model directory, {weights_file} is missing")
    verify_weights(directory, meta, [weights_file])
    return model, card


def weights_record(directory: str | Path, files: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{"files_sha256": {name: sha256}}`` of the named files of a model directory, for ``model.json``.

    Every model's ``save`` merges this into its card's metadata, and every ``load``
    checks it with :func:`verify_weights` before reading a byte of the weights.
    """
    directory = Path(directory)
    return {FILES_SHA256_KEY: {name: file_sha256(directory / name) for name in files}}


def verify_weights(directory: str | Path, metadata: dict, files: Sequence[str]) -> None:
    """Check the named files of a model directory against the sha256 recorded in ``model.json``.

    The record is ``metadata["files_sha256"][name]``, or for older cards the single
    ``metadata["weights_sha256"]`` of ``metadata["weights_file"]``. A file without a
    record (a model saved before gapforge recorded digests) is loaded with a warning.

    Raises:
        ModelError: a file's sha256 differs from the recorded one (one line naming the file).
    """
    import logging

    from gapforge.errors import ModelError

    directory = Path(directory)
    recorded = dict(metadata.get(FILES_SHA256_KEY) or {})
    if metadata.get("weights_sha256") and metadata.get("weights_file"):
        recorded.setdefault(str(metadata["weights_file"]), str(metadata["weights_sha256"]))
    for name in files:
        path = directory / name
        expected = recorded.get(name)
        if expected is None:
            logging.getLogger(__name__).warning(
                "%s: no sha256 recorded in %s; loaded without verification", path, MODEL_CARD_FILE
            )
            continue
        actual = file_sha256(path)
        if actual != expected:
            raise ModelError(
                f"{path}: sha256 {actual[:12]}... does not match {expected[:12]}... recorded in "
                f"{MODEL_CARD_FILE} (the file is corrupt or was changed; retrain or reinstall the model)"
            )


def dump_skops(
    content: object, directory: str | Path, weights_file: str, **dump_kwargs: Any
) -> dict[str, str]:
    """Write ``content`` to ``directory/weights_file`` with ``skops.io.dump``, atomically.

    Shared by the skops-saved models (the forest, the experimental head); ``dump_kwargs``
    (``compression``, ``compresslevel``) go to ``skops.io.dump`` unchanged, so each keeps
    its own on-disk format.

    Returns:
        ``{"weights_file": name, "weights_sha256": hex}`` for the card's metadata, the
        record :func:`verify_weights` checks on load.
    """
    import skops.io as sio

    path = Path(directory) / weights_file
    with atomic_path(path) as tmp:
        sio.dump(content, tmp, **dump_kwargs)
    return {"weights_file": weights_file, "weights_sha256": file_sha256(path)}


def save_skops_model(
    content: object,
    directory: str | Path,
    *,
    kind: str,
    params: dict[str, Any],
    weights_file: str,
    format_version: int,
    metadata: dict[str, Any],
    **dump_kwargs: Any,
) -> Path:
    """Write a skops-saved model directory: the weights (:func:`dump_skops`), then ``model.json``.

    The card is ``{"kind", "params", "metadata"}``; its metadata holds the format version,
    the weights' sha256 (both records :func:`verify_weights` reads), the scikit-learn and
    skops versions, then ``metadata`` (the model's own entries, which win on a clash).
    Shared by every skops-saved model (the forest, the experimental head, the prototype
    ranker), so their cards cannot drift apart.
    """
    from importlib.metadata import version

    from gapforge.io import write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = dump_skops(content, directory, weights_file, **dump_kwargs)
    card = {
        "kind": kind,
        "params": params,
        "metadata": {
            "format_version": format_version,
            **weights,
            **weights_record(directory, [weights_file]),
            "scikit-learn_version": version("scikit-learn"),
            "skops_version": version("skops"),
            **metadata,
        },
    }
    write_json(card, directory / MODEL_CARD_FILE)
    return directory


def load_skops(path: str | Path, trusted: Sequence[str], *, label: str) -> Any:
    """Read a skops file written by :func:`dump_skops`, rebuilding only the ``trusted`` types.

    Raises:
        ModelError: the file is not skops, holds a type not in ``trusted`` (named), or
            cannot be rebuilt (``label`` names the model in the message).
    """
    import skops.io as sio

    from gapforge.errors import ModelError

    path = Path(path)
    try:
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in trusted]
    except Exception as exc:
        raise ModelError(f"{path}: not a readable skops file ({type(exc).__name__}: {exc})") from exc
    if untrusted:
        raise ModelError(f"{path}: refusing to load untrusted types {', '.join(untrusted)}")
    try:
        return sio.load(path, trusted=list(trusted))
    except Exception as exc:
        raise ModelError(f"{path}: cannot load {label} ({type(exc).__name__}: {exc})") from exc
