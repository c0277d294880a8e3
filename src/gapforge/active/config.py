"""The campaign configuration file (YAML, JSON or TOML), validated with pydantic.

Example (``campaign.yaml``)::

    seed: 0
    iterations: 20
    goal: {kind: window, window: [2.0, 3.0]}     # or {kind: maximize}
    acquisition: {kind: ucb, kappa: 10, q: 5}    # beta = kappa**2 in BoTorch
    codec: {kind: autoencoder, model: default}   # or {kind: linear, latent_dim: 16, fit_on: mp-bandgap}
    oracle: {kind: table, path: labels.csv}      # or {kind: model, model: default} / {kind: external}
    initial: {dataset: init-300}
    surrogate: {fit_subset: 300, maxiter: 75, warm_maxiter: 20, refit_every: 1}   # the defaults

Every value is checked when the file is read; a bad one stops with one line
naming the file, the field and the value.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gapforge.active.acquisition import PAPER_KAPPA, AcquisitionSettings, Goal
from gapforge.active.surrogate import SurrogateSettings
from gapforge.errors import InputError
from gapforge.screening.rules import (
    DEFAULT_COMPOUND_RULE,
    DEFAULT_EXCLUDED_ELEMENTS,
    DEFAULT_VALIDITY,
    CompoundRule,
    Validity,
    check_elements,
)
from gapforge.window import GapWindow


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoalConfig(_Strict):
    """How a file states the goal: ``maximize`` the band gap, or hit ``window: [lo, hi]`` eV.

    ``hi`` may be ``null``: an open window (``>= lo``), which maximises the gap and
    counts the hits above ``lo``.

    Only the file schema: the campaign works with :class:`~gapforge.active.acquisition.Goal`
    holding a :class:`~gapforge.window.GapWindow`.
    """

    kind: Literal["maximize", "window"] = "maximize"
    window: tuple[float, float | None] | None = None

    @model_validator(mode="after")
    def _check(self) -> GoalConfig:
        if self.kind == "window":
            if self.window is None:
                raise ValueError("a window goal needs window: [lo, hi] (eV)")
            lo, hi = self.window
            if not lo >= 0.0 or (hi is not None and not lo < hi):
                raise ValueError(f"window must satisfy 0 <= lo < hi (eV), got [{lo}, {hi}]")
        elif self.window is not None:
            raise ValueError("window is only used with kind: window")
        return self

    @classmethod
    def from_window(cls, window: GapWindow | None) -> GoalConfig:
        """The file form of a :class:`GapWindow` goal (``None``: maximise)."""
        if window is None:
            return cls()
        return cls(kind="window", window=(window.gap_min, window.gap_max))

    def to_goal(self) -> Goal:
        """The :class:`Goal` it describes."""
        if self.kind == "window":
            return Goal(GapWindow(*self.window))  # type: ignore[misc]
        return Goal()


class AcquisitionConfig(_Strict):
    """Acquisition: ``ucb`` (kappa, bayes_opt convention; beta = kappa**2), ``ei`` or ``random``.

    ``batch``: ``greedy`` (kriging believer, one optimisation per point) or ``restarts``
    (the ``q`` best local optima of one multi-start optimisation).
    """

    kind: Literal["ucb", "ei", "random"] = "ucb"
    kappa: float = Field(PAPER_KAPPA, gt=0)
    q: int = Field(1, ge=1, le=256)
    batch: Literal["greedy", "restarts"] = "greedy"
    num_restarts: int = Field(4, ge=1, le=64)
    raw_samples: int = Field(256, ge=8, le=100_000)
    maxiter: int = Field(30, ge=1, le=10_000)

    def to_settings(self) -> AcquisitionSettings:
        """The :class:`AcquisitionSettings` it describes."""
        return AcquisitionSettings(**self.model_dump())


class SurrogateConfig(_Strict):
    """GP fit: hyper-parameters on at most ``fit_subset`` points, refitted every ``refit_every`` iterations.

    Between refits the GP is only conditioned on the new data with the last hyper-parameters.
    """

    fit_subset: int = Field(SurrogateSettings.fit_subset, ge=0)
    warm_start: bool = SurrogateSettings.warm_start
    maxiter: int = Field(SurrogateSettings.maxiter, ge=1)
    warm_maxiter: int = Field(SurrogateSettings.warm_maxiter, ge=1)
    refit_every: int = Field(1, ge=1)

    def to_settings(self) -> SurrogateSettings:
        """The :class:`SurrogateSettings` it describes."""
        return SurrogateSettings(**self.model_dump(exclude={"refit_every"}))


class CodecConfig(_Strict):
    """The latent space: the ``autoencoder`` (``model``: default or a directory) or a ``linear`` PCA codec."""

    kind: Literal["autoencoder", "linear"] = "autoencoder"
    model: str = "default"
    latent_dim: int = Field(16, ge=1, le=1024)
    fit_on: str = "mp-bandgap"
    n_fit: int | None = Field(None, ge=2)
    rule: Literal["strict", "argmax"] = "argmax"
    threshold: float = Field(0.3, gt=0, lt=1)


class OracleConfig(_Strict):
    """Who labels: a ``table`` of known gaps (``path``), a trained ``model``, or ``external`` (ask/tell)."""

    kind: Literal["table", "model", "external"] = "model"
    path: str | None = None
    model: str = "default"
    model_kind: Literal["oracle", "forest"] = "oracle"

    @model_validator(mode="after")
    def _check(self) -> OracleConfig:
        if self.kind == "table" and not self.path:
            raise ValueError("a table oracle needs path: FILE (formula, band_gap)")
        return self


class InitialConfig(_Strict):
    """The initial labelled set: a dataset name or file, optionally sampled and filtered."""

    dataset: str = "init-300"
    n: int | None = Field(None, ge=2)
    max_gap: float | None = None
    sample_seed: int = 0


class CampaignConfig(_Strict):
    """A whole campaign."""

    name: str = "campaign"
    seed: int = 0
    iterations: int = Field(10, ge=1, le=1_000_000)
    #: what a proposal's decode must be to be labelled: also SMACT-valid (``smact``, the default:
    #: charge neutral, electronegativity ordered) or any formula (``decodable``, the paper's rule)
    validity: Validity = DEFAULT_VALIDITY
    #: which decodes count as compounds worth labelling (``no-intermetallics``: >= 2 elements, one
    #: of them not a metal; ``compounds``: >= 2 elements; ``any``: the paper's rule); others are invalid
    compounds: CompoundRule = DEFAULT_COMPOUND_RULE
    #: decodes with any of these elements are invalid (default: radioactive elements, noble gases)
    exclude_elements: tuple[str, ...] = DEFAULT_EXCLUDED_ELEMENTS
    goal: GoalConfig = GoalConfig()
    acquisition: AcquisitionConfig = AcquisitionConfig()
    surrogate: SurrogateConfig = SurrogateConfig()
    codec: CodecConfig = CodecConfig()
    oracle: OracleConfig = OracleConfig()
    initial: InitialConfig = InitialConfig()

    @field_validator("exclude_elements")
    @classmethod
    def _elements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return check_elements(value)
        except InputError as exc:
            raise ValueError(f"{exc.message}: {exc.value!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the resolved config written to the run directory)."""
        return self.model_dump(mode="json")


def _format_error(exc: ValidationError, path: str | Path | None) -> InputError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, dict):
        value = None
    return InputError(f"{where}: {msg}", path=path, value=value)


def parse_config(data: dict[str, Any], *, path: str | Path | None = None) -> CampaignConfig:
    """Validate a config dict.

    Raises:
        InputError: the first invalid field, named by its dotted path.
    """
    if not isinstance(data, dict):
        raise InputError("a campaign config must be a mapping of settings", path=path)
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_error(exc, path) from None


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a YAML (``.yaml``/``.yml``), JSON or TOML campaign config.

    Raises:
        InputError: missing or unparsable file, or an invalid value (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path=path)
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:  # pragma: no cover
                raise InputError("reading YAML needs PyYAML; use .json or .toml", path=path) from exc
            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise InputError("unsupported config format (use .yaml, .json or .toml)", path=path)
    except InputError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot parse config ({first})", path=path) from None
    return parse_config(data, path=path)
