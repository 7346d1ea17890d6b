"""The benchmark command runs and prints its ratio table (timings are never asserted:
speed is measured by `python -m bncourse.bench`, not by tests)."""

import json

from bncourse import bench


def test_bench_prints_a_ratio_row_per_shape_and_dtype(capsys, tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--shapes", "16x4", "4x3x5x5", "--dtypes", "float32", "float64", "--repeat", "1",
                "--json", str(out)])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.strip().startswith("(")]
    assert len(rows) == 4
    data = json.loads(out.read_text())
    assert len(data["results"]) == 4
    for r in data["results"]:
        assert r["ratios"]["fwd / copy"] > 0
        assert {"copy", "ours fwd", "ours fwd+bwd"} <= set(r["seconds"])
