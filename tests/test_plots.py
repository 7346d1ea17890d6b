"""bncourse.paper.plots: imports without matplotlib; the shaded sets are what the package's
normalizations really share (read off their backward pass); the figure draws."""

import subprocess
import sys

import numpy as np
import pytest

import bncourse.numpy as bnp
from bncourse.paper.plots import NORMS, statistic_mask


def test_import_does_not_load_matplotlib():
    code = "import sys, bncourse.plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


FORWARD = {  # kind -> (forward, backward) of bncourse.numpy
    "batch": (bnp.batch_norm_forward, bnp.batch_norm_backward),
    "layer": (lambda x: bnp.layer_norm_forward(x, x.shape[1:]), bnp.layer_norm_backward),
    "instance": (bnp.instance_norm_forward, bnp.instance_norm_backward),
    "group": (lambda x: bnp.group_norm_forward(x, 3), bnp.group_norm_backward),
}


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("n,c", [(0, 0), (2, 4)])
def test_mask_is_the_support_of_the_backward_pass(rng, kind, n, c):
    """y[n, c, s] depends on x exactly where the mask says (a generic input)."""
    shape = (3, 6, 4)
    x = rng.standard_normal(shape)
    forward, backward = FORWARD[kind]
    _, cache = forward(x)
    dy = np.zeros(shape)
    dy[n, c, 1] = 1.0
    dx = backward(dy, cache)[0]
    np.testing.assert_array_equal(dx != 0, statistic_mask(kind, shape, 3, n, c))


def test_mask_sizes_and_errors():
    N, C, S = shape = (4, 6, 5)
    sizes = {k: statistic_mask(k, shape, 2).sum() for k in NORMS}
    assert sizes == {"batch": N * S, "layer": C * S, "instance": S, "group": C // 2 * S}
    with pytest.raises(ValueError, match="num_groups"):
        statistic_mask("group", shape, 4)
    with pytest.raises(ValueError, match="kind"):
        statistic_mask("weight", shape)


def test_figure_has_one_panel_per_method():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bncourse.paper.plots import norm_axes_figure

    fig = norm_axes_figure()
    try:
        assert [ax.get_title() for ax in fig.axes] == ["Batch norm", "Layer norm", "Instance norm", "Group norm"]
        assert all(len(ax.collections) == 1 for ax in fig.axes)
        fig.canvas.draw()
    finally:
        plt.close(fig)


def test_figure_in_a_grid():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bncourse.paper.plots import norm_axes_figure

    fig = norm_axes_figure(kinds=("batch", "layer", "group"), ncols=2)
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["Batch norm", "Layer norm", "Group norm", ""]  # row by row
        assert not fig.axes[3].axison                                    # the unused cell
    finally:
        plt.close(fig)


# --- legends leave the data visible ------------------------------------------------------


def hidden_data(fig):
    """[(panel title, legend entries, data points under the legend)] for every legend that
    covers plotted data, in display coordinates after a draw: line vertices and points every
    2 px along their segments, bars, scatter points; only what lies inside the panel."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        panel = ax.get_window_extent(renderer)

        def covered(points):
            points = points[np.isfinite(points).all(axis=1)]
            inside_panel = points[[panel.contains(*p) for p in points]]
            return sum(box.contains(*p) for p in inside_panel)

        hits = 0
        for line in ax.lines:
            xy = line.get_transform().transform(line.get_xydata())  # display pixels
            dense = [xy[:1]]
            for a, b in zip(xy[:-1], xy[1:]):
                n = max(1, int(np.hypot(*(b - a)) // 2))
                dense.append(a + (b - a) * np.linspace(0, 1, n + 1)[1:, None])
            hits += covered(np.concatenate(dense))
        for coll in ax.collections:
            offsets = coll.get_offsets()
            if len(offsets):
                hits += covered(coll.get_offset_transform().transform(offsets))
        for patch in ax.patches:
            extent = patch.get_window_extent(renderer)
            if np.isfinite(extent.bounds).all() and extent.width > 0 and extent.height > 0:
                hits += box.overlaps(extent) and panel.overlaps(extent)
        if hits:
            found.append((ax.get_title(), [t.get_text() for t in legend.get_texts()], hits))
    return found


def ci_and_full_runs():
    """Figure 1's runs as the chapter plots them: the CI schedule (its accuracies; the
    baseline rises at steps 1300-1500, where a legend once hid it) and the full run."""
    from bncourse.figure1 import Config, History, load_full_run

    full = load_full_run()  # the records chapter 9 plots, shipped with the package
    runs = {"full": (History.from_json(full["baseline"]), History.from_json(full["batchnorm"]))}
    ci_acc = {  # python -m bncourse.figure1 (1,500 steps), seed 0
        None: [0.098, 0.1, 0.102, 0.098, 0.112, 0.1, 0.112, 0.094, 0.112, 0.25, 0.102, 0.19,
               0.209, 0.383, 0.575, 0.574],
        "batch": [0.098, 0.872, 0.886, 0.873, 0.898, 0.911, 0.91, 0.915, 0.904, 0.92, 0.918,
                  0.922, 0.92, 0.918, 0.922, 0.906],
    }
    ci = []
    for norm, hist in zip((None, "batch"), runs["full"]):
        steps = list(range(0, 1600, 100))
        ci.append(History(Config(norm=norm), steps, ci_acc[norm], hist.percentiles[:16],
                          [np.nan] * 16))
    runs["ci"] = tuple(ci)
    return runs


@pytest.fixture
def plt():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.mark.parametrize("schedule", ["ci", "full"])
def test_figure1_legends_leave_the_curves_visible(plt, schedule):
    from bncourse.figure1 import plot_figure1

    baseline, batchnorm = ci_and_full_runs()[schedule]
    fig = plot_figure1(baseline, batchnorm)
    assert hidden_data(fig) == []
    if schedule == "full":
        fig.axes[0].set_ylim(0.7, 1.0)  # as chapter 9 shows it: the paper's range
        assert hidden_data(fig) == []


def test_sweep_legend_leaves_the_points_visible(plt):
    from bncourse.figure1 import plot_sweep

    baseline, batchnorm = ci_and_full_runs()["full"]
    values = [0.05, 0.5, 5.0]
    results = {None: [baseline, baseline, baseline], "batch": [batchnorm] * 3}
    assert hidden_data(plot_sweep(results, "learning rate", values)) == []


def test_gpu_results_legend_leaves_the_bars_visible(plt):
    from bncourse.plots import gpu_results_figure

    rows = [{"shape": shape, "dtype": dtype,
             "of_copy": {"fused fwd": 0.6, "fused bwd": 0.55},
             "traffic_of_copy": {"fused fwd": 1.5, "fused bwd": 1.7}}
            for shape in ([4096, 1024], [32, 64, 56, 56]) for dtype in ("float16", "float32")]
    fig = gpu_results_figure([("h100.json", {"device": "NVIDIA H100", "results": rows})])
    assert hidden_data(fig) == []


def test_hidden_data_sees_a_legend_on_a_curve(plt):
    """The check itself: a legend put on top of a line is reported."""
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0.5, 0.5], label="flat")
    ax.legend(loc="center")
    assert hidden_data(fig) and hidden_data(fig)[0][1] == ["flat"]
