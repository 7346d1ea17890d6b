"""``python -m bncourse.bench --backend cupy`` without a GPU, and its arithmetic: the
bandwidths and ratios that the results files store (the timing itself needs a GPU)."""

import subprocess
import sys

import pytest

from bncourse.bench import gpu
import bncourse.cupy as bcp


@pytest.mark.skipif(bcp.is_available(), reason="a GPU is present: the benchmark would run")
def test_exits_with_a_message_without_a_gpu():
    out = subprocess.run([sys.executable, "-m", "bncourse.bench", "--backend", "cupy"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "needs" in out.stderr and "GPU" in out.stderr, out.stderr


def test_bandwidths_and_ratios():
    shape, dtype = (1000, 250), "float32"                   # |x| = 1 MB
    t = {"copy": 2e-6, "fused fwd": 4e-6, "fused bwd": 5e-6, "fused fwd+bwd": 9e-6,
         "torch fwd": 8e-6, "torch bwd": 10e-6, "torch fwd+bwd": 18e-6, "generic fwd": 40e-6}
    r = gpu.summarize(shape, dtype, t)
    assert r["bytes"] == 10**6
    bw = r["bandwidth_GBps"]
    assert bw["copy"] == pytest.approx(1000.0)               # 2 MB in 2 us
    assert bw["fused fwd"] == pytest.approx(500.0)           # must move 2 MB, in 4 us
    assert bw["fused bwd"] == pytest.approx(600.0)           # 3 MB in 5 us
    assert r["of_copy"]["fused fwd"] == pytest.approx(0.5)
    assert r["traffic_of_copy"]["fused fwd"] == pytest.approx(0.75)   # really moves 3 MB
    assert r["time_vs_torch"] == pytest.approx({"fused fwd": 0.5, "fused bwd": 0.5,
                                                 "fused fwd+bwd": 0.5, "generic fwd": 5.0})
    assert "generic bwd" not in r["of_copy"]


def test_results_file_is_named_after_the_gpu(tmp_path):
    name = "NVIDIA H100 80GB HBM3"
    assert gpu.results_path(str(tmp_path), name) == str(tmp_path / "NVIDIA-H100-80GB-HBM3.json")
    assert gpu.results_path("benchmarks/results/", name).endswith("results/NVIDIA-H100-80GB-HBM3.json")
    assert gpu.results_path(str(tmp_path / "mine.json"), name) == str(tmp_path / "mine.json")


def _synthetic_run(device):
    # Made-up times to exercise the file format and the plot; never written to benchmarks/.
    t = {"copy": 2e-6, "fused fwd": 4e-6, "fused bwd": 5e-6, "fused fwd+bwd": 9e-6}
    return {"device": device, "repeat": 1}, [gpu.summarize((1000, 250), "float32", t),
                                            gpu.summarize((500, 250), "float16", t)]


def test_results_round_trip_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from bncourse.paper import plots

    assert gpu.load_results(str(tmp_path / "missing")) == []
    for device in ("GPU B", "GPU A"):
        meta, results = _synthetic_run(device)
        path = gpu.save_results(gpu.results_path(str(tmp_path) + "/", device), meta, results)
        assert path.endswith(device.replace(" ", "-") + ".json")
    (tmp_path / "notes.txt").write_text("not a results file")
    loaded = gpu.load_results(str(tmp_path))
    assert [name for name, _ in loaded] == ["GPU-A.json", "GPU-B.json"]
    assert loaded[0][1]["device"] == "GPU A"
    entry = loaded[0][1]["results"][1]
    assert (entry["shape"], entry["dtype"], entry["bytes"]) == ([500, 250], "float16", 250_000)
    assert entry["of_copy"]["fused fwd"] == pytest.approx(0.5)          # copy time / fwd time

    fig = plots.gpu_results_figure(loaded)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["GPU A (measured, GPU-A.json)", "GPU B (measured, GPU-B.json)"]
    heights = [p.get_height() for p in axes[0].patches]
    assert len(heights) == 4 * 2                              # 4 bars per (shape, dtype)
    assert heights[0] == pytest.approx(0.5)                   # fused fwd of_copy, first entry
    assert sorted(line.get_ydata()[0] for line in axes[0].get_lines()) == pytest.approx([0.6, 2 / 3])
