"""``RUN/report.html``: one self-contained page a scientist can open offline.

Every figure is an inline base64 PNG, the CSS is inline, there is no script and
no external resource; links to CIF files are relative to the run directory, so
the page works from any copy of the run directory. Each section renders from the
tables that exist in the run directory (see :mod:`gapforge.discover.layout`) and
says plainly "Not run" when its inputs are missing, or why its stage was skipped.

Example:
    >>> from gapforge.report import build_report
    >>> build_report("runs/wide-gap")  # doctest: +SKIP
    PosixPath('runs/wide-gap/report.html')
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
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
}

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
                f"{k} = {_fmt(v)}"
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
    table = L.assemble_candidates(ctx.run_dir)
    if table is None:
        return Section("candidates", "Candidates", ctx.missing("screen", [L.CANDIDATES]))
    lead = (
        f"{len(table):,} candidate formulas passed every filter of the screen"
        + (f" for a band gap {ctx.window_text()}" if ctx.window_text() else "")
        + ". Gaps are the screening model's mean ± one standard deviation; formation energy and energy above "
        "hull come from the CHGNet-relaxed structure built on the nearest known template (a negative energy "
        "above hull means below every known phase of the reference: a candidate stable phase, or a gap in "
        "the reference)."
    )
    if len(table) == 0:
        return Section(
            "candidates",
            "Candidates",
            f'<p class="lead">{html.escape(lead)}</p>' + _note(_no_candidates_hint(ctx)),
        )
    cols = [c for c in L.CANDIDATE_COLUMNS if c in table.columns and c != C.BAND_GAP_STD]
    head = "".join(
        f"<th>{html.escape(COLUMN_LABELS.get(c, (c, ''))[0])}"
        + (f" ({COLUMN_LABELS[c][1]})" if COLUMN_LABELS.get(c, ("", ""))[1] else "")
        + "</th>"
        for c in cols
    )
    rows = []
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if c == C.BAND_GAP_MEAN:
                std = row.get(C.BAND_GAP_STD)
                text = _fmt(v, 2) + (f" ± {_fmt(std, 2)}" if _fmt(std) != "—" else "")
                cells.append(f'<td class="num">{html.escape(text)}</td>')
            elif c == L.CIF_LINK:
                if isinstance(v, str) and v:
                    exists = (ctx.run_dir / v).is_file()
                    link = f'<a href="{html.escape(v, quote=True)}">{html.escape(Path(v).name)}</a>'
                    cells.append(f"<td>{link}{'' if exists else ' (missing)'}</td>")
                else:
                    cells.append("<td>—</td>")
            elif c == C.FORMULA:
                cells.append(f'<td class="formula">{html.escape(str(v))}</td>')
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
    shown = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
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
        facts["valid-decode rate (%)"] = 100.0 * n_val / n_prop if n_prop else float("nan")
    if "n_new" in it:
        facts["new formulas labelled"] = int(it["n_new"].sum())
    facts["best gap found (eV)"] = float(pd.to_numeric(it["best_so_far"], errors="coerce").max())
    if "n_hits" in it:
        facts["labelled formulas in window"] = int(it["n_hits"].iloc[-1])
    fig = plots.campaign_figure(it, window=ctx.window)
    return Section(
        "campaign",
        "Active-learning campaign",
        '<p class="lead">Gaussian-process surrogate on the latent codes, upper-confidence-bound '
        "acquisition; each proposed latent point is decoded and, if it is a valid formula, labelled "
        "by the oracle.</p>" + _kv_table(facts) + _img(fig, "campaign traces"),
    )


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
        nice = {}
        for key, label in (
            ("n_samples", "samples drawn"),
            ("n_decodable", "decodable"),
            ("decodable_fraction", "decodable fraction"),
            ("n_unique", "distinct formulas"),
            ("unique_fraction", "distinct per decodable"),
            ("n_novel", "novel (not in the dataset)"),
            ("seconds", "wall time (s)"),
        ):
            if key in stats:
                nice[label] = stats[key]
        for key, value in stats.items():
            if key not in (
                "n_samples",
                "n_decodable",
                "decodable_fraction",
                "n_unique",
                "unique_fraction",
                "n_novel",
                "seconds",
            ) and isinstance(value, int | float | str):
                nice[key] = value
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
