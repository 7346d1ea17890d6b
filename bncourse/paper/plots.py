"""Plotting helpers for the book.  Matplotlib is imported inside the functions that draw, so
``import bncourse.plots`` (like ``import bncourse``) needs NumPy alone.

:func:`statistic_mask` says which values of an (N, C, S) tensor (S = H·W, the flattened
spatial axes) share one normalization statistic; :func:`draw_norm_cube` shades that set on
a box drawn in oblique projection; :func:`norm_axes_figure` puts one box per method side by
side, in the style of Figure 2 of Wu & He, "Group Normalization" (2018).
"""

import numpy as np

NORMS = ("batch", "layer", "instance", "group")
TITLES = {"batch": "Batch norm", "layer": "Layer norm", "instance": "Instance norm",
          "group": "Group norm"}


def statistic_mask(kind, shape, num_groups=None, n=0, c=0):
    """Boolean (N, C, S) mask of the values that share a statistic with those at (n, c).

    kind: "batch" (channel c over N and S), "layer" (sample n over C and S), "instance"
    (sample n, channel c over S), or "group" (sample n, the group of C/num_groups channels
    holding c, over S).  RMS norm shares layer norm's mask, batch renorm batch norm's.
    """
    N, C, S = shape
    mask = np.zeros(shape, dtype=bool)
    if kind == "batch":
        mask[:, c, :] = True
    elif kind == "layer":
        mask[n, :, :] = True
    elif kind == "instance":
        mask[n, c, :] = True
    elif kind == "group":
        if num_groups is None or C % num_groups:
            raise ValueError(f"group norm needs num_groups dividing C={C}, got {num_groups!r}")
        size = C // num_groups
        start = (c // size) * size
        mask[n, start:start + size, :] = True
    else:
        raise ValueError(f"kind must be one of {NORMS}, got {kind!r}")
    return mask


def _face_polygons(shape, depth):
    """The visible cells of an (N, C, S) box: C to the right, S up, N going back along
    ``depth`` (dx, dy) per sample.  Yields (polygon, (n, c, s), face)."""
    N, C, S = shape
    dx, dy = depth
    for c in range(C):                                      # front face: sample 0
        for s in range(S):
            yield [(c, s), (c + 1, s), (c + 1, s + 1), (c, s + 1)], (0, c, S - 1 - s), "front"
    for n in range(N):                                      # top face: the first row of S
        for c in range(C):
            x0, y0 = c + n * dx, S + n * dy
            yield [(x0, y0), (x0 + 1, y0), (x0 + 1 + dx, y0 + dy), (x0 + dx, y0 + dy)], (n, c, 0), "top"
    for n in range(N):                                      # right face: the last channel
        for s in range(S):
            x0, y0 = C + n * dx, s + n * dy
            face = [(x0, y0), (x0 + dx, y0 + dy), (x0 + dx, y0 + 1 + dy), (x0, y0 + 1)]
            yield face, (n, C - 1, S - 1 - s), "side"


def draw_norm_cube(ax, mask, title=None, color="#4a7fc1", depth=(0.45, 0.35)):
    """Draw the box of ``mask.shape`` == (N, C, S) on ``ax``, cells in ``mask`` shaded."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgb

    shade = {"front": 1.0, "top": 0.8, "side": 0.65}        # lighter on top, darker on the side
    base = np.array(to_rgb(color))
    polys, faces = [], []
    for poly, idx, face in _face_polygons(mask.shape, depth):
        polys.append(poly)
        if mask[idx]:
            faces.append(tuple(base * shade[face]))
        else:                                               # white, faintly shaded
            faces.append((0.7 + 0.3 * shade[face],) * 3)
    ax.add_collection(PolyCollection(polys, facecolors=faces, edgecolors="0.35", linewidths=0.6))
    N, C, S = mask.shape
    dx, dy = depth
    ax.annotate("", xy=(-0.5, S), xytext=(-0.5, 0), arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.text(-0.9, S / 2, "H, W", rotation=90, ha="center", va="center", fontsize=9)
    ax.annotate("", xy=(C, -0.5), xytext=(0, -0.5), arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.text(C / 2, -1.1, "C", ha="center", va="center", fontsize=9)
    ax.annotate("", xy=(-0.3 + N * dx, S + 0.3 + N * dy), xytext=(-0.3, S + 0.3),
                arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.text(-0.6 + N * dx / 2, S + 0.6 + N * dy / 2, "N", ha="center", va="center", fontsize=9)
    ax.set_xlim(-1.4, C + N * dx + 0.3)
    ax.set_ylim(-1.5, S + N * dy + 0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11)
    return ax


def norm_axes_figure(kinds=NORMS, shape=(4, 6, 5), num_groups=2, n=0, c=0, ncols=None,
                     figsize=None):
    """A figure with one box per method in ``kinds`` (``ncols`` per row, all in one row by
    default), shading the values that share the statistic of sample ``n``, channel ``c``.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    ncols = ncols or len(kinds)
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (2.6 * ncols, 2.6 * nrows),
                             squeeze=False)
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    for ax, kind in zip(axes.flat, kinds):
        draw_norm_cube(ax, statistic_mask(kind, shape, num_groups, n, c), TITLES.get(kind, kind))
    fig.tight_layout()
    return fig


def gpu_results_figure(results):
    """Bar charts of GPU benchmark files, one panel per file, titled with the device.

    ``results``: [(file name, document)] as returned by ``bncourse.bench.gpu.load_results``.
    For each (shape, dtype) entry, four bars: the fused forward and backward's ``of_copy``
    (effective bandwidth over a copy's) and ``traffic_of_copy`` (real traffic over a copy's);
    dotted lines at the two-pass ceilings of ``of_copy`` (2/3 forward, 3/5 backward).
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    from ..bench.gpu import FUSED_TRAFFIC, MUST_MOVE

    ceilings = [MUST_MOVE[p] / FUSED_TRAFFIC[p] for p in ("fwd", "bwd")]
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 3.8), squeeze=False)
    series = [("fused fwd", "of_copy"), ("fused bwd", "of_copy"),
              ("fused fwd", "traffic_of_copy"), ("fused bwd", "traffic_of_copy")]
    for ax, (name, doc) in zip(axes[0], results):
        rows = doc["results"]
        pos = np.arange(len(rows))
        for k, (key, measure) in enumerate(series):
            ax.bar(pos + (k - 1.5) * 0.2, [r[measure].get(key, np.nan) for r in rows], 0.2,
                   label=f"{key}: {measure}")
        for level in ceilings:
            ax.axhline(level, color="0.5", ls=":")
        ax.set_xticks(pos, [f"{tuple(r['shape'])}\n{r['dtype']}" for r in rows], fontsize=7)
        ax.set_ylabel("fraction of the copy's bandwidth")
        ax.set_title(f"{doc['device']} (measured, {name})", fontsize=9)
        top = np.nanmax([r[m].get(k, np.nan) for r in rows for k, m in series] + ceilings)
        ax.set_ylim(0, 1.4 * top)                       # headroom: the legend sits above the bars
        ax.legend(fontsize=7, loc="upper center", ncols=2)
    fig.tight_layout()
    return fig
