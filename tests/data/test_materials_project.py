"""The live Materials Project loader, replayed from recorded summary.search responses (offline)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gapforge.data.materials_project import SUMMARY_FIELDS, fetch_materials_project
from gapforge.errors import GapforgeError


class ReplayRester:
    """Stands in for mp_api's MPRester: records the query, replays a recorded response."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.queries: list[dict[str, Any]] = []
        self.materials = SimpleNamespace(summary=SimpleNamespace(search=self._search))
        self._docs = docs

    def _search(self, **query: Any) -> list[SimpleNamespace]:
        self.queries.append(query)
        return [SimpleNamespace(**d) for d in self._docs]


@pytest.fixture
def recorded(files: Path) -> list[dict[str, Any]]:
    return json.loads((files / "mp_summary_response.json").read_text())


def test_query_is_built_from_filters(recorded: list[dict[str, Any]]) -> None:
    rester = ReplayRester(recorded)
    fetch_materials_project(band_gap=(3.0, 10.0), elements=["F"], num_elements=(1, 3), rester=rester)
    q = rester.queries[0]
    assert q["band_gap"] == (3.0, 10.0)
    assert q["elements"] == ["F"]
    assert q["num_elements"] == (1, 3)
    assert q["energy_above_hull"] == (0.0, 0.1)
    assert q["fields"] == list(SUMMARY_FIELDS)


def test_polymorphs_keep_lowest_energy_above_hull(recorded: list[dict[str, Any]]) -> None:
    df = fetch_materials_project(rester=ReplayRester(recorded))
    assert list(df.columns) == ["formula", "band_gap", "id", "source", "energy_above_hull"]
    assert df.formula.is_unique
    row = df.set_index("formula").loc["SiO2"]
    assert row["id"] == "mp-6930"
    assert row["band_gap"] == pytest.approx(5.6938)
    assert set(df.source) == {"materials-project"}


def test_no_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(GapforgeError, match="MP_API_KEY"):
        fetch_materials_project()
