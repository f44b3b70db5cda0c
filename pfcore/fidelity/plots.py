"""PNG plots for people: per-column distributions and the correlation-matrix difference.

Plots are drawn from the report's own ``distributions`` and ``correlation`` entries (small
histograms computed by ``evaluate``), so a report loaded back from ``report.json`` can be
re-plotted without the data. Figures are built with ``matplotlib.figure.Figure`` (the Agg
canvas) rather than pyplot: no display, no global backend state, safe in worker threads.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pfcore.atomic import atomic_write

if TYPE_CHECKING:
    from pfcore.fidelity.report import FidelityReport

__all__ = ["plot_columns", "plot_correlation_diff", "distributions"]

_REAL = "#1f4e79"
_SYN = "#e07b39"


def distributions(
    prep: Any, max_columns: int, bins: int = 30, top: int = 15
) -> dict[str, dict[str, Any]]:
    """Small per-column summaries for plotting: shared-bin histograms or top-level frequencies.

    Numeric ranges span the 0.5-99.5 percentiles of both tables (outliers are clipped into the
    edge bins) so one far outlier does not squash the plot.
    """
    out: dict[str, dict[str, Any]] = {}
    for info in prep.columns[:max_columns]:
        r = prep.values["real"][info.name]
        s = prep.values["synthetic"][info.name]
        if info.is_numeric:
            rf, sf = r[np.isfinite(r)], s[np.isfinite(s)]
            if rf.size == 0 and sf.size == 0:
                continue
            pooled = [x for x in (rf, sf) if x.size]
            lo = min(float(np.percentile(x, 0.5)) for x in pooled)
            hi = max(float(np.percentile(x, 99.5)) for x in pooled)
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, bins + 1)

            def hist(x: np.ndarray, edges: np.ndarray = edges) -> list[float]:
                if x.size == 0:
                    return [0.0] * bins
                return (
                    np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)[0] / x.size
                ).tolist()

            out[info.name] = {
                "type": "histogram",
                "role": info.role,
                "edges": edges.tolist(),
                "real": hist(rf),
                "synthetic": hist(sf),
            }
        else:
            levels = prep.levels[info.name]
            n = len(levels)
            pr = np.bincount(r[r >= 0], minlength=n) / max((r >= 0).sum(), 1)
            ps = np.bincount(s[s >= 0], minlength=n) / max((s >= 0).sum(), 1)
            order = np.argsort(-pr, kind="stable")[:top]
            labels = [str(levels[i]) for i in order]
            real_f, syn_f = pr[order].tolist(), ps[order].tolist()
            if n > top:
                labels.append("(other)")
                real_f.append(float(1 - sum(real_f)))
                syn_f.append(float(1 - sum(syn_f)))
            out[info.name] = {
                "type": "bars",
                "role": info.role,
                "labels": labels,
                "real": real_f,
                "synthetic": syn_f,
            }
    return out


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    atomic_write(path, buf.getvalue())


def _figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Any, Any]:
    """A standalone Figure (Agg canvas): no pyplot global state, no display needed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def plot_columns(report: FidelityReport, path: Path) -> None:
    """Grid of real vs synthetic distributions, one panel per column, titled with its score."""
    dists = report.distributions
    shapes = {c["name"]: c.get("shape") for c in report.columns}
    names = list(dists)
    if not names:
        fig, axes = _figure(1, 1, (4, 2))
        axes[0][0].text(0.5, 0.5, "no columns to plot", ha="center", va="center")
        axes[0][0].axis("off")
        _save(fig, path)
        return
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = _figure(nrows, ncols, (4.2 * ncols, 3.0 * nrows))
    for i, name in enumerate(names):
        ax = axes[i // ncols][i % ncols]
        d = dists[name]
        if d["type"] == "histogram":
            edges = np.asarray(d["edges"])
            width = edges[1] - edges[0]
            ax.bar(
                edges[:-1],
                d["real"],
                width=width,
                align="edge",
                alpha=0.55,
                color=_REAL,
                label="real",
            )
            ax.bar(
                edges[:-1],
                d["synthetic"],
                width=width,
                align="edge",
                alpha=0.55,
                color=_SYN,
                label="synthetic",
            )
            if d.get("role") == "datetime":
                ax.set_xlabel("seconds since epoch (UTC)", fontsize=7)
        else:
            x = np.arange(len(d["labels"]))
            ax.bar(x - 0.2, d["real"], width=0.4, color=_REAL, label="real")
            ax.bar(x + 0.2, d["synthetic"], width=0.4, color=_SYN, label="synthetic")
            ax.set_xticks(x)
            ax.set_xticklabels([lbl[:12] for lbl in d["labels"]], rotation=60, fontsize=6)
        score = shapes.get(name)
        title = f"{name}" + (f"  shape {score:.3f}" if score is not None else "")
        ax.set_title(title[:48], fontsize=9)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    for j in range(len(names), nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    fig.tight_layout()
    _save(fig, path)


def plot_correlation_diff(report: FidelityReport, path: Path) -> None:
    """Real and synthetic Pearson matrices and their difference (synthetic - real)."""
    corr = report.correlation or {}
    names = corr.get("columns") or []
    if len(names) < 2:
        fig, axes = _figure(1, 1, (5, 2))
        axes[0][0].text(
            0.5,
            0.5,
            "fewer than two numeric columns: no correlation matrix",
            ha="center",
            va="center",
        )
        axes[0][0].axis("off")
        _save(fig, path)
        return

    def mat(key: str) -> np.ndarray:
        return np.array(
            [[np.nan if v is None else v for v in row] for row in corr[key]], dtype=float
        )

    real, syn = mat("real"), mat("synthetic")
    k = len(names)
    size = max(4.0, 0.35 * k + 2.5)
    fig, axes = _figure(1, 3, (3 * size, size))
    panels = (
        ("real", real, "RdBu_r", (-1, 1)),
        ("synthetic", syn, "RdBu_r", (-1, 1)),
        ("synthetic - real", syn - real, "PuOr_r", (-1, 1)),
    )
    for ax, (title, m, cmap, (vmin, vmax)) in zip(axes[0], panels, strict=True):
        im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels([n[:14] for n in names], rotation=90, fontsize=7)
        ax.set_yticklabels([n[:14] for n in names], fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    _save(fig, path)
