"""Drawing a cluster job's map: the 2-D projection of a sample of its rows, coloured by cluster, each
cluster labelled with its top terms at the median of its points.

``.png`` is drawn with matplotlib (imported only then: ``pip install matplotlib``). ``.html`` needs nothing:
one self-contained file with an inline SVG, the document's text in each point's tooltip (the SVG
``<title>``, which every browser shows on hover, no script needed).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedfleet.cluster_types import NOISE, ClusterMap, MapPoint

# Twenty distinguishable colours (matplotlib's tab20, dark shades first); noise is grey.
PALETTE = (
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"),
    *("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"),
)
NOISE_COLOUR = "#bbbbbb"
LABEL_TERMS = 3


def colour(cluster: int) -> str:
    return NOISE_COLOUR if cluster == NOISE else PALETTE[cluster % len(PALETTE)]


def labels(cluster_map: ClusterMap) -> dict[int, tuple[float, float, str]]:
    """Each cluster's label (its top terms) and where it goes: the median of its points."""
    terms = {c.cluster: ", ".join(t for t, _ in c.terms[:LABEL_TERMS]) for c in cluster_map.clusters}
    placed: dict[int, tuple[float, float, str]] = {}
    for cluster in sorted({p.cluster for p in cluster_map.points} - {NOISE}):
        xy = np.array([(p.x, p.y) for p in cluster_map.points if p.cluster == cluster])
        x, y = np.median(xy, axis=0)
        placed[cluster] = (float(x), float(y), f"{cluster}: {terms.get(cluster, '')}")
    return placed


def render(cluster_map: ClusterMap, output: Path, title: str = "") -> Path:
    """Write the map to ``output`` (.png or .html, by its suffix)."""
    if not cluster_map.points:
        raise ValueError("the cluster map has no points to draw")
    suffix = output.suffix.lower()
    if suffix == ".png":
        render_png(cluster_map, output, title)
    elif suffix in (".html", ".htm"):
        output.write_text(render_html(cluster_map, title), encoding="utf-8")
    else:
        raise ValueError(f"cannot draw a map as {output.name!r}: use a .png or .html file name")
    return output


def render_png(cluster_map: ClusterMap, output: Path, title: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("drawing a PNG needs matplotlib (pip install matplotlib); or write .html") from None
    points = cluster_map.points
    fig, ax = plt.subplots(figsize=(11, 8), dpi=110)
    ax.scatter(
        [p.x for p in points], [p.y for p in points], c=[colour(p.cluster) for p in points], s=9, alpha=0.7, lw=0
    )
    for x, y, text in labels(cluster_map).values():
        ax.annotate(
            text,
            (x, y),
            fontsize=8,
            ha="center",
            weight="bold",
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
        )
    ax.set_title(title or f"{len(points)} documents, {cluster_map.projection.upper()} projection")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)


class _Frame:
    """Maps data coordinates onto an SVG canvas (y grows downwards there), with a margin."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], width: float, height: float, margin: float) -> None:
        self.low = np.array([min(xs), min(ys)])
        span = np.array([max(xs), max(ys)]) - self.low
        self.scale = np.array([width - 2 * margin, height - 2 * margin]) / np.where(span > 0, span, 1.0)
        self.height = height
        self.margin = margin

    def __call__(self, x: float, y: float) -> tuple[float, float]:
        sx, sy = self.margin + (np.array([x, y]) - self.low) * self.scale
        return float(sx), float(self.height - sy)


def _circle(point: MapPoint, x: float, y: float) -> str:
    """One point, its document's id, cluster and text as the hover tooltip."""
    tip = f"{html.escape(point.id)} (cluster {point.cluster})&#10;{html.escape(point.text)}"
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour(point.cluster)}"><title>{tip}</title></circle>'


def render_html(cluster_map: ClusterMap, title: str = "") -> str:
    """A self-contained HTML page: an SVG scatter, a legend, the document's text on hover."""
    width, height = 1000.0, 720.0
    points = cluster_map.points
    frame = _Frame([p.x for p in points], [p.y for p in points], width, height, margin=24.0)
    circles = "\n".join(
        '<circle cx="{0[0]:.1f}" cy="{0[1]:.1f}" r="3" fill="{1}">'.format(frame(p.x, p.y), colour(p.cluster))
        + f"<title>{html.escape(p.id)} (cluster {p.cluster})&#10;{html.escape(p.text)}</title></circle>"
        for p in points
    )
    tags = [
        '<text x="{:.1f}" y="{:.1f}" class="label">'.format(*frame(x, y)) + f"{html.escape(text)}</text>"
        for x, y, text in labels(cluster_map).values()
    ]
    legend = "".join(
        f'<li><span style="background:{colour(c.cluster)}"></span>{c.cluster}: {c.size} rows, '
        f"{html.escape(', '.join(t for t, _ in c.terms[:6]))}</li>"
        for c in cluster_map.clusters
    )
    heading = html.escape(title or f"{len(points)} documents, {cluster_map.projection.upper()} projection")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
svg {{ border: 1px solid #ddd; }}
circle {{ opacity: 0.75; }} circle:hover {{ opacity: 1; stroke: #000; }}
.label {{ font-size: 12px; font-weight: bold; text-anchor: middle; }}
.label {{ paint-order: stroke; stroke: #fff; stroke-width: 3px; }}
ul {{ list-style: none; padding: 0; columns: 2; font-size: 13px; }}
li span {{ display: inline-block; width: 10px; height: 10px; margin-right: 6px; }}
</style></head>
<body><h3>{heading}</h3><p>Hover a point to read its document.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}">
{circles}
{"".join(tags)}
</svg>
<ul>{legend}</ul>
</body></html>
"""
