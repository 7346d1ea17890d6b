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
