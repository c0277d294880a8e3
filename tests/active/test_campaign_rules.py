"""The campaign labels compounds: elements, intermetallics and excluded elements are invalid decodes."""

from __future__ import annotations

import pytest
from tests.active.conftest import campaign_config

from gapforge.active import Campaign, parse_config
from gapforge.errors import InputError
from gapforge.screening.rules import DEFAULT_EXCLUDED_ELEMENTS, CompoundRule, compound_mask, excluded_mask


def test_campaign_treats_elements_intermetallics_and_excluded_elements_as_invalid(forest_dir):
    cfg = parse_config(campaign_config({"kind": "model", "model": str(forest_dir)}, iterations=2))
    assert cfg.compounds == CompoundRule.NO_INTERMETALLICS and cfg.validity == "smact"
    camp = Campaign.create(cfg, None)
    got = camp.admissible(["LiF", "O2", "Ti", "TiAl", "XeF2", "NaCl2", None, "MgO"])
    assert got == ["LiF", None, None, None, None, None, None, "MgO"]
    paper = Campaign.create(
        parse_config(
            campaign_config(
                {"kind": "model", "model": str(forest_dir)},
                validity="decodable",
                compounds="any",
                exclude_elements=[],
            )
        ),
        None,
    )
    assert paper.admissible(["O2", "TiAl", "XeF2", None]) == ["O2", "TiAl", "XeF2", None]
    result = camp.run(progress=False)
    new = result.labelled[result.labelled["source"] != "initial"]["formula"].tolist()
    assert compound_mask(new, CompoundRule.NO_INTERMETALLICS).all()
    assert not excluded_mask(new, DEFAULT_EXCLUDED_ELEMENTS).any()
    with pytest.raises(InputError, match="exclude_elements"):
        parse_config(campaign_config({"kind": "model", "model": str(forest_dir)}, exclude_elements=["Qq"]))
