"""Band gaps from the live Materials Project through ``mp-api``.

Needs an API key (argument or ``MP_API_KEY``) and network access. The tests
replay recorded ``summary.search`` responses through an injected client
(``rester=``), so they run offline; the live call itself is not exercised in
this project's CI.

Polymorphs: Materials Project has several entries per formula. One row per
reduced formula is kept, the entry lowest in energy above the hull (ties:
smallest ``material_id`` string), which is the polymorph whose gap a
formula-only model should learn.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from gapforge import columns as C
from gapforge.errors import DependencyError, GapforgeError, InputError
from gapforge.formula import normalize_formula

log = logging.getLogger(__name__)

#: Fields requested from the summary endpoint.
SUMMARY_FIELDS: tuple[str, ...] = ("material_id", "formula_pretty", "band_gap", "energy_above_hull")


def fetch_materials_project(
    *,
    band_gap: tuple[float, float] | None = None,
    elements: Sequence[str] | None = None,
    exclude_elements: Sequence[str] | None = None,
    num_elements: tuple[int, int] | None = None,
    energy_above_hull: tuple[float, float] | None = (0.0, 0.1),
    api_key: str | None = None,
    rester: Any = None,
) -> pd.DataFrame:
    """Query Materials Project summary documents and return a labelled table.

    Args:
        band_gap: (min, max) eV filter.
        elements: every returned material contains all of these.
        exclude_elements: no returned material contains these.
        num_elements: (min, max) number of elements.
        energy_above_hull: (min, max) eV/atom filter; ``None`` for no filter.
        api_key: Materials Project API key (default: ``MP_API_KEY``).
        rester: an already-open ``MPRester`` (or a stand-in replaying recorded
            responses); when given, ``api_key`` is not needed.

    Returns:
        Columns ``formula``, ``band_gap`` (eV), ``id`` (material id),
        ``source`` (``"materials-project"``), ``energy_above_hull`` (eV/atom);
        one row per reduced formula (see the module docstring).

    Raises:
        DependencyError: ``mp-api`` is not installed.
        GapforgeError: no API key, or the query failed.
    """
    query: dict[str, Any] = {"fields": list(SUMMARY_FIELDS)}
    if band_gap is not None:
        query["band_gap"] = tuple(band_gap)
    if elements:
        query["elements"] = list(elements)
    if exclude_elements:
        query["exclude_elements"] = list(exclude_elements)
    if num_elements is not None:
        query["num_elements"] = tuple(num_elements)
    if energy_above_hull is not None:
        query["energy_above_hull"] = tuple(energy_above_hull)
    return docs_to_table(search_summary(query, api_key=api_key, rester=rester))


def search_summary(query: dict[str, Any], *, api_key: str | None = None, rester: Any = None) -> list[Any]:
    """Run one Materials Project summary search and return its documents.

    Args:
        query: keyword arguments of ``MPRester().materials.summary.search``.
        api_key: Materials Project API key (default ``MP_API_KEY``).
        rester: an open ``MPRester`` or a stand-in replaying recorded responses.

    Raises:
        DependencyError: ``mp-api`` is not installed.
        GapforgeError: no API key, or the query failed.
    """
    if rester is not None:
        return rester.materials.summary.search(**query)
    key = api_key or os.environ.get("MP_API_KEY")
    if not key:
        raise GapforgeError("no Materials Project API key: pass api_key or set MP_API_KEY")
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise DependencyError("mp-api is not installed: pip install 'gapforge[mp]'") from exc
    try:
        with MPRester(key) as mpr:
            return mpr.materials.summary.search(**query)
    except Exception as exc:
        raise GapforgeError(f"Materials Project query failed: {exc}") from exc


def _get(doc: Any, name: str) -> Any:
    if isinstance(doc, dict):
        return doc.get(name)
    return getattr(doc, name, None)


def docs_to_table(docs: Sequence[Any]) -> pd.DataFrame:
    """Summary documents (objects or dicts) -> labelled table, one row per formula."""
    rows = []
    for i, doc in enumerate(docs):
        formula = _get(doc, "formula_pretty")
        gap = _get(doc, "band_gap")
        mid = str(_get(doc, "material_id"))
        if formula is None or gap is None:
            log.warning("skipping Materials Project entry %s without formula or band gap", mid)
            continue
        try:
            reduced = normalize_formula(str(formula))
        except InputError as exc:
            raise InputError(exc.message, path="materials-project", row=i + 1, value=formula) from None
        ehull = _get(doc, "energy_above_hull")
        rows.append(
            {
                C.FORMULA: reduced,
                C.BAND_GAP: float(gap),
                C.ID: mid,
                C.SOURCE: "materials-project",
                "energy_above_hull": float("nan") if ehull is None else float(ehull),
            }
        )
    cols = [C.FORMULA, C.BAND_GAP, C.ID, C.SOURCE, "energy_above_hull"]
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    df = df.sort_values(["energy_above_hull", C.ID], na_position="last", kind="mergesort")
    return df.drop_duplicates(C.FORMULA, keep="first").reset_index(drop=True)
