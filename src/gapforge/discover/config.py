"""Settings of ``gapforge discover``: one frozen dataclass per stage, two presets.

A configuration is resolved in three layers, each overriding the previous:

1. the preset (``"default"``: the real campaign; ``"quick"``: small budgets that
   finish in minutes on two cores with the shipped pretrained models);
2. an optional settings file (TOML, JSON or YAML) with the same nesting as
   :meth:`DiscoverConfig.to_dict`, e.g.::

       gap_min = 3.0
       [campaign]
       iterations = 20
       [screen]
       max_atoms = 7

3. the command-line flags (``--gap-min``, ``--gap-max``, ``--seed``, ``--quick``).

The target window is one :class:`~gapforge.window.GapWindow` (``cfg.window``), written
as the top-level ``gap_min``/``gap_max`` keys of files and of ``config.json``. The
settings whose meaning belongs to a stage's own module take their defaults from it,
so they cannot drift apart: the campaign's ``validity``/``compounds`` from
:mod:`gapforge.screening.rules` (as ``gapforge campaign`` does), the screen's filters
from :class:`~gapforge.screening.screen.ScreenSettings`.

The resolved configuration is written to ``RUN/config.json``; a run directory is
only resumed with the same configuration. Where the heavy stages run is not part
of it: the file's ``[executor]`` section (or ``--executor FILE``) is read by
:func:`resolve_executor` into :class:`~gapforge.executor.ExecutorSettings`, so a
run directory resumes on a laptop or a cluster alike.

Example:
    >>> cfg = resolve_config(gap_min=4.0, quick=True)
    >>> cfg.preset, cfg.campaign.iterations, str(cfg.window)
    ('quick', 5, '≥ 4.00 eV')
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapforge.errors import InputError
from gapforge.screening.rules import (
    DEFAULT_COMPOUND_RULE,
    DEFAULT_EXCLUDED_ELEMENTS,
    DEFAULT_VALIDITY,
    CompoundRule,
    Validity,
    check_elements,
)
from gapforge.screening.screen import ScreenSettings
from gapforge.window import GapWindow

PRESETS = ("default", "quick")
#: screening models: the oracle itself (default), or one trained on the initial + campaign labels
SCREENING_KINDS = ("oracle", "forest", "roost")


def _screen_default(name: str) -> Any:
    return ScreenSettings.__dataclass_fields__[name].default


@dataclass(frozen=True)
class DataSettings:
    """Where the labelled data come from.

    Attributes:
        dataset: labelled set (name such as ``mp-bandgap`` or a CSV/Parquet path
            with ``formula`` and ``band_gap`` columns); it is also the set of
            known formulas for the novelty filter and the pool the initial
            labelled set is drawn from.
        initial: an explicit initial labelled set (name such as ``init-300``, or
            a path); ``None`` draws ``n_initial`` formulas from ``dataset``.
        n_initial: size of the drawn initial set (the paper's Exp 3 uses 300).
        n_holdout: formulas of ``dataset`` kept out of every training set to
            score the screening model (parity plot).
        known: formulas that are not novel in the screen: ``"default"`` (every
            Materials Project formula + ``dataset``) or a table (name or path) with a
            formula column, used with ``dataset`` (the rediscovery benchmark passes one
            without its held-out chemical systems).
    """

    dataset: str = "mp-bandgap"
    initial: str | None = None
    n_initial: int = 300
    n_holdout: int = 2000
    known: str = "default"


@dataclass(frozen=True)
class ModelSettings:
    """Which models to use: a model directory, or ``"default"`` for the shipped one.

    Attributes:
        oracle: band-gap oracle that labels the campaign's proposals (Roost).
        autoencoder: composition autoencoder that defines the latent space.
        generator: formula generator (``default`` = ``rnn``, the autoregressive one; ``gan``).
        fidelity: which gap the oracle labels and the window means: ``pbe`` (default,
            the paper's) or ``experiment`` (the oracle's experimental-gap head; the
            initial and hold-out labels are then the oracle's experimental predictions).
    """

    oracle: str = "default"
    autoencoder: str = "default"
    generator: str = "default"
    fidelity: str = "pbe"


@dataclass(frozen=True)
class CampaignSettings:
    """The active-learning campaign (GP surrogate + UCB in latent space).

    Attributes:
        iterations: acquisition rounds.
        batch_size: latent points proposed per round (decoded, then labelled).
        kappa: UCB exploration weight (paper: 10; BoTorch beta = kappa**2).
        n_pool: points of the latent map drawn for context (labelled set only).
        validity: what a proposal must decode to before the oracle labels it:
            ``smact`` (a SMACT-valid formula; default) or ``decodable`` (any formula,
            the paper's rule, under which a wide-gap campaign labels charge-imbalanced
            H-F formulas the oracle scores at ~8 eV; see
            ``benchmarks/results/table1_roost_rnnpool_smact/NOTE.md``).
        compounds: which decodes are labelled (``no-intermetallics``: at least two
            elements, not all metals; ``compounds``; ``any``); see :mod:`gapforge.screening.rules`.
        num_restarts: optimiser restarts per proposal; each slot labels the best
            restart that decodes to an admissible new formula, so more restarts
            mean fewer slots without a label.
    """

    iterations: int = 100
    batch_size: int = 10
    kappa: float = 10.0
    n_pool: int = 2000
    validity: str = str(DEFAULT_VALIDITY)
    compounds: str = str(DEFAULT_COMPOUND_RULE)
    num_restarts: int = 12


@dataclass(frozen=True)
class ScreeningModelSettings:
    """The model that screens the generated formulas.

    Attributes:
        kind: ``"oracle"`` (default: the oracle itself, ``models.oracle``, the best model
            available: on the rediscovery benchmark it ranks held-out materials far above a
            model trained on the campaign's few hundred labels, see
            ``benchmarks/results/rediscovery/NOTE.md``), or the paper's route, a model
            trained on the initial + campaign-labelled set: ``"forest"`` (random
            forest on Magpie features) or ``"roost"``.
        n_estimators: trees of the forest.
    """

    kind: str = "oracle"
    n_estimators: int = 300


@dataclass(frozen=True)
class GenerateSettings:
    """The formula generator's budget.

    Attributes:
        n_samples: samples drawn (the paper generated 1.18 M formulas).
        batch_size: samples per batch.
    """

    n_samples: int = 1_000_000
    batch_size: int = 16_384


@dataclass(frozen=True)
class ScreenStageSettings:
    """The filters of the screen; defaults are those of :class:`~gapforge.screening.screen.ScreenSettings`.

    Attributes:
        max_atoms: keep formulas with *fewer* atoms per reduced formula (paper: 8).
        max_elements: keep formulas with *fewer* distinct elements (paper: 4).
        require_smact: keep only SMACT-valid formulas (charge neutrality and
            electronegativity).
        require_novel: drop formulas that are known (every Materials Project
            formula and every formula of the labelled dataset, or ``data.known``).
        max_std: drop predictions whose standard deviation (eV) exceeds this.
        top: candidates kept, best first (highest probability that the gap lies in
            the window), for the structure stage and the report.
    """

    max_atoms: int = _screen_default("max_atoms")
    max_elements: int = _screen_default("max_elements")
    require_smact: bool = _screen_default("require_smact")
    require_novel: bool = _screen_default("require_novel")
    max_std: float | None = _screen_default("max_std")
    top: int = 100

    def to_settings(self, window: GapWindow, exclude_elements: tuple[str, ...]) -> ScreenSettings:
        """The :class:`ScreenSettings` of this run."""
        return ScreenSettings(
            window=window,
            max_atoms=self.max_atoms,
            max_elements=self.max_elements,
            require_smact=self.require_smact,
            require_novel=self.require_novel,
            exclude_elements=exclude_elements,
            max_std=self.max_std,
            top=self.top,
        )


@dataclass(frozen=True)
class StructureStageSettings:
    """Template search, substitution and CHGNet relaxation.

    Attributes:
        max_candidates: top candidates of the screen given a structure.
        templates: templates relaxed per candidate (distinct prototypes by ElMD and
            prototype frequency); the first-ranked is kept unless another relaxed lower by
            more than ``structure.selection.SELECTION_MARGIN`` eV/atom.
        relax_steps: most FIRE steps of each relaxation.
        fmax: force convergence criterion (eV/Å).
        selection_energy: whose energy compares the relaxed templates: ``chgnet`` (the
            relaxation's own) or ``sevennet-0`` (SevenNet-0 re-scores each CHGNet-relaxed
            structure; needs the ``sevennet`` extra). See ``structure.rescore.SelectionEnergy``.
        volume_method: first volume of a substituted template: ``rls`` (radius ratios
            against the template), ``increments`` (the library's per-element volume
            increments) or ``none``. See ``structure.substitution.SubstitutionSettings``.

    Where the relaxations run (and on how many workers) is the ``[executor]``
    section's business, not a scientific setting.
    """

    max_candidates: int = 30
    templates: int = 5
    relax_steps: int = 500
    fmax: float = 0.05
    selection_energy: str = "chgnet"
    volume_method: str = "rls"


@dataclass(frozen=True)
class DftStageSettings:
    """Optional DFT band gaps (GPAW, PBE) of the most promising relaxed structures.

    Attributes:
        enabled: try the stage (it is skipped with a reason when GPAW is missing).
        top: structures computed, lowest energy above hull first.
    """

    enabled: bool = True
    top: int = 5


@dataclass(frozen=True)
class DiscoverConfig:
    """Everything ``gapforge discover`` needs; saved as ``RUN/config.json``.

    Attributes:
        window: the target band-gap window (files and ``config.json``: top-level
            ``gap_min`` and ``gap_max`` in eV; no ``gap_max``: an open window).
        seed: seed of every random choice of the run.
        preset: ``"default"`` or ``"quick"``: where the unset values came from.
        exclude_elements: elements no campaign proposal, generated formula or
            candidate may contain (default: radioactive elements and noble gases,
            :data:`~gapforge.screening.rules.DEFAULT_EXCLUDED_ELEMENTS`; ``[]`` keeps all).
    """

    window: GapWindow
    seed: int = 0
    preset: str = "default"
    exclude_elements: tuple[str, ...] = DEFAULT_EXCLUDED_ELEMENTS
    data: DataSettings = field(default_factory=DataSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    campaign: CampaignSettings = field(default_factory=CampaignSettings)
    screening_model: ScreeningModelSettings = field(default_factory=ScreeningModelSettings)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    screen: ScreenStageSettings = field(default_factory=ScreenStageSettings)
    structure: StructureStageSettings = field(default_factory=StructureStageSettings)
    dft: DftStageSettings = field(default_factory=DftStageSettings)

    def __post_init__(self) -> None:
        _check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-ready); the window as top-level ``gap_min``/``gap_max``."""
        d = dataclasses.asdict(self)
        d.pop("window")
        d["exclude_elements"] = list(self.exclude_elements)
        return {**self.window.to_dict(), **d}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None) -> DiscoverConfig:
        """Build from a nested mapping (top-level ``gap_min``/``gap_max``), checking every key and type.

        Raises:
            InputError: unknown key, wrong type or out-of-range value (names ``source``).
        """
        if not isinstance(data, Mapping):
            raise InputError("settings must be a table of settings", path=source, value=data)
        data = dict(data)
        if "window" in data:
            raise InputError("give the window as gap_min and gap_max", path=source, value="window")
        if data.get("gap_min") is None:
            raise InputError("no target band gap: give gap_min (eV)", path=source)
        lo, hi = data.pop("gap_min"), data.pop("gap_max", None)
        for name, v in (("gap_min", lo), ("gap_max", hi)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise InputError(f"setting {name} must be a number (eV)", path=source, value=v)
        try:
            window = GapWindow(lo, hi)
        except InputError as exc:
            raise InputError(f"setting {exc.message}", path=source, value=exc.value) from None
        return _build(cls, {**data, "window": window}, prefix="", source=source)


#: Values that differ from the defaults in the ``quick`` preset (small budgets).
QUICK_PRESET: dict[str, dict[str, Any]] = {
    "data": {"n_initial": 300, "n_holdout": 500},
    "campaign": {"iterations": 5, "batch_size": 10, "n_pool": 500},
    "screening_model": {"n_estimators": 100},
    "generate": {"n_samples": 50_000},
    # every one of the (at most screen.top) ranked discoveries gets a structure and an energy
    # above hull: a discovery without one cannot be judged stable or not. 40, not 20: on the
    # rediscovery benchmark, relaxing the screen's top 40 and ranking by P(in window) x P(stable)
    # put more held-out materials with the asked gap into the first 20 than relaxing only the top
    # 20 (2-3 eV: +0.8 +- 0.45 per draw, ahead in 4 of 5; >= 4 eV: +0 +- 0.7;
    # benchmarks/results/rediscovery/NOTE.md, "The pool")
    "screen": {"top": 40},
    "structure": {"max_candidates": 40, "templates": 1, "relax_steps": 150, "fmax": 0.1},
    "dft": {"enabled": False, "top": 1},
}


def resolve_config(
    *,
    gap_min: float | None = None,
    gap_max: float | None = None,
    seed: int | None = None,
    quick: bool = False,
    config_file: str | Path | None = None,
    fidelity: str | None = None,
) -> DiscoverConfig:
    """Preset, then settings file, then explicit arguments -> a checked configuration.

    Args:
        gap_min: lower edge of the window (eV); required here or in the file.
        gap_max: upper edge (eV); ``None`` keeps the file's value (or an open window).
        seed: run seed; ``None`` keeps the file's value (or 0).
        quick: use the ``quick`` preset (also selectable as ``preset = "quick"`` in the file).
        config_file: TOML, JSON or YAML settings file.
        fidelity: ``pbe`` or ``experiment``; ``None`` keeps the file's value (or ``pbe``).

    Raises:
        InputError: unreadable file, unknown key, bad value, or no ``gap_min``.
    """
    file_values: dict[str, Any] = {} if config_file is None else read_config_file(config_file)
    file_values.pop(EXECUTOR_SECTION, None)  # where tasks run: not a scientific setting
    structure = file_values.get("structure")
    if isinstance(structure, dict) and "workers" in structure:
        raise InputError(
            "structure.workers moved to the [executor] section (workers = N): where the "
            "relaxations run is not part of the run's settings",
            path=config_file,
        )
    preset = "quick" if quick else str(file_values.get("preset", "default"))
    if preset not in PRESETS:
        raise InputError(f"unknown preset (use {' or '.join(PRESETS)})", path=config_file, value=preset)
    merged: dict[str, Any] = {"preset": preset}
    if preset == "quick":
        merged = _merge(merged, QUICK_PRESET)
    merged = _merge(merged, file_values)
    merged["preset"] = preset
    if gap_min is not None:
        merged["gap_min"] = gap_min
    if gap_max is not None:
        merged["gap_max"] = gap_max
    if seed is not None:
        merged["seed"] = seed
    if fidelity is not None:
        merged = _merge(merged, {"models": {"fidelity": fidelity}})
    if "gap_min" not in merged:
        raise InputError(
            "no target band gap: give --gap-min (or gap_min in the settings file)", path=config_file
        )
    return DiscoverConfig.from_dict(merged, source=config_file)


#: Section of a settings file that says where the heavy stages run (not in config.json).
EXECUTOR_SECTION = "executor"


def resolve_executor(
    *, config_file: str | Path | None = None, executor_file: str | Path | None = None
) -> Any:
    """Executor settings: ``--executor FILE``, else the settings file's ``[executor]``, else the default.

    Returns:
        :class:`~gapforge.executor.ExecutorSettings` (default: a local Dask cluster on every core).

    Raises:
        InputError: unreadable file or bad executor setting.
    """
    from gapforge.executor import ExecutorSettings, executor_settings_from_dict, load_executor_settings

    if executor_file is not None:
        return load_executor_settings(executor_file)
    if config_file is not None:
        section = read_config_file(config_file).get(EXECUTOR_SECTION)
        if section is not None:
            return executor_settings_from_dict(section, source=config_file)
    return ExecutorSettings()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``), JSON (``.json``) or YAML (``.yaml``/``.yml``) settings file.

    Raises:
        InputError: missing, unreadable or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("settings file not found", path=path)
    suffix = path.suffix.lower()
    text = path.read_text()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            from ruamel.yaml import YAML

            data = YAML(typ="safe").load(text)
        else:
            raise InputError("unsupported settings file (use .toml, .json, .yaml or .yml)", path=path)
    except InputError:
        raise
    except Exception as exc:  # each parser has its own error type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot parse settings file ({first})", path=path) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("settings file must hold a mapping of settings", path=path)
    return data


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out.extend(config_differences(va, vb, f"{name}."))
        elif va != vb:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(cls: type, data: Mapping[str, Any], *, prefix: str, source: str | Path | None) -> Any:
    if not isinstance(data, Mapping):
        raise InputError(
            f"setting {prefix.rstrip('.')!r} must be a table of settings", path=source, value=data
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(
            f"unknown setting (known: {', '.join(sorted(names))})", path=source, value=f"{prefix}{unknown[0]}"
        )
    kwargs = {}
    for name, value in data.items():
        if isinstance(value, GapWindow):
            kwargs[name] = value
            continue
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}", source)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise InputError(f"incomplete settings ({exc})", path=source) from exc
    except InputError as exc:  # a value out of range: name the settings file
        if source is None or exc.path is not None:
            raise
        raise InputError(exc.message, path=source, value=exc.value) from exc


def _coerce(hint: Any, value: Any, name: str, source: str | Path | None) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{name}.", source=source)
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name, source)
    bad = InputError(f"setting {name} must be {getattr(hint, '__name__', hint)}", path=source, value=value)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
            raise bad
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if typing.get_origin(hint) is tuple:  # tuple[str, ...]: a list of strings in a file
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise InputError(f"setting {name} must be a list", path=source, value=value)
        if not all(isinstance(v, str) for v in value):
            raise InputError(f"setting {name} must be a list of strings", path=source, value=value)
        return tuple(value)
    raise bad  # pragma: no cover - every field has one of the types above


def _check_config(cfg: DiscoverConfig) -> None:
    def fail(name: str, message: str, value: Any) -> None:
        raise InputError(f"setting {name} {message}", value=value)

    if not isinstance(cfg.window, GapWindow):
        fail("window", "must be a GapWindow", cfg.window)
    try:
        object.__setattr__(cfg, "exclude_elements", check_elements(cfg.exclude_elements))
    except InputError as exc:
        fail("exclude_elements", f"holds {exc.message}", exc.value)
    if cfg.preset not in PRESETS:
        fail("preset", f"must be one of {', '.join(PRESETS)}", cfg.preset)
    if cfg.seed < 0:
        fail("seed", "must be >= 0", cfg.seed)
    if cfg.models.fidelity not in ("pbe", "experiment"):
        fail("models.fidelity", "must be pbe or experiment", cfg.models.fidelity)
    # the values of structure.rescore.SelectionEnergy (not imported here: it loads pymatgen)
    selection_energies = ("chgnet", "sevennet-0", "sevennet-l3i5")
    if cfg.structure.selection_energy not in selection_energies:
        fail(
            "structure.selection_energy",
            "must be " + " or ".join(selection_energies),
            cfg.structure.selection_energy,
        )
    volume_methods = ("rls", "increments", "none")  # structure.substitution.VOLUME_METHODS
    if cfg.structure.volume_method not in volume_methods:
        fail("structure.volume_method", "must be " + ", ".join(volume_methods), cfg.structure.volume_method)
    positive = {
        "data.n_initial": cfg.data.n_initial,
        "campaign.batch_size": cfg.campaign.batch_size,
        "screening_model.n_estimators": cfg.screening_model.n_estimators,
        "generate.n_samples": cfg.generate.n_samples,
        "generate.batch_size": cfg.generate.batch_size,
        "screen.max_atoms": cfg.screen.max_atoms,
        "screen.max_elements": cfg.screen.max_elements,
        "screen.top": cfg.screen.top,
        "structure.templates": cfg.structure.templates,
        "structure.relax_steps": cfg.structure.relax_steps,
        "campaign.kappa": cfg.campaign.kappa,
        "campaign.num_restarts": cfg.campaign.num_restarts,
        "structure.fmax": cfg.structure.fmax,
    }
    for name, value in positive.items():
        if value <= 0:
            fail(name, "must be > 0", value)
    non_negative = {
        "data.n_holdout": cfg.data.n_holdout,
        "campaign.iterations": cfg.campaign.iterations,
        "campaign.n_pool": cfg.campaign.n_pool,
        "structure.max_candidates": cfg.structure.max_candidates,
        "dft.top": cfg.dft.top,
    }
    for name, value in non_negative.items():
        if value < 0:
            fail(name, "must be >= 0", value)
    if cfg.campaign.validity not in tuple(Validity):
        fail("campaign.validity", "must be 'smact' or 'decodable'", cfg.campaign.validity)
    if cfg.campaign.compounds not in tuple(CompoundRule):
        fail("campaign.compounds", f"must be one of {', '.join(CompoundRule)}", cfg.campaign.compounds)
    if cfg.screening_model.kind not in SCREENING_KINDS:
        fail("screening_model.kind", f"must be one of {', '.join(SCREENING_KINDS)}", cfg.screening_model.kind)
    if cfg.screen.max_std is not None and cfg.screen.max_std <= 0:
        fail("screen.max_std", "must be > 0", cfg.screen.max_std)


__all__ = [
    "EXECUTOR_SECTION",
    "PRESETS",
    "QUICK_PRESET",
    "SCREENING_KINDS",
    "CampaignSettings",
    "DataSettings",
    "DftStageSettings",
    "DiscoverConfig",
    "GenerateSettings",
    "ModelSettings",
    "ScreenStageSettings",
    "ScreeningModelSettings",
    "StructureStageSettings",
    "config_differences",
    "read_config_file",
    "resolve_config",
    "resolve_executor",
]
