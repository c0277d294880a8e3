"""The HTML report and its figures, from hand-made run directories."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from gapforge.cli import app
from gapforge.discover.layout import assemble_candidates
from gapforge.errors import InputError
from gapforge.report import build_report, plots, render_report

IMG = re.compile(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _images(page: str) -> dict[str, np.ndarray]:
    return {alt: imread(io.BytesIO(base64.b64decode(data)), format="png") for alt, data in IMG.findall(page)}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _candidate_rows(page: str) -> list[str]:
    body = page.split('<table id="candidate-table">', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<td class="formula">([^<]+)</td>', body)


# -- the joined candidate table -------------------------------------------------------------
def test_assemble_candidates_joins_structures_stability_and_dft(hand_run):
    table = assemble_candidates(hand_run)
    # LiF has a relaxed structure on the hull: it moves to the top; the rest keep the screen's order
    assert table["formula"].tolist() == ["LiF", "SrYF5", "MgF2", "KAlF4"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    lif = table.iloc[0]
    assert lif["formation_energy_per_atom"] == pytest.approx(-3.12)
    assert lif["e_above_hull"] == pytest.approx(0.0)
    assert lif["dft_band_gap"] == pytest.approx(8.94)
    assert lif["cif"] == "structure/relaxed/00002_LiF_1_mp-1138.cif"  # the relaxed CIF, relative to RUN
    sryf5 = table.iloc[1]
    assert sryf5["cif"] == "structure/cifs/00001_SrYF5_1_mp-1.cif"  # no relaxed one: the substituted CIF
    assert sryf5["reason"] == "not converged in 150 steps"
    assert np.isnan(sryf5["dft_band_gap"])
    assert pd.isna(table.iloc[2]["cif"])


def test_assemble_candidates_without_screen_is_none(tmp_path):
    assert assemble_candidates(tmp_path) is None


# -- the page -------------------------------------------------------------------------------
def test_full_report_has_every_section_table_and_figure(hand_run):
    path = build_report(hand_run)
    assert path == hand_run / "report.html"
    page = path.read_text()
    for anchor in (
        "overview",
        "candidates",
        "screening-model",
        "campaign",
        "latent-map",
        "generator",
        "funnel",
        "configuration",
        "structures",
    ):
        assert f'<section id="{anchor}">' in page
    assert _candidate_rows(page) == ["LiF", "SrYF5", "MgF2", "KAlF4"]
    assert "8.70 ± 0.25" in page  # predicted gap ± std
    assert "-3.120" in page and "8.940" in page  # formation energy, DFT gap
    # the CIF travels inside the page as a download link
    cif = (hand_run / "structure/relaxed/00002_LiF_1_mp-1138.cif").read_text()
    assert f'download="00002_LiF_1_mp-1138.cif" href="data:chemical/x-cif;base64,{_b64(cif)}"' in page
    assert "00001_SrYF5_1_mp-1.cif (missing)" in page  # the CIF file is not in the run directory
    # templates link to their Materials Project pages
    assert '<a class="mp" href="https://next-gen.materialsproject.org/materials/mp-1138">NaCl</a>' in page
    images = _images(page)
    assert set(images) == {
        "top candidates predicted gaps",
        "parity plot",
        "campaign traces",
        "latent map",
        "generator statistics",
        "screening funnel",
    }
    for alt, img in images.items():
        assert img.shape[0] > 100 and img.shape[1] > 100, alt
        assert img[..., :3].std() > 0.01, f"{alt} is blank"
    assert "Not run" not in page
    assert "Target band gap ≥ 6.00 eV" in page
    # funnel: every filter with its counts
    for name, removed in (("in_window", "4,600"), ("simple", "310"), ("smact_valid", "60"), ("novel", "26")):
        assert re.search(rf"<td>{name}</td>.*?<td class=\"num\">{removed}</td>", page)
    # campaign facts computed from the table
    assert re.search(r"valid decodes</td><td class=\"num\">64<", page)
    # a window target: the best label inside the window (>= 6 eV), and where it came from
    assert re.search(r"best gap found in the window \(eV\)</td><td class=\"num\">8.700<", page)
    assert re.search(r"found by</td><td class=\"num\">already in the initial labelled set<", page)
    # metric names in words, with units
    assert "mean absolute error (eV)" in page and "mae_eV" not in page


def test_report_is_self_contained(hand_run):
    page = render_report(hand_run)
    assert "<script" not in page.lower()
    assert not re.search(r"""src=["']?(https?:)?//""", page)  # nothing is loaded from elsewhere
    assert not re.search(r"""<link[^>]+stylesheet""", page)
    assert "@import" not in page and "url(" not in page
    # every link is in the page itself (anchors, data: downloads) or a Materials Project page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs
    for href in hrefs:
        assert href.startswith(("#", "data:", "https://next-gen.materialsproject.org/materials")), href


def test_partial_run_says_not_run_and_skipped(partial_run):
    (partial_run / "stages").mkdir()
    (partial_run / "stages" / "dft.json").write_text(
        '{"stage": "dft", "status": "skipped", "seconds": 0.0, "reason": "GPAW is not installed"}'
    )
    page = render_report(partial_run)
    assert _candidate_rows(page) == ["SrYF5", "LiF", "MgF2", "KAlF4"]  # the screen's order
    for stage, file in (
        ("campaign", "campaign/iterations.csv"),
        ("campaign", "campaign/latent_map.csv"),
        ("screening_model", "screening_model/parity.csv"),
        ("generate", "generate/stats.json"),
        ("relax", "structure/relaxed.csv"),
    ):
        assert f"Not run: the {stage} stage has not produced <code>{file}</code>" in page
    assert "Skipped: GPAW is not installed" in page
    assert set(_images(page)) == {"top candidates predicted gaps", "screening funnel"}


def test_empty_run_directory_renders_not_run_everywhere(tmp_path):
    page = render_report(tmp_path)
    assert page.count('class="notrun"') >= 7
    assert "Target band gap: not recorded" in page
    assert not IMG.search(page)


def test_a_broken_table_costs_only_its_section(hand_run):
    (hand_run / "campaign" / "iterations.csv").write_text("iteration,n_proposed\n1,10\n")  # no best_so_far
    page = render_report(hand_run)
    assert "Could not render this section" in page
    assert _candidate_rows(page) == ["LiF", "SrYF5", "MgF2", "KAlF4"]
    assert "latent map" in _images(page)


def test_formulas_and_notes_are_escaped(partial_run):
    cand = pd.read_csv(partial_run / "screen" / "candidates.csv")
    cand.loc[0, "formula"] = "<b>Bad</b>"
    cand.to_csv(partial_run / "screen" / "candidates.csv", index=False)
    page = render_report(partial_run)
    assert "&lt;b&gt;Bad&lt;/b&gt;" in page and "<b>Bad</b>" not in page


def test_missing_run_directory(tmp_path):
    with pytest.raises(InputError, match="run directory not found"):
        build_report(tmp_path / "nowhere")


def test_report_command(hand_run, tmp_path):
    result = CliRunner().invoke(app, ["report", str(hand_run)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(hand_run / "report.html")
    assert (hand_run / "report.html").stat().st_size > 10_000
    other = tmp_path / "copy.html"
    result = CliRunner().invoke(app, ["report", str(hand_run), "--output", str(other)])
    assert result.exit_code == 0 and other.is_file()


# -- the figures ----------------------------------------------------------------------------
def test_parity_figure_plots_every_finite_point():
    fig = plots.parity_figure(
        [1.0, 2.0, np.nan, 4.0],
        [1.2, 1.9, 3.0, np.nan],
        [0.1, 0.2, 0.3, 0.4],
        metrics={"r2": 0.9, "mae": 0.15},
        window=(1.5, 3.0),
    )
    ax = fig.axes[0]
    offsets = ax.collections[0].get_offsets()
    assert np.asarray(offsets).tolist() == [[1.0, 1.2], [2.0, 1.9]]
    assert "R² = 0.900" in ax.texts[0].get_text() and "MAE = 0.150 eV" in ax.texts[0].get_text()
    assert plots.figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_campaign_figure_traces_the_table():
    it = pd.DataFrame(
        {
            "iteration": [1, 2, 3],
            "best_so_far": [2.0, 2.5, 2.5],
            "valid_rate": [0.5, 1.0, 0.75],
            "n_valid": [5, 10, 6],
            "n_proposed": [10, 10, 8],
        }
    )
    fig = plots.campaign_figure(it, window=(2.2, np.inf))
    best_ax, rate_ax = fig.axes
    step = best_ax.get_lines()[0]
    assert step.get_ydata().tolist() == [2.0, 2.5, 2.5]
    lines = {line.get_label(): line for line in rate_ax.get_lines()}
    rate, cumulative = lines["this iteration"], lines["cumulative"]
    assert rate.get_ydata().tolist() == [50.0, 100.0, 75.0]
    assert cumulative.get_ydata() == pytest.approx([50.0, 75.0, 75.0])
    # no series hidden under another: the thick cumulative line lies beneath, translucent
    assert cumulative.get_zorder() < rate.get_zorder() and cumulative.get_alpha() < 1
    # iterations are whole numbers on the axis
    ticks = rate_ax.xaxis.get_major_locator().tick_values(0.5, 3.5)
    assert len(ticks) and all(float(t).is_integer() for t in ticks)
    lo, hi = best_ax.get_ylim()
    assert lo <= 2.0 and hi < 10  # the open window does not stretch the axis


def test_funnel_and_generator_figures():
    steps = [
        {"filter": "in_window", "n_in": 1000, "n_out": 100, "removed": 900},
        {"filter": "novel", "n_in": 100, "n_out": 0, "removed": 100},
    ]
    fig = plots.funnel_figure(steps)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["generated", "in_window", "novel"]
    assert [t.get_text() for t in ax.texts] == ["1,000", "100  (−900)", "0  (−100)"]
    gen = pd.DataFrame({"n_atoms": [2, 3, 3, 9], "n_elements": [2, 2, 3, 4]})
    fig = plots.generator_figure(gen, max_atoms=8, max_elements=4)
    elements_ax = fig.axes[0]
    heights = [p.get_height() for p in elements_ax.patches]
    assert heights == [0, 2, 1, 1]  # bins 1..4 elements
    for ax in fig.axes:  # counts: whole-number ticks on both axes
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            assert all(float(t).is_integer() for t in axis.get_major_locator().tick_values(lo, hi))


def test_campaign_figure_for_a_closed_window_counts_hits():
    it = pd.DataFrame(
        {
            "iteration": [1, 2, 3],
            "best_so_far": [5.0, 5.0, 5.5],
            "valid_rate": [1.0, 0.5, 1.0],
            "n_hits": [3, 4, 6],
        }
    )
    fig = plots.campaign_figure(it, window=(2.0, 3.0))
    hits_ax = fig.axes[0]
    assert hits_ax.get_lines()[0].get_ydata().tolist() == [3.0, 4.0, 6.0]
    assert "2.00–3.00 eV" in hits_ax.get_title()


def test_no_candidates_says_why(partial_run):
    cand = pd.read_csv(partial_run / "screen" / "candidates.csv")
    cand.head(0).to_csv(partial_run / "screen" / "candidates.csv", index=False)
    screened = cand.assign(band_gap_mean=[5.1, 4.2, 3.3, 2.4])
    screened.to_parquet(partial_run / "screen" / "screened.parquet", index=False)
    page = render_report(partial_run)
    assert "0 candidate formulas passed every filter" in page
    assert "The highest predicted gap among the 4 screened formulas is 5.10 eV." in page


def test_window_probability_and_decomposition_when_the_run_has_them(hand_run):
    """Columns written by newer stages (p_in_window, decomposition) show up; older runs say why not."""
    cand = pd.read_csv(hand_run / "screen" / "candidates.csv")
    cand["p_in_window"] = [0.62, 0.97, 0.81, 0.55]
    cand["p_metal"] = [0.05, 0.01, 0.02, 0.20]
    cand["fidelity"] = "pbe"
    cand.to_csv(hand_run / "screen" / "candidates.csv", index=False)
    rel = pd.read_csv(hand_run / "structure" / "relaxed.csv")
    before = render_report(hand_run)
    assert "decomposition" not in rel.columns
    # LiF sits on the hull: no products to name
    assert "0.000 (on or below the hull of the known phases: no decomposition products)" in before
    rel.loc[rel["formula"] == "LiF", "e_above_hull"] = 0.042
    rel["decomposition"] = ["", "0.5 LiF + 0.5 NaF"]
    rel.to_csv(hand_run / "structure" / "relaxed.csv", index=False)
    library = hand_run / "library.csv"
    pd.DataFrame(
        {
            "material_id": ["mp-1138", "mp-682", "mp-9999"],
            "reduced_formula": ["LiF", "NaF", "NaF"],
            "formation_energy_per_atom": [-3.1, -2.9, -2.5],  # mp-682 is NaF's lowest-energy entry
        }
    ).to_csv(library, index=False)
    (hand_run / "structure" / "structure_settings.json").write_text(json.dumps({"library": str(library)}))
    page = render_report(hand_run)
    head = page.split('<table id="candidate-table">', 1)[1].split("</thead>", 1)[0]
    assert "<th>P(gap in window) (%)</th>" in head
    assert head.index("Predicted gap") < head.index("P(gap in window)") < head.index("Formation energy")
    assert re.search(
        r'<td class="formula">LiF</td><td class="num">8.70 ± 0.25</td><td class="num">97.0</td>', page
    )
    assert "P(gap in ≥ 6.00 eV) = 97 %" in page  # beside mean ± std in the structure card
    assert "<th>P(metal) (%)</th>" in head and "and stand for PBE (DFT) band gaps" in page
    mp = "https://next-gen.materialsproject.org/materials/"
    assert (
        f'0.042 → decomposes into 0.5 <a class="mp" href="{mp}mp-1138">LiF</a> + '
        f'0.5 <a class="mp" href="{mp}mp-682">NaF</a>'
    ) in page
    # SrYF5 has no energy above hull: the card says why instead of a blank
    assert "not computed: no relaxed energy" in page
