r"""The report's figures (matplotlib, Agg; no pyplot state, safe in any process).

Every function takes plain arrays or tables and returns a
:class:`matplotlib.figure.Figure`; :func:`figure_png` turns one into PNG bytes
for embedding, :func:`save_figure` writes it to a file.

Example:
    >>> fig = parity_figure([1.0, 2.0, 3.0], [1.1, 1.9, 3.2])
    >>> figure_png(fig)[:4]
    b'\x89PNG'
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gapforge import columns as C

WINDOW_COLOUR = "#2ca02c"
PROPOSAL_COLOUR = "#d62728"
DPI = 110


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    """A figure with an Agg canvas attached (no global pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure atomically (format from the extension)."""
    from gapforge.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=DPI)
    return path


def _shade_window(ax: Any, window: tuple[float, float] | None, *, axis: str = "y") -> None:
    """Shade the target window without changing the axis limits (open windows run to the edge)."""
    if window is None:
        return
    lo, hi = window
    get, set_, span = (
        (ax.get_ylim, ax.set_ylim, ax.axhspan) if axis == "y" else (ax.get_xlim, ax.set_xlim, ax.axvspan)
    )
    a, b = get()
    if not math.isfinite(hi):
        b = max(b, lo + 0.5)
    top = hi if math.isfinite(hi) else b + 10 * (b - a + 1)
    span(lo, top, color=WINDOW_COLOUR, alpha=0.12, label="target window", zorder=0)
    set_(min(a, lo - 0.1) if lo < a else a, max(b, hi + 0.1) if math.isfinite(hi) and hi > b else b)


def parity_figure(
    y_true: Sequence[float] | np.ndarray,
    y_pred: Sequence[float] | np.ndarray,
    y_std: Sequence[float] | np.ndarray | None = None,
    *,
    metrics: Mapping[str, float] | None = None,
    window: tuple[float, float] | None = None,
    title: str = "Screening model on the hold-out set",
) -> Figure:
    """Predicted vs reference band gap.

    Args:
        y_true: reference gaps (eV), shape (N,).
        y_pred: predicted means (eV), shape (N,).
        y_std: predicted standard deviations (eV), shape (N,): points are
            coloured by it.
        metrics: shown in the corner (``r2``, ``mae``, ``rmse``...).
        window: the target window, shaded on both axes.
        title: axes title.
    """
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    ok = np.isfinite(t) & np.isfinite(p)
    fig = new_figure(5.2, 4.6)
    ax = fig.add_subplot()
    if ok.any():
        hi = float(max(t[ok].max(), p[ok].max(), 1.0)) * 1.05
        lo = float(min(t[ok].min(), p[ok].min(), 0.0))
    else:
        lo, hi = 0.0, 1.0
    if window is not None:
        wlo, whi = window
        whi = whi if math.isfinite(whi) else hi
        ax.axhspan(wlo, whi, color=WINDOW_COLOUR, alpha=0.08, zorder=0)
        ax.axvspan(wlo, whi, color=WINDOW_COLOUR, alpha=0.08, zorder=0, label="target window")
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", label="y = x")
    if y_std is not None:
        s = np.asarray(y_std, dtype=float)
        sc = ax.scatter(t[ok], p[ok], c=s[ok], s=9, cmap="viridis", alpha=0.75, linewidths=0)
        fig.colorbar(sc, ax=ax, label="predicted std (eV)")
    else:
        ax.scatter(t[ok], p[ok], s=9, alpha=0.6, linewidths=0)
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="reference band gap (eV)",
        ylabel="predicted band gap (eV)",
        title=title,
    )
    ax.set_aspect("equal")
    if metrics:
        lines = []
        for keys, label in (
            (("r2",), "R²"),
            (("mae_eV", "mae"), "MAE"),
            (("rmse_eV", "rmse"), "RMSE"),
            (("n",), "n"),
        ):
            key = next((k for k in keys if metrics.get(k) is not None), None)
            if key is not None:
                v = metrics[key]
                lines.append(
                    f"{label} = {v:.3f}" + (" eV" if label in ("MAE", "RMSE") else "")
                    if label != "n"
                    else f"n = {int(v)}"
                )
        ax.text(
            0.03,
            0.97,
            "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=9,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"},
        )
    ax.legend(loc="lower right", fontsize=8)
    return fig


def campaign_figure(iterations: pd.DataFrame, *, window: tuple[float, float] | None = None) -> Figure:
    """The campaign's best gap so far and valid-decode rate per iteration.

    Args:
        iterations: one row per iteration with ``iteration``, ``best_so_far``
            (eV) and ``valid_rate`` (0..1); optional ``best_gap`` (best of the
            iteration) and ``n_hits`` (labelled formulas inside the window so far).
        window: target window. An open window (``gap_max`` infinite) is shaded
            on the best-gap trace; for a closed window the left panel counts the
            labelled formulas inside it (``n_hits``) instead.
    """
    it = iterations["iteration"].to_numpy(dtype=float)
    fig = new_figure(9.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    closed = window is not None and math.isfinite(window[1])
    if closed and "n_hits" in iterations:
        # a window search: progress is the number of labelled formulas inside the window
        ax1.step(
            it,
            iterations["n_hits"].to_numpy(dtype=float),
            where="post",
            color=WINDOW_COLOUR,
            lw=2,
            label="labelled formulas in window",
        )
        ax1.set(
            xlabel="iteration",
            ylabel="formulas in window (so far)",
            title=f"Hits in {window[0]:.2f}–{window[1]:.2f} eV so far",
        )
        ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax1.legend(fontsize=8, loc="lower right")
    else:
        ax1.step(
            it,
            iterations["best_so_far"].to_numpy(dtype=float),
            where="post",
            color="C0",
            lw=2,
            label="best so far",
            zorder=2,
        )
        if "best_gap" in iterations:  # hollow markers on top: visible where they touch the step line
            ax1.plot(
                it,
                iterations["best_gap"].to_numpy(dtype=float),
                "o",
                ms=5,
                mfc="none",
                mec="C3",
                mew=1.2,
                ls="none",
                label="best of the iteration",
                zorder=3,
            )
        ax1.set(xlabel="iteration", ylabel="band gap (eV)", title="Best labelled gap so far")
        _shade_window(ax1, window)
        ax1.legend(fontsize=8, loc="lower right")
    rate = iterations["valid_rate"].to_numpy(dtype=float)
    # the thick cumulative line goes underneath, translucent; the per-iteration series are drawn over it
    # with different markers and line styles, so no series hides another where their values coincide
    if {"n_valid", "n_proposed"} <= set(iterations.columns):
        cum = np.cumsum(iterations["n_valid"].to_numpy(float)) / np.maximum(
            np.cumsum(iterations["n_proposed"].to_numpy(float)), 1
        )
        ax2.plot(it, 100 * cum, color="C3", lw=4, alpha=0.45, label="cumulative", zorder=1)
    ax2.plot(it, 100 * rate, "o-", ms=4, color="C1", lw=1.2, label="this iteration", zorder=3)
    if "valid_first_rate" in iterations:
        first = iterations["valid_first_rate"].to_numpy(dtype=float)
        ax2.plot(
            it, 100 * first, "s", ms=6, mfc="none", mec="C4", ls=":", color="C4", lw=1,
            label="acquisition optimum only", zorder=4,
        )  # fmt: skip
    ax2.set(xlabel="iteration", ylabel="valid decodes (%)", ylim=(-2, 102), title="Valid-decode rate")
    ax2.legend(fontsize=8, loc="lower right")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def latent_figure(latent_map: pd.DataFrame, *, window: tuple[float, float] | None = None) -> Figure:
    """2-D map of the latent space: labelled formulas coloured by gap, proposals marked.

    Args:
        latent_map: ``x``, ``y``, ``kind`` (``labelled`` or ``proposal``), optional
            ``band_gap`` (eV) and ``iteration``.
        window: proposals whose gap falls in it are drawn as filled stars.
    """
    fig = new_figure(6.4, 5.0)
    ax = fig.add_subplot()
    kind = latent_map.get("kind", pd.Series(["labelled"] * len(latent_map))).astype(str)
    lab = latent_map[kind != "proposal"]
    prop = latent_map[kind == "proposal"]
    gap_col = C.BAND_GAP if C.BAND_GAP in latent_map else None
    if len(lab):
        if gap_col is not None:
            sc = ax.scatter(
                lab["x"],
                lab["y"],
                c=pd.to_numeric(lab[gap_col], errors="coerce"),
                s=7,
                cmap="viridis",
                alpha=0.6,
                linewidths=0,
                label="labelled set",
            )
            fig.colorbar(sc, ax=ax, label="band gap (eV)")
        else:
            ax.scatter(lab["x"], lab["y"], s=7, color="0.6", alpha=0.6, linewidths=0, label="labelled set")
    if len(prop):
        ax.scatter(
            prop["x"], prop["y"], marker="x", s=22, color=PROPOSAL_COLOUR, lw=1.1, label="campaign proposals"
        )
        if window is not None and gap_col is not None:
            g = pd.to_numeric(prop[gap_col], errors="coerce").to_numpy()
            hit = (g >= window[0]) & (g <= window[1])
            if hit.any():
                ax.scatter(
                    prop["x"][hit],
                    prop["y"][hit],
                    marker="*",
                    s=90,
                    color="gold",
                    edgecolors="k",
                    lw=0.6,
                    label="proposals in window",
                    zorder=5,
                )
    ax.set(xlabel="latent PC 1", ylabel="latent PC 2", title="Latent space (PCA of the autoencoder codes)")
    ax.legend(fontsize=8, loc="best")
    return fig


def generator_figure(
    generated: pd.DataFrame, *, max_atoms: int | None = None, max_elements: int | None = None
) -> Figure:
    """Distribution of the generated formulas' sizes.

    Args:
        generated: ``n_atoms`` and ``n_elements`` per distinct formula
            (optional ``n_generated``, the times each was drawn).
        max_atoms: screen limit (kept: fewer atoms), drawn as a dashed line.
        max_elements: screen limit (kept: fewer elements), drawn as a dashed line.
    """
    fig = new_figure(9.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    ne = generated["n_elements"].to_numpy(dtype=int)
    na = generated["n_atoms"].to_numpy(dtype=int)
    if len(ne):
        bins = np.arange(0.5, max(ne.max(), 1) + 1.5)
        ax1.hist(ne, bins=bins, color="C0", edgecolor="white")
    ax1.set(xlabel="elements per formula", ylabel="distinct formulas", title="Elements per generated formula")
    if max_elements is not None:
        ax1.axvline(max_elements - 0.5, color="k", ls="--", lw=1, label=f"screen: < {max_elements}")
        ax1.legend(fontsize=8)
    if len(na):
        top = int(np.percentile(na, 99)) + 1
        bins = np.arange(0.5, max(top, 2) + 1.5)
        ax2.hist(np.minimum(na, top + 1), bins=bins, color="C2", edgecolor="white")
    ax2.set(
        xlabel="atoms per reduced formula", ylabel="distinct formulas", title="Atoms per generated formula"
    )
    if max_atoms is not None:
        ax2.axvline(max_atoms - 0.5, color="k", ls="--", lw=1, label=f"screen: < {max_atoms}")
        ax2.legend(fontsize=8)
    for ax in (ax1, ax2):  # counts of elements, atoms and formulas are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def funnel_figure(steps: Sequence[Mapping[str, Any]]) -> Figure:
    """Formulas left after each filter, with how many each filter removed.

    Args:
        steps: in order, ``{"filter", "n_in", "n_out", "removed"}`` (the first
            step's ``n_in`` is the number of generated formulas).
    """
    labels = ["generated"] + [str(s["filter"]) for s in steps]
    counts = [int(steps[0]["n_in"]) if steps else 0] + [int(s["n_out"]) for s in steps]
    fig = new_figure(7.5, 0.55 * len(labels) + 1.2)
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    positive = [max(c, 1) for c in counts]
    ax.barh(y, positive, color=["0.55"] + ["C0"] * len(steps), height=0.65)
    ax.set_xscale("log")
    ax.set_yticks(y, labels)
    for yi, c, s in zip(y, counts, [None, *steps], strict=True):
        text = f"{c:,}" if s is None else f"{c:,}  (−{int(s['removed']):,})"
        ax.text(max(c, 1) * 1.08, yi, text, va="center", fontsize=8)
    ax.set_xlim(0.8, max(positive) * 12)
    ax.set(xlabel="formulas remaining (log scale)", title="Screening funnel")
    return fig


def candidates_figure(
    table: pd.DataFrame, *, window: tuple[float, float] | None = None, top: int = 25
) -> Figure:
    """Predicted gap ± std of the top candidates (coloured by energy above hull if known)."""
    df = table.head(top)
    fig = new_figure(7.5, 0.28 * len(df) + 1.4)
    ax = fig.add_subplot()
    y = np.arange(len(df))[::-1]
    mean = pd.to_numeric(df[C.BAND_GAP_MEAN], errors="coerce").to_numpy()
    std = pd.to_numeric(df.get(C.BAND_GAP_STD, pd.Series(np.zeros(len(df)))), errors="coerce").to_numpy()
    colours: Any = "C0"
    if "e_above_hull" in df:
        eh = pd.to_numeric(df["e_above_hull"], errors="coerce").to_numpy()
        if np.isfinite(eh).any():
            import matplotlib as mpl

            norm = mpl.colors.Normalize(min(0.0, float(np.nanmin(eh))), max(0.2, float(np.nanmax(eh))))
            cmap = mpl.colormaps["plasma_r"]
            colours = [cmap(norm(v)) if np.isfinite(v) else (0.6, 0.6, 0.6, 1) for v in eh]
            fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="E above hull (eV/atom)")
    ax.errorbar(mean, y, xerr=np.nan_to_num(std), fmt="none", ecolor="0.5", lw=1)
    ax.scatter(mean, y, c=colours, s=30, zorder=3)
    ax.set_yticks(y, df[C.FORMULA].astype(str).tolist())
    _shade_window(ax, window, axis="x")
    ax.set(xlabel="predicted band gap (eV)", title="Top candidates (± 1 std)")
    return fig


__all__ = [
    "campaign_figure",
    "candidates_figure",
    "figure_png",
    "funnel_figure",
    "generator_figure",
    "latent_figure",
    "new_figure",
    "parity_figure",
    "save_figure",
]
