"""Active learning in the autoencoder's latent space: GP surrogate, acquisition, campaign, oracles."""

from __future__ import annotations

from gapforge.active.acquisition import (
    PAPER_KAPPA,
    AcquisitionSettings,
    Goal,
    Proposal,
    beta_from_kappa,
    propose,
)
from gapforge.active.campaign import (
    Campaign,
    CampaignResult,
    IterationRecord,
    resume_campaign,
    run_campaign,
)
from gapforge.active.codec import AutoencoderCodec, LatentCodec, LinearCodec
from gapforge.active.config import CampaignConfig, load_config, parse_config
from gapforge.active.oracles import ExternalOracle, ModelOracle, Oracle, TableOracle
from gapforge.active.state import CampaignState
from gapforge.active.surrogate import FitResult, SurrogateSettings, fit_surrogate

__all__ = [
    "PAPER_KAPPA",
    "AcquisitionSettings",
    "AutoencoderCodec",
    "Campaign",
    "CampaignConfig",
    "CampaignResult",
    "CampaignState",
    "ExternalOracle",
    "FitResult",
    "Goal",
    "IterationRecord",
    "LatentCodec",
    "LinearCodec",
    "ModelOracle",
    "Oracle",
    "Proposal",
    "SurrogateSettings",
    "TableOracle",
    "beta_from_kappa",
    "fit_surrogate",
    "load_config",
    "parse_config",
    "propose",
    "resume_campaign",
    "run_campaign",
]
