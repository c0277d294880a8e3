"""``RUN/report.html``: one self-contained page a scientist can open offline.

Every figure is an inline base64 PNG, every crystal structure an inline SVG drawn
from its CIF, the CSS is inline, there is no script and no external resource; the
CIF files are embedded as ``data:`` download links, so the page works when it is
copied alone anywhere. The only links out are to the Materials Project pages of
the templates and known phases (``https://next-gen.materialsproject.org/materials/mp-…``).
Each section renders from the tables that exist in the run directory (see
:mod:`gapforge.discover.layout`) and says plainly "Not run" when its inputs are
missing, or why its stage was skipped.

Example:
    >>> from gapforge.report import build_report
    >>> build_report("runs/wide-gap")  # doctest: +SKIP
    PosixPath('runs/wide-gap/report.html')
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import html
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gapforge import columns as C
from gapforge.discover import layout as L
from gapforge.errors import InputError
from gapforge.io import read_table, write_text
from gapforge.report import plots
from gapforge.report.structure_view import cif_data_uri, structure_facts, structure_svg

log = logging.getLogger(__name__)

#: (heading, unit) of each candidate-table column.
COLUMN_LABELS: dict[str, tuple[str, str]] = {
    L.RANK: ("#", ""),
    C.FORMULA: ("Formula", ""),
    C.BAND_GAP_MEAN: ("Predicted gap", "eV"),
    L.FORMATION_ENERGY: ("Formation energy", "eV/atom"),
    L.E_ABOVE_HULL: ("E above hull", "eV/atom"),
    L.DFT_BAND_GAP: ("DFT gap (PBE)", "eV"),
    L.TEMPLATE_FORMULA: ("Template", ""),
    L.N_ATOMS: ("Atoms", ""),
    L.N_ELEMENTS: ("Elements", ""),
    L.SMACT_VALID: ("SMACT", ""),
    L.NOVEL: ("Novel", ""),
    L.CIF_LINK: ("Structure", ""),
    C.REASON: ("Note", ""),
    C.P_IN_WINDOW: ("P(gap in window)", "%"),
    C.DECOMPOSITION: ("Decomposes into", ""),
    C.BELOW_KNOWN_HULL: ("Below known hull", ""),
    C.HULL_KNOWN_PHASES: ("Known phases in system", ""),
    C.P_METAL: ("P(metal)", "%"),
    C.P_STABLE: ("P(stable)", "%"),
    C.DIMENSIONALITY: ("Bonded network", ""),
}

#: How a bonded-network dimensionality (:data:`gapforge.columns.DIMENSIONALITY`) reads in the table.
DIMENSIONALITY_WORDS = {0: "0D molecular", 1: "1D chains", 2: "2D layers", 3: "3D"}

#: Columns shown in the candidate table when the run has them (written by newer stages), after the gap.
OPTIONAL_CANDIDATE_COLUMNS = (C.P_IN_WINDOW, C.P_METAL)

#: Metric keys of ``screening_model/metrics.json`` in words, with their units.
METRIC_LABELS: dict[str, str] = {
    "n_train": "formulas trained on",
    "n": "hold-out formulas scored",
    "n_missing": "hold-out formulas the model could not predict",
    "r2": "coefficient of determination R² (hold-out)",
    "mae_eV": "mean absolute error (eV)",
    "mae": "mean absolute error (eV)",
    "rmse_eV": "root-mean-square error (eV)",
    "rmse": "root-mean-square error (eV)",
    "within_1sigma": "errors within one predicted standard deviation (share, 0–1)",
    "within_2sigma": "errors within two predicted standard deviations (share, 0–1)",
    "spearman_err_std": "rank correlation of |error| with the predicted standard deviation (Spearman)",
}

#: Keys of ``generate/stats.json`` in words.
GENERATOR_LABELS: dict[str, str] = {
    "n_samples": "samples drawn",
    "n_decodable": "decodable samples",
    "decodable_fraction": "decodable share of the samples (0–1)",
    "n_unique": "distinct formulas",
    "unique_fraction": "distinct formulas per decodable sample (0–1)",
    "n_novel": "novel formulas (not in the dataset)",
    "seconds": "wall time (s)",
    "model": "generator",
    "kind": "generator kind",
    "decode_rule": "decoding rule",
    "temperature": "sampling temperature",
    "seed": "random seed",
    "batch_size": "samples per batch",
}

MP_URL = "https://next-gen.materialsproject.org/materials/{}"
#: The Materials Project's search by formula, for a known phase whose mp-id the run does not hold.
MP_FORMULA_URL = "https://next-gen.materialsproject.org/materials?formula={}"
#: Structure cards drawn (the best-ranked candidates with a structure).
MAX_STRUCTURE_CARDS = 20

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d232b;
     background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:1.5em}
header p{margin:2px 0;opacity:.9}
main{max-width:1150px;margin:0 auto;padding:12px 28px 40px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px 20px;margin:16px 0}
h2{font-size:1.2em;margin:.2em 0 .6em;color:#1f3a5f}
p.lead{color:#4a5563;margin:.2em 0 .8em}
table{border-collapse:collapse;font-size:.88em;margin:6px 0}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef1f5;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:hover td{background:#f7fafc}
.scroll{max-height:560px;overflow:auto;border:1px solid #e3e6ea}
.notrun{color:#8a5a00;background:#fff7e0;border-left:4px solid #e0a800;padding:8px 12px}
.skipped{color:#555;background:#f1f1f1;border-left:4px solid #999;padding:8px 12px}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.ok{color:#1a7f37}.bad{color:#b42318}
.grid{display:flex;flex-wrap:wrap;gap:10px 28px;align-items:flex-start}
.kv td:first-child{color:#4a5563}
details pre{background:#f3f4f6;padding:10px;overflow:auto;font-size:.82em}
nav a{color:#cfe0ff;margin-right:14px;font-size:.9em}
footer{color:#777;font-size:.8em;text-align:center;margin:20px}
.cards{display:flex;flex-wrap:wrap;gap:14px}
.card{border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;width:620px;background:#fcfcfd}
.card td:first-child{min-width:9em}
.card h3{margin:.1em 0 .4em;font-size:1.05em}
.card .row{display:flex;gap:12px;align-items:flex-start}
svg.structure{border:1px solid #e3e6ea;border-radius:4px;flex:none}
a.download{font-size:.9em}
"""


@dataclass(frozen=True)
class Section:
    """One section of the report: an anchor, a heading and its HTML body."""

    anchor: str
    title: str
    body: str


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render ``RUN/report.html`` from the tables in a run directory.

    Args:
        run_dir: the run directory (``gapforge discover --out``).
        out: where to write the page (default ``RUN/report.html``). CIF links
            are relative to the run directory, so keep the page inside it.

    Returns:
        The path of the written page (written atomically).

    Raises:
        InputError: ``run_dir`` does not exist.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("run directory not found", path=run_dir)
    out = Path(out) if out is not None else run_dir / L.REPORT
    page = render_report(run_dir)
    write_text(page, out)
    log.info("report written to %s", out)
    return out


def render_report(run_dir: str | Path) -> str:
    """The report page of a run directory, as an HTML string."""
    run_dir = Path(run_dir)
    ctx = _Context(run_dir)
    builders: list[Callable[[_Context], Section]] = [
        _overview,
        _candidates,
        _structures,
        _screening_model,
        _campaign,
        _latent,
        _generator,
        _funnel,
        _configuration,
    ]
    sections = []
    for build in builders:
        try:
            sections.append(build(ctx))
        except Exception as exc:  # one broken table must not cost the whole report
            log.warning("report section %s failed: %s", build.__name__, exc)
            name = build.__name__.strip("_")
            sections.append(
                Section(
                    name,
                    name.replace("_", " ").title(),
                    _note(f"Could not render this section: {type(exc).__name__}: {exc}"),
                )
            )
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>\n{s.body}\n</section>' for s in sections
    )
    title = "gapforge discovery report"
    window = ctx.window_text()
    subtitle = f"Target band gap {window}" if window else "Target band gap: not recorded"
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} — {html.escape(run_dir.name)}</title>
<style>{CSS}</style></head>
<body>
<header><h1>{html.escape(title)}</h1>
<p>{html.escape(subtitle)} · run <code>{html.escape(str(run_dir.name))}</code></p>
<nav>{nav}</nav></header>
<main>
{body}
</main>
<footer>Generated by gapforge {html.escape(_version())} on {generated}. Every table shown is a file in the run
directory; re-run <code>gapforge report {html.escape(str(run_dir))}</code> to refresh this page.</footer>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
class _Context:
    """Lazy access to the run directory's files."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.config = self.json("config.json") or {}
        self.pipeline = self.json("pipeline.json") or {}

    def path(self, rel: str) -> Path:
        return self.run_dir / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def table(self, rel: str) -> pd.DataFrame | None:
        return read_table(self.path(rel)) if self.exists(rel) else None

    def json(self, rel: str) -> Any:
        if not self.exists(rel):
            return None
        try:
            return json.loads(self.path(rel).read_text())
        except ValueError:
            log.warning("%s is not valid JSON", self.path(rel))
            return None

    @property
    def window(self) -> tuple[float, float] | None:
        lo = self.config.get("gap_min")
        if lo is None:
            return None
        hi = self.config.get("gap_max")
        return float(lo), math.inf if hi is None else float(hi)

    def window_text(self) -> str:
        w = self.window
        if w is None:
            return ""
        return f"≥ {w[0]:.2f} eV" if not math.isfinite(w[1]) else f"{w[0]:.2f}–{w[1]:.2f} eV"

    @functools.cached_property
    def relaxed(self) -> pd.DataFrame | None:
        """``structure/relaxed.csv`` (best template per candidate), or None."""
        table = self.table(L.RELAXED)
        if table is None:
            return None
        table[C.FORMULA] = table[C.FORMULA].astype(str)
        return table

    def relaxed_row(self, formula: str) -> pd.Series | None:
        rel = self.relaxed
        if rel is None:
            return None
        rows = rel[rel[C.FORMULA] == formula]
        return None if len(rows) == 0 else rows.iloc[0]

    @functools.cached_property
    def known_phase_ids(self) -> dict[str, str]:
        """Reduced formula -> Materials Project id (lowest formation energy) in the structure stage's library.

        Used to link decomposition products; empty if the library cannot be read.
        """
        settings = self.json(f"{L.STRUCTURE_DIR}/structure_settings.json") or {}
        try:
            from gapforge.structure.library import DATA_SUBDIR, DEFAULT_LIBRARY_FILE, find_data_file

            path = settings.get("library") or find_data_file(DEFAULT_LIBRARY_FILE, DATA_SUBDIR)
            head = pd.read_csv(path, nrows=0).columns
            cols = [c for c in (C.MATERIAL_ID, C.REDUCED_FORMULA, C.FORMATION_ENERGY_PER_ATOM) if c in head]
            lib = pd.read_csv(path, usecols=cols)
        except Exception as exc:  # the links are a convenience; the report works without them
            log.info("no library for Materials Project links of known phases: %s", exc)
            return {}
        if C.FORMATION_ENERGY_PER_ATOM in lib.columns:
            lib = lib.sort_values(C.FORMATION_ENERGY_PER_ATOM, na_position="last")
        lib = lib.drop_duplicates(C.REDUCED_FORMULA)
        return dict(zip(lib[C.REDUCED_FORMULA].astype(str), lib[C.MATERIAL_ID].astype(str), strict=True))

    @functools.cached_property
    def candidates(self) -> pd.DataFrame | None:
        """The joined candidate table (:func:`gapforge.discover.layout.assemble_candidates`)."""
        return L.assemble_candidates(self.run_dir)

    @functools.cached_property
    def card_formulas(self) -> list[str]:
        """Formulas that get a structure card: the best-ranked candidates with a CIF."""
        table = self.candidates
        if table is None or L.CIF_LINK not in table.columns or not self.exists(L.RELAXED):
            return []
        has = table[L.CIF_LINK].map(lambda v: isinstance(v, str) and v != "")
        return table.loc[has, C.FORMULA].astype(str).head(MAX_STRUCTURE_CARDS).tolist()

    def marker(self, stage: str) -> dict[str, Any] | None:
        return self.json(f"stages/{stage}.json")

    def missing(self, stage: str, needed: Sequence[str]) -> str:
        """The "not run" / "skipped" note of a section whose inputs are missing."""
        marker = self.marker(stage)
        if marker is not None and marker.get("status") == "skipped":
            reason = html.escape(str(marker.get("reason") or "no reason given"))
            return f'<p class="skipped">Skipped: {reason}</p>'
        files = ", ".join(f"<code>{html.escape(n)}</code>" for n in needed)
        name = html.escape(stage)
        return f'<p class="notrun">Not run: the {name} stage has not produced {files} in this run.</p>'


def _img(fig: Any, alt: str) -> str:
    data = base64.b64encode(plots.figure_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="notrun">{html.escape(text)}</p>'


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if not math.isfinite(float(value)):
            return "—"
        return f"{float(value):.{digits}f}"
    text = str(value)
    return "—" if text in ("", "nan", "None", "<NA>") else text


def _kv_table(items: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><td>{html.escape(str(k))}</td><td class="num">{html.escape(_fmt(v))}</td></tr>'
        for k, v in items.items()
    )
    return f'<table class="kv">{rows}</table>'


_MP_ID = re.compile(r"\b(mp-\d+)\b")


def mp_link(material_id: str, text: str | None = None) -> str:
    """An ``<a>`` to the Materials Project page of ``material_id`` (plain text if it is not an mp-id)."""
    mid = str(material_id).strip()
    shown = html.escape(text if text is not None else mid)
    if not _MP_ID.fullmatch(mid):
        return shown
    return f'<a class="mp" href="{html.escape(MP_URL.format(mid), quote=True)}">{shown}</a>'


def _link_mp_ids(text: str) -> str:
    """Escape ``text`` and turn every mp-id in it into a Materials Project link."""
    out, last = [], 0
    for m in _MP_ID.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        out.append(mp_link(m.group(1)))
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _decomposition_html(text: str, ids: Mapping[str, str]) -> str:
    """``"0.5 LiF + 0.5 NaF"`` with each known phase linked to its Materials Project page."""
    if _MP_ID.search(text):
        return _link_mp_ids(text)
    parts = []
    for term in text.split("+"):
        words = term.strip().split()
        if not words:
            continue
        formula = words[-1]
        coef = " ".join(words[:-1])
        if formula in ids:
            link = mp_link(ids[formula], formula)
        else:
            url = html.escape(MP_FORMULA_URL.format(formula), quote=True)
            link = f'<a class="mp" href="{url}">{html.escape(formula)}</a>'
        parts.append((html.escape(coef) + " " if coef else "") + link)
    return " + ".join(parts)


def _cif_download(ctx: _Context, rel_path: str, label: str = "CIF") -> str:
    """A download link carrying the CIF itself (data: URI), or a note that the file is missing."""
    path = ctx.run_dir / rel_path
    name = Path(rel_path).name
    if not path.is_file():
        return f"{html.escape(name)} (missing)"
    return (
        f'<a class="download cif" download="{html.escape(name, quote=True)}" '
        f'href="{cif_data_uri(path.read_text(errors="replace"))}" title="{html.escape(name, quote=True)}">'
        f"{html.escape(label)}</a>"
    )


def _overview(ctx: _Context) -> Section:
    cfg = ctx.config
    parts = []
    if cfg:
        facts = {
            "target window": ctx.window_text() or "—",
            "preset": cfg.get("preset", "—"),
            "seed": cfg.get("seed", "—"),
            "labelled data": (cfg.get("data") or {}).get("dataset", "—"),
        }
        parts.append(_kv_table(facts))
    else:
        parts.append(_note("No config.json in this run directory (not made by gapforge discover)."))
    stages = (ctx.pipeline or {}).get("stages") or []
    if not stages:
        marker_files = sorted(ctx.path("stages").glob("*.json")) if ctx.path("stages").is_dir() else []
        stages = [json.loads(p.read_text()) | {"name": p.stem} for p in marker_files]
    if stages:
        rows = []
        total = 0.0
        for s in stages:
            name = s.get("name") or s.get("stage")
            status = s.get("status", "—")
            if name == "report" and status == "pending":
                status = "this page"
            secs = s.get("seconds")
            total += float(secs or 0)
            cls = {"done": "ok", "cached": "ok", "failed": "bad"}.get(status, "")
            summary = s.get("summary") or {}
            brief = ", ".join(
                f"{str(k).replace('_', ' ')} = {_fmt(v)}"
                for k, v in list(summary.items())[:4]
                if isinstance(v, int | float | str | bool)
            )
            note = s.get("reason") or brief
            rows.append(
                f'<tr><td>{html.escape(str(name))}</td><td class="{cls}">{html.escape(str(status))}</td>'
                f'<td class="num">{html.escape(_fmt(secs, 1))}</td><td>{html.escape(str(note))}</td></tr>'
            )
        parts.append(
            "<table><tr><th>Stage</th><th>Status</th><th>Wall time (s)</th><th>Summary</th></tr>"
            + "".join(rows)
            + "<tr><td><b>total</b></td><td></td>"
            + f'<td class="num"><b>{total:.1f}</b></td><td></td></tr></table>'
        )
    return Section("overview", "Run overview", "\n".join(parts))


def _candidates(ctx: _Context) -> Section:
    table = ctx.candidates
    if table is None:
        return Section("candidates", "Candidates", ctx.missing("screen", [L.CANDIDATES]))
    lead = (
        f"{len(table):,} candidate formulas passed every filter of the screen"
        + (f" for a band gap {ctx.window_text()}" if ctx.window_text() else "")
        + ". Gaps are the screening model's mean ± one standard deviation"
        + _fidelity_text(table)
        + "; formation energy and energy above "
        "hull come from the CHGNet-relaxed structure built on the nearest known template (a negative energy "
        "above hull means below every known phase of the reference: a candidate stable phase, or a gap in "
        "the reference)."
    )
    if C.P_IN_WINDOW in table.columns:
        lead += " P(gap in window) is the model's probability that the gap lies inside the target window."
    if C.P_STABLE in table.columns:
        lead += (
            " P(stable) is the probability of lying within 0.1 eV/atom of the hull given the energy above "
            "hull, as measured on known materials rebuilt the same way; the list is ranked by P(gap in "
            "window) × P(stable), candidates without an energy above hull last."
        )
    if (
        C.DIMENSIONALITY in table.columns
        and pd.to_numeric(table[C.DIMENSIONALITY], errors="coerce").eq(0).any()
    ):
        lead += (
            " A bonded network of 0D marks a molecular crystal (isolated molecules such as PF3): a real "
            "substance, but rarely the extended solid a band-gap search is after."
        )
    if len(table) == 0:
        return Section(
            "candidates",
            "Candidates",
            f'<p class="lead">{html.escape(lead)}</p>' + _note(_no_candidates_hint(ctx)),
        )
    cols = [c for c in L.CANDIDATE_COLUMNS if c in table.columns and c != C.BAND_GAP_STD]
    if C.BAND_GAP_MEAN in cols:
        at = cols.index(C.BAND_GAP_MEAN) + 1
        cols[at:at] = [c for c in OPTIONAL_CANDIDATE_COLUMNS if c in table.columns]
    head = "".join(
        f"<th>{html.escape(COLUMN_LABELS.get(c, (c, ''))[0])}"
        + (f" ({COLUMN_LABELS[c][1]})" if COLUMN_LABELS.get(c, ("", ""))[1] else "")
        + "</th>"
        for c in cols
    )
    cards = set(ctx.card_formulas)
    rows = []
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if c == C.BAND_GAP_MEAN:
                std = row.get(C.BAND_GAP_STD)
                text = _fmt(v, 2) + (f" ± {_fmt(std, 2)}" if _fmt(std) != "—" else "")
                cells.append(f'<td class="num">{html.escape(text)}</td>')
            elif c in (C.P_IN_WINDOW, C.P_METAL, C.P_STABLE):
                p = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
                cells.append(f'<td class="num">{html.escape(_fmt(100 * p, 1))}</td>')
            elif c == L.CIF_LINK:
                if isinstance(v, str) and v:
                    view = (
                        f'<a href="#{_card_id(str(row[C.FORMULA]))}">view</a> · '
                        if str(row[C.FORMULA]) in cards
                        else ""
                    )
                    cells.append(f"<td>{view}{_cif_download(ctx, v)}</td>")
                else:
                    cells.append("<td>—</td>")
            elif c == L.TEMPLATE_FORMULA:
                rel = ctx.relaxed_row(str(row[C.FORMULA]))
                tid = None if rel is None else rel.get(C.TEMPLATE_ID)
                text = _fmt(v)
                cells.append(
                    f"<td>{mp_link(str(tid), text) if isinstance(tid, str) else html.escape(text)}</td>"
                )
            elif c == C.DIMENSIONALITY:
                d = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
                text = DIMENSIONALITY_WORDS.get(int(d), "—") if np.isfinite(d) else "—"
                cells.append(f"<td>{html.escape(text)}</td>")
            elif c == C.DECOMPOSITION:
                text = v.strip() if isinstance(v, str) else ""
                cells.append(f"<td>{_decomposition_html(text, ctx.known_phase_ids) if text else '—'}</td>")
            elif c == C.FORMULA:
                cells.append(f'<td class="formula">{html.escape(str(v))}</td>')
            elif isinstance(v, str) and v in ("True", "False"):  # a flag read back from CSV
                cells.append(f"<td>{'yes' if v == 'True' else 'no'}</td>")
            else:
                numeric = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
                cls = ' class="num"' if numeric else ""
                cells.append(f"<td{cls}>{html.escape(_fmt(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    parts = [
        f'<p class="lead">{html.escape(lead)}</p>',
        f'<div class="scroll"><table id="candidate-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>",
    ]
    if C.BAND_GAP_MEAN in table.columns and len(table):
        parts.append(_img(plots.candidates_figure(table, window=ctx.window), "top candidates predicted gaps"))
    if not ctx.exists(L.RELAXED):
        parts.append(ctx.missing("relax", [L.RELAXED]))
    if not ctx.exists(L.DFT_TABLE):
        parts.append(ctx.missing("dft", [L.DFT_TABLE]))
    return Section("candidates", "Candidates", "\n".join(parts))


def _fidelity_text(table: pd.DataFrame) -> str:
    if C.FIDELITY not in table.columns:
        return ""
    kinds = sorted({str(v) for v in table[C.FIDELITY].dropna() if str(v)})
    words = {"pbe": "PBE (DFT) band gaps", "experiment": "experimental band gaps"}
    return (" and stand for " + " and ".join(words.get(k, k) for k in kinds)) if kinds else ""


def _card_id(formula: str) -> str:
    return "structure-" + re.sub(r"[^A-Za-z0-9_-]", "_", formula)


def _structures(ctx: _Context) -> Section:
    """One card per discovery with a structure: picture, space group, lattice, density, relaxation."""
    title = "Structures of the discoveries"
    table = ctx.candidates
    if table is None or not ctx.exists(L.RELAXED):
        return Section("structures", title, ctx.missing("relax", [L.RELAXED]))
    cards = []
    for formula in ctx.card_formulas:
        row = table[table[C.FORMULA].astype(str) == formula].iloc[0]
        cards.append(_structure_card(ctx, row))
    if not cards:
        return Section(
            "structures", title, _note("No candidate has a structure (see the Note column above).")
        )
    n_more = int(table[L.CIF_LINK].map(lambda v: isinstance(v, str) and v != "").sum()) - len(cards)
    lead = (
        "Each structure is the candidate's elements substituted into the nearest known template (ElMD) "
        "and relaxed with CHGNet; the picture is its conventional cell. Space group from pymatgen's "
        "SpacegroupAnalyzer (tolerance 0.1 Å). The CIF links download the file from this page."
        + (f" {n_more} further structures are in the run directory." if n_more > 0 else "")
    )
    return Section(
        "structures",
        title,
        f'<p class="lead">{html.escape(lead)}</p><div class="cards">{"".join(cards)}</div>',
    )


def _structure_card(ctx: _Context, row: pd.Series) -> str:
    from pymatgen.core import Structure

    formula = str(row[C.FORMULA])
    rel = ctx.relaxed_row(formula)
    cif_rel = str(row[L.CIF_LINK])
    relaxed = rel is not None and isinstance(rel.get(C.RELAXED_CIF_PATH), str) and rel.get(C.RELAXED_CIF_PATH)
    facts_html, picture = "", ""
    path = ctx.run_dir / cif_rel
    if path.is_file():
        try:
            structure = Structure.from_str(path.read_text(), fmt="cif")
            f = structure_facts(structure)
            picture = structure_svg(
                f.conventional, title=f"{formula} ({f.spacegroup_symbol}), conventional cell"
            )
            sg = f.spacegroup_symbol + (f" (No. {f.spacegroup_number})" if f.spacegroup_number else "")
            facts = {
                "space group": sg,
                "a, b, c (Å), conventional cell": f"{f.a:.3f}, {f.b:.3f}, {f.c:.3f}",
                "α, β, γ (°)": f"{f.alpha:.1f}, {f.beta:.1f}, {f.gamma:.1f}",
                "cell volume (Å³)": f"{f.volume:.2f}",
                "density (g/cm³)": f"{f.density:.3f}",
                "atoms in the CIF's cell": str(f.nsites),
            }
            facts_html = "".join(
                f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts.items()
            )
        except Exception as exc:  # an unreadable CIF costs only its picture
            picture = _note(f"Could not read {Path(cif_rel).name}: {type(exc).__name__}: {exc}")
    else:
        picture = _note(f"{cif_rel} is not in the run directory.")
    rows: list[tuple[str, str]] = []
    conv = None if rel is None else rel.get(C.CONVERGED)
    if rel is None or str(conv).strip().lower() not in ("true", "false"):
        why = "" if rel is None else rel.get(C.REASON)
        why = f" ({why})" if isinstance(why, str) and why else ""
        rows.append(
            ("relaxation (CHGNet)", html.escape(f"not relaxed{why}: the picture is the substituted template"))
        )
    else:
        ok = str(conv).strip().lower() == "true"
        steps = pd.to_numeric(pd.Series([rel.get(C.RELAX_STEPS)]), errors="coerce").iloc[0]
        force = pd.to_numeric(pd.Series([rel.get(C.MAX_FORCE)]), errors="coerce").iloc[0]
        detail = []
        if np.isfinite(steps):
            detail.append(f"{int(steps)} steps")
        if np.isfinite(force):
            fmax = ((ctx.json(f"{L.STRUCTURE_DIR}/relax_settings.json") or {}).get("settings") or {}).get(
                "fmax"
            )
            limit = f", threshold {float(fmax):g} eV/Å" if isinstance(fmax, int | float) else ""
            detail.append(f"largest force {force:.3f} eV/Å{limit}")
        text = ("converged" if ok else "NOT converged") + (f" ({', '.join(detail)})" if detail else "")
        if not relaxed:
            text += "; no relaxed CIF was written, the picture is the substituted template"
        rows.append(
            ("relaxation (CHGNet)", f'<span class="{"ok" if ok else "bad"}">{html.escape(text)}</span>')
        )
    gap = _fmt(row.get(C.BAND_GAP_MEAN), 2)
    std = _fmt(row.get(C.BAND_GAP_STD), 2)
    gap_text = html.escape(f"{gap} ± {std} eV" if std != "—" else f"{gap} eV")
    if C.P_IN_WINDOW in row.index:
        p = pd.to_numeric(pd.Series([row[C.P_IN_WINDOW]]), errors="coerce").iloc[0]
        if np.isfinite(p):
            gap_text += html.escape(f"; P(gap in {ctx.window_text() or 'window'}) = {100 * p:.0f} %")
    rows.append(("predicted band gap", gap_text))
    if C.P_METAL in row.index:
        rows.append(
            ("P(metal)", html.escape(_fmt(100 * pd.to_numeric(row[C.P_METAL], errors="coerce"), 0) + " %"))
        )
    if rel is not None and isinstance(rel.get(C.TEMPLATE_ID), str):
        tf = rel.get(C.TEMPLATE_FORMULA)
        rows.append(
            (
                "template",
                f"{html.escape(str(tf))} ({mp_link(str(rel[C.TEMPLATE_ID]))})"
                if isinstance(tf, str)
                else mp_link(str(rel[C.TEMPLATE_ID])),
            )
        )
    rows.append(("formation energy (eV/atom)", html.escape(_fmt(row.get(L.FORMATION_ENERGY)))))
    rows.append(("energy above hull (eV/atom)", _e_above_hull_html(ctx, row, rel)))
    if L.DFT_BAND_GAP in row.index and _fmt(row.get(L.DFT_BAND_GAP)) != "—":
        rows.append(("DFT band gap, PBE (eV)", html.escape(_fmt(row.get(L.DFT_BAND_GAP)))))
    downloads = [_cif_download(ctx, cif_rel, "relaxed CIF" if relaxed else "CIF")]
    if rel is not None and relaxed and isinstance(rel.get(C.CIF_PATH), str) and rel.get(C.CIF_PATH):
        downloads.append(_cif_download(ctx, f"{L.STRUCTURE_DIR}/{rel[C.CIF_PATH]}", "unrelaxed CIF"))
    rows.append(("download", " · ".join(downloads)))
    table_rows = facts_html + "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
    rank = _fmt(row.get(L.RANK))
    return (
        f'<div class="card" id="{_card_id(formula)}"><h3>#{html.escape(rank)} '
        f'<span class="formula">{html.escape(formula)}</span></h3>'
        f'<div class="row">{picture}<table class="kv">{table_rows}</table></div></div>'
    )


def _e_above_hull_html(ctx: _Context, row: pd.Series, rel: pd.Series | None) -> str:
    """The energy above hull with its decomposition products, or a sentence saying why they are missing."""
    value = pd.to_numeric(pd.Series([row.get(L.E_ABOVE_HULL)]), errors="coerce").iloc[0]
    reason = "" if rel is None else rel.get(C.REASON)
    if not np.isfinite(value) and isinstance(reason, str) and "energy above hull" in reason:
        return html.escape(reason[:1].upper() + reason[1:] + ".")  # the relax stage's own reason
    if not np.isfinite(value):
        known = (
            None
            if rel is None
            else pd.to_numeric(pd.Series([rel.get(C.HULL_KNOWN_PHASES)]), errors="coerce").iloc[0]
        )
        if rel is None:
            why = "not computed: the candidate was not relaxed."
        elif known is not None and np.isfinite(known) and known == 0:
            why = "unknown: the reference holds no known compound in this chemical system."
        elif not np.isfinite(
            pd.to_numeric(pd.Series([rel.get(L.FORMATION_ENERGY)]), errors="coerce").iloc[0]
        ):
            why = "not computed: no relaxed energy (see the note in the candidate table)."
        else:
            why = "not computed (no template library for the hull)."
        return html.escape(why)
    text = html.escape(f"{value:.3f}")
    below = rel is not None and str(rel.get(C.BELOW_KNOWN_HULL)).strip().lower() == "true"
    if below:
        text += (
            ' <span class="bad">(more than 0.05 eV/atom below every known phase: a new stable phase, '
            "or an error of the ML potential; check with DFT)</span>"
        )
    decomposition = None if rel is None else rel.get(C.DECOMPOSITION)
    if isinstance(decomposition, str) and decomposition.strip():
        word = "relative to the hull phases" if value <= 0 else "decomposes into"
        return text + f" → {word} " + _decomposition_html(decomposition.strip(), ctx.known_phase_ids)
    if value <= 0:
        return text + html.escape(" (on or below the hull of the known phases: no decomposition products)")
    if rel is None or C.DECOMPOSITION not in rel.index:
        return text + html.escape(
            " (decomposition products not recorded: this run's relaxed.csv has no decomposition column)"
        )
    return text + html.escape(" (decomposition products not recorded for this candidate)")


def _no_candidates_hint(ctx: _Context) -> str:
    text = "No formula passed the screen."
    screened = ctx.path(L.SCREENED)
    if screened.is_file():
        gaps = pd.to_numeric(read_table(screened).get(C.BAND_GAP_MEAN), errors="coerce")
        if gaps is not None and gaps.notna().any():
            text += (
                f" The highest predicted gap among the {int(gaps.notna().sum()):,} screened formulas is "
                f"{float(gaps.max()):.2f} eV."
            )
    return text + (
        " Widen the window, label more data (a longer campaign or a larger initial set), or raise the "
        "generation budget."
    )


def _screening_model(ctx: _Context) -> Section:
    parity = ctx.table(L.SCREENING_PARITY)
    if parity is None:
        return Section(
            "screening-model", "Screening model", ctx.missing("screening_model", [L.SCREENING_PARITY])
        )
    metrics = ctx.json(L.SCREENING_METRICS) or {}
    std = parity.get(C.BAND_GAP_STD)
    fig = plots.parity_figure(
        parity[C.BAND_GAP], parity[C.BAND_GAP_MEAN], std, metrics=metrics, window=ctx.window
    )
    lead = (
        "Trained on the initial labelled set plus every formula the campaign labelled; scored on "
        f"{len(parity):,} formulas of the dataset it never saw."
    )
    shown = {
        METRIC_LABELS.get(k, k.replace("_", " ")): v
        for k, v in metrics.items()
        if isinstance(v, int | float | str)
    }
    return Section(
        "screening-model",
        "Screening model",
        f'<p class="lead">{html.escape(lead)}</p><div class="grid">{_img(fig, "parity plot")}'
        f"{_kv_table(shown) if shown else ''}</div>",
    )


def _campaign(ctx: _Context) -> Section:
    it = ctx.table(L.CAMPAIGN_ITERATIONS)
    if it is None or len(it) == 0:
        return Section(
            "campaign", "Active-learning campaign", ctx.missing("campaign", [L.CAMPAIGN_ITERATIONS])
        )
    facts: dict[str, Any] = {"iterations": len(it)}
    if "n_proposed" in it and "n_valid" in it:
        n_prop, n_val = int(it["n_proposed"].sum()), int(it["n_valid"].sum())
        facts["latent points proposed"] = n_prop
        facts["valid decodes"] = n_val
        facts["valid-decode rate (%)"] = f"{100.0 * n_val / n_prop:.1f}" if n_prop else "—"
    if "n_new" in it:
        facts["new formulas labelled"] = int(it["n_new"].sum())
    best_note = ""
    labelled = ctx.table(L.CAMPAIGN_LABELLED)
    if labelled is not None and len(labelled) and ctx.window is not None:
        facts_best, best_note = _best_in_window(labelled, ctx.window, ctx.window_text())
        facts.update(facts_best)
    else:
        facts["best gap found (eV)"] = float(pd.to_numeric(it["best_so_far"], errors="coerce").max())
    if "n_hits" in it:
        # the campaign's own training set holds only the labelled formulas the autoencoder can encode
        facts["in the window, of the campaign's training set (encodable)"] = int(it["n_hits"].iloc[-1])
    fig = plots.campaign_figure(it, window=ctx.window)
    return Section(
        "campaign",
        "Active-learning campaign",
        '<p class="lead">Gaussian-process surrogate on the latent codes, upper-confidence-bound '
        "acquisition; each proposed latent point is decoded and, if it is a valid formula, labelled "
        "by the oracle.</p>"
        + _kv_table(facts)
        + (f'<p class="lead">{html.escape(best_note)}</p>' if best_note else "")
        + _img(fig, "campaign traces"),
    )


def _best_in_window(
    labelled: pd.DataFrame, window: tuple[float, float], window_text: str
) -> tuple[dict[str, Any], str]:
    """The best label of the window target, and where it came from (initial set or campaign).

    For an open window (a wide-gap search) the best is the highest gap; for a closed
    window it is the labelled gap inside the window nearest its centre. Labels outside
    the window never count as "found".
    """
    gaps = pd.to_numeric(labelled[C.BAND_GAP], errors="coerce")
    lo, hi = window
    inside = labelled[(gaps >= lo) & (gaps <= hi)].assign(_gap=gaps)
    if len(inside) == 0:
        top = labelled.assign(_gap=gaps).dropna(subset=["_gap"])
        if len(top) == 0:
            return {"best gap found in the window": "none"}, ""
        distance = np.maximum(lo - top["_gap"].to_numpy(), top["_gap"].to_numpy() - hi)
        near = top.iloc[int(distance.argmin())]
        return (
            {"best gap found in the window": "none"},
            f"No labelled formula has a gap {window_text}; the closest is {near[C.FORMULA]} "
            f"at {near['_gap']:.2f} eV ({_source_text(near)}).",
        )
    if math.isfinite(hi):
        centre = 0.5 * (lo + hi)
        best = inside.iloc[int((inside["_gap"] - centre).abs().to_numpy().argmin())]
        rule = f"the labelled gap inside {window_text} nearest its centre ({centre:.2f} eV)"
    else:
        best = inside.iloc[int(inside["_gap"].to_numpy().argmax())]
        rule = f"the highest labelled gap ({window_text})"
    source = _source_text(best)
    facts = {
        "best gap found in the window (eV)": float(best["_gap"]),
        "best formula": str(best[C.FORMULA]),
        "found by": source,
    }
    n_camp = int((inside.get(C.SOURCE, pd.Series(dtype=str)).astype(str) != "initial").sum())
    note = (
        f"Best gap found = {rule}: {best[C.FORMULA]} at {best['_gap']:.2f} eV, {source}. "
        f"{len(inside):,} labelled formulas lie in the window, {n_camp:,} of them labelled by the campaign "
        "(the campaign's own training set, and its hits trace, count only the formulas the autoencoder "
        "can encode)."
    )
    return facts, note


def _source_text(row: pd.Series) -> str:
    source = str(row.get(C.SOURCE, ""))
    if source == "initial":
        return "already in the initial labelled set"
    it = pd.to_numeric(pd.Series([row.get("iteration")]), errors="coerce").iloc[0]
    return "labelled by the campaign" + (f" in iteration {int(it)}" if np.isfinite(it) else "")


def _latent(ctx: _Context) -> Section:
    lm = ctx.table(L.LATENT_MAP)
    if lm is None or len(lm) == 0:
        return Section("latent-map", "Latent map", ctx.missing("campaign", [L.LATENT_MAP]))
    n_prop = int((lm.get("kind", pd.Series(dtype=str)).astype(str) == "proposal").sum())
    fig = plots.latent_figure(lm, window=ctx.window)
    return Section(
        "latent-map",
        "Latent map",
        f'<p class="lead">Labelled formulas and the campaign\'s {n_prop:,} valid proposals, projected '
        "onto the first two principal components of the autoencoder's latent codes.</p>"
        + _img(fig, "latent map"),
    )


def _generator(ctx: _Context) -> Section:
    stats = ctx.json(L.GENERATOR_STATS)
    gen = ctx.table(L.GENERATED)
    if stats is None and gen is None:
        return Section("generator", "Generator", ctx.missing("generate", [L.GENERATOR_STATS, L.GENERATED]))
    parts = []
    if stats:
        nice = {GENERATOR_LABELS[k]: stats[k] for k in GENERATOR_LABELS if k in stats}
        for key, value in stats.items():
            if key not in GENERATOR_LABELS and isinstance(value, int | float | str):
                nice[key.replace("_", " ")] = value
        parts.append(_kv_table(nice))
    if gen is not None and len(gen) and {"n_atoms", "n_elements"} <= set(gen.columns):
        scr = ctx.config.get("screen") or {}
        parts.append(
            _img(
                plots.generator_figure(
                    gen, max_atoms=scr.get("max_atoms"), max_elements=scr.get("max_elements")
                ),
                "generator statistics",
            )
        )
    return Section("generator", "Generator", "\n".join(parts))


def _funnel(ctx: _Context) -> Section:
    funnel = ctx.json(L.FUNNEL)
    steps = (funnel or {}).get("steps") if isinstance(funnel, dict) else funnel
    if not steps:
        return Section("funnel", "Screening funnel", ctx.missing("screen", [L.FUNNEL]))
    alone = any("fails_alone" in s for s in steps)
    rows = []
    for s in steps:
        cells = (
            f"<td>{html.escape(str(s.get('filter')))}</td>"
            f"<td>{html.escape(str(s.get('description', '')))}</td>"
            f'<td class="num">{_fmt(int(s["n_in"]))}</td><td class="num">{_fmt(int(s["removed"]))}</td>'
            f'<td class="num">{_fmt(int(s["n_out"]))}</td>'
        )
        if alone:
            cells += f'<td class="num">{_fmt(s.get("fails_alone"))}</td>'
        rows.append(f"<tr>{cells}</tr>")
    head = "<tr><th>Filter</th><th>Keeps</th><th>In</th><th>Removed</th><th>Left</th>"
    head += "<th>Would fail on its own</th></tr>" if alone else "</tr>"
    lead = (
        '<p class="lead">Filters are applied in this order; "Removed" counts the formulas each filter '
        "took out of those still left.</p>"
    )
    table = f"<table>{head}{''.join(rows)}</table>"
    return Section(
        "funnel", "Screening funnel", lead + table + _img(plots.funnel_figure(steps), "screening funnel")
    )


def _configuration(ctx: _Context) -> Section:
    if not ctx.config:
        return Section(
            "configuration", "Configuration", _note("Not run: no config.json in this run directory.")
        )
    text = json.dumps(ctx.config, indent=2)
    log_tail = ""
    log_path = ctx.path("log.txt")
    if log_path.is_file():
        lines = log_path.read_text(errors="replace").splitlines()[-40:]
        text_tail = html.escape("\n".join(lines))
        log_tail = f"<details><summary>Last lines of log.txt</summary><pre>{text_tail}</pre></details>"
    return Section(
        "configuration",
        "Configuration",
        f"<details><summary>Resolved configuration (config.json)</summary><pre>{html.escape(text)}</pre>"
        f"</details>{log_tail}",
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("gapforge")
    except Exception:
        return "unknown"


__all__ = ["Section", "build_report", "render_report"]
