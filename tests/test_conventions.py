"""bncourse.course.conventions: the framework table, momentum/eps translation, state conversion, and
the running update of each convention (PyTorch's checked against torch.nn and bncourse)."""

from conftest import assert_close, optional
import numpy as np
import pytest

from bncourse.course import conventions as cv
import bncourse.numpy as bnp


def _keras_state(rng, C=4, dtype=np.float32):
    return {"gamma": rng.uniform(0.5, 2, C).astype(dtype), "beta": rng.normal(size=C).astype(dtype),
            "moving_mean": rng.normal(size=C).astype(dtype),
            "moving_variance": rng.uniform(0.5, 2, C).astype(dtype)}


# ----------------------------------------------------------------------------- the table


def test_table_holds_each_frameworks_defaults():
    t = cv.CONVENTIONS
    assert (t["pytorch"].momentum, t["pytorch"].momentum_weights, t["pytorch"].eps) == (0.1, "new", 1e-5)
    assert (t["keras"].momentum, t["keras"].momentum_weights, t["keras"].eps) == (0.99, "old", 1e-3)
    assert (t["flax"].momentum, t["flax"].momentum_weights, t["flax"].eps) == (0.99, "old", 1e-5)
    assert (t["chainer"].momentum, t["chainer"].momentum_weights, t["chainer"].eps) == (0.9, "old", 2e-5)
    assert [t[f].running_var for f in t] == ["unbiased", "biased", "biased", "unbiased"]
    assert [t[f].channel_axis for f in t] == [1, -1, -1, 1]
    assert t["chainer"].momentum_name == "decay" and t["keras"].eps_name == "epsilon"
    assert t["flax"].key("var") == "batch_stats/var"
    assert t["pytorch"].key("count") == "num_batches_tracked"


def test_unknown_framework_is_named():
    with pytest.raises(ValueError, match="unknown framework 'mxnet'"):
        cv.convention("mxnet")


# ----------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize("src, value, dst, expected", [
    ("keras", 0.99, "pytorch", 0.01), ("pytorch", 0.1, "keras", 0.9),
    ("chainer", 0.9, "pytorch", 0.1), ("flax", 0.9, "keras", 0.9),
    ("pytorch", 0.3, "pytorch", 0.3), ("keras", None, "pytorch", 0.01),
    ("chainer", None, "flax", 0.9), ("pytorch", cv.DEFAULT, "chainer", 0.9),
])
def test_momentum_equivalent(src, value, dst, expected):
    assert cv.momentum_equivalent(value, src, dst) == pytest.approx(expected, abs=1e-15)


def test_default_momentum_is_an_omitted_argument():
    assert cv.momentum_equivalent(src="pytorch", dst="chainer") == pytest.approx(0.9)
    assert cv.convert_hyperparameters("pytorch", "keras")["momentum"] == pytest.approx(0.9)


def test_pytorch_cumulative_average_is_refused_with_its_ports():
    """PyTorch's momentum=None (cumulative average) has no constant equivalent: every
    translator raises, naming the average and the two ports."""
    for call in (lambda: cv.convert_hyperparameters("pytorch", "keras", momentum=None),
                 lambda: cv.momentum_equivalent(None, "pytorch", "flax"),
                 lambda: cv.convention("pytorch").retain(None),
                 lambda: cv.running_update(np.zeros(2), np.ones(2), np.ones((4, 2)), "pytorch", None)):
        with pytest.raises(ValueError, match="cumulative average") as info:
            call()
        assert "finetune=True" in str(info.value) and "1/n" in str(info.value)


def test_the_ports_of_the_cumulative_average_equal_pytorch(rng):
    """Chainer's fine-tuning decay 1 - 1/N and PyTorch's per-step momentum 1/n both give
    the running statistics of a torch.nn.BatchNorm1d(momentum=None)."""
    torch = optional("torch")
    module = torch.nn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    chainer = pytorch = (np.zeros(3), np.ones(3))
    batches = [rng.normal(2.0, 3.0, size=(8, 3)) for _ in range(5)]
    for n, x in enumerate(batches, start=1):
        module(torch.from_numpy(x))
        chainer = cv.running_update(*chainer, x, "chainer", momentum=1 - 1 / n)
        pytorch = cv.running_update(*pytorch, x, "pytorch", momentum=1 / n)
    for ours in (chainer, pytorch):
        assert_close(ours[0], module.running_mean.numpy(), "float64")
        assert_close(ours[1], module.running_var.numpy(), "float64")
    # the state of such a layer converts exactly: nothing of the initial 1 is left
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    keras = cv.convert_bn_state(state, "pytorch", "keras", batch_size=8, steps=5, momentum=None)
    biased = np.mean([x.var(axis=0) for x in batches], axis=0)     # their plain average
    assert_close(keras["moving_variance"], biased, "float64")


def test_momentum_round_trip_and_batch_ratio():
    for f in (0.0, 0.01, 0.1, 0.5, 1.0):
        back = cv.momentum_equivalent(cv.momentum_equivalent(f, "pytorch", "keras"), "keras", "pytorch")
        assert back == pytest.approx(f, abs=1e-15)
    # 4x larger batches: 4x fewer updates; the old value keeps 0.9**4 per update
    assert cv.momentum_equivalent(0.1, "pytorch", "pytorch", batch_ratio=4) == pytest.approx(1 - 0.9**4)
    assert cv.momentum_equivalent(0.99, "keras", "flax", batch_ratio=0.5) == pytest.approx(0.99**0.5)


@pytest.mark.parametrize("bad, exc", [(-0.1, ValueError), (1.5, ValueError), (True, TypeError),
                                      (float("nan"), ValueError)])
def test_momentum_out_of_range_is_refused(bad, exc):
    with pytest.raises(exc, match="momentum must be a number in"):
        cv.momentum_equivalent(bad, "pytorch", "keras")
    with pytest.raises(ValueError, match="batch_ratio"):
        cv.momentum_equivalent(0.1, "pytorch", "keras", batch_ratio=0)


def test_convert_hyperparameters_names_and_values():
    assert cv.convert_hyperparameters("keras", "pytorch") == pytest.approx({"momentum": 0.01, "eps": 1e-3})
    assert cv.convert_hyperparameters("pytorch", "chainer") == pytest.approx({"decay": 0.9, "eps": 1e-5})
    assert cv.convert_hyperparameters("chainer", "flax", momentum=0.8, eps=1e-4) == \
        pytest.approx({"momentum": 0.8, "epsilon": 1e-4})
    with pytest.raises(ValueError, match="eps"):
        cv.convert_hyperparameters(eps=-1.0)


# ----------------------------------------------------------------------------- state conversion


def test_names_are_mapped_and_values_copied_without_batch_size(rng):
    k = _keras_state(rng)
    pt = cv.convert_bn_state(k, "keras", "pytorch")
    assert set(pt) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    np.testing.assert_array_equal(pt["running_var"], k["moving_variance"])
    assert pt["running_var"].dtype == np.float32 and pt["num_batches_tracked"].dtype == np.int64
    assert int(pt["num_batches_tracked"]) == 0
    assert pt["running_var"] is not k["moving_variance"]          # a copy
    fx = cv.convert_bn_state(pt, "pytorch", "flax")
    assert set(fx) == {"params", "batch_stats"}
    np.testing.assert_array_equal(fx["params"]["scale"], k["gamma"])
    np.testing.assert_array_equal(fx["batch_stats"]["mean"], k["moving_mean"])
    ch = cv.convert_bn_state(fx, "flax", "chainer", steps=7)
    assert set(ch) == {"gamma", "beta", "avg_mean", "avg_var", "N"} and int(ch["N"]) == 7
    back = cv.convert_bn_state(ch, "chainer", "keras")
    assert set(back) == set(k)
    for name in k:
        np.testing.assert_array_equal(back[name], k[name])


def test_counter_is_carried_between_frameworks_that_have_one(rng):
    pt = cv.convert_bn_state(_keras_state(rng), "keras", "pytorch")
    pt["num_batches_tracked"] = np.asarray(12)
    assert int(cv.convert_bn_state(pt, "pytorch", "chainer")["N"]) == 12


def test_affine_free_state_and_errors(rng):
    k = _keras_state(rng)
    del k["gamma"], k["beta"]
    pt = cv.convert_bn_state(k, "keras", "pytorch")
    assert "weight" not in pt and "bias" not in pt
    with pytest.raises(ValueError, match="no 'moving_variance'"):
        cv.convert_bn_state({"moving_mean": k["moving_mean"]}, "keras", "pytorch")
    with pytest.raises(ValueError, match="keys not in a keras batch-norm state: running_var"):
        cv.convert_bn_state({**k, "running_var": k["moving_variance"]}, "keras", "pytorch")
    with pytest.raises(ValueError, match="batch_size"):
        cv.convert_bn_state(k, "keras", "pytorch", batch_size=1)
    with pytest.raises(ValueError, match="steps"):
        cv.convert_bn_state(k, "keras", "pytorch", batch_size=4, steps=-1)
    with pytest.raises(TypeError, match="floating-point"):
        cv.convert_bn_state({"moving_mean": np.arange(3), "moving_variance": np.ones(3)}, "keras", "pytorch")
    with pytest.raises(TypeError, match="dict"):
        cv.convert_bn_state([1, 2], "keras", "pytorch")


def test_batch_size_is_ignored_between_same_estimators(rng):
    k = _keras_state(rng)
    fx = cv.convert_bn_state(k, "keras", "flax", batch_size=4, steps=3)     # both biased
    np.testing.assert_array_equal(fx["batch_stats"]["var"], k["moving_variance"])


def _two_runs(rng, shape, steps, keras_momentum=0.99):
    """The same batches through a Keras-convention EMA and through torch.nn.BatchNorm with the
    equivalent momentum.  Returns (keras state, torch module, values per channel)."""
    torch = optional("torch")
    C = shape[1]
    module = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        C, momentum=cv.momentum_equivalent(keras_momentum, "keras", "pytorch"), dtype=torch.float64)
    mean, var = np.zeros(C), np.ones(C)
    for _ in range(steps):
        x = rng.normal(size=shape) * rng.uniform(0.5, 3, C).reshape((1, C) + (1,) * (len(shape) - 2)) + 2
        mean, var = cv.running_update(mean, var, x, "keras", keras_momentum, channel_axis=1)
        module(torch.from_numpy(x))
    m = int(np.prod(shape)) // C
    return {"moving_mean": mean, "moving_variance": var}, module, m


@pytest.mark.parametrize("shape, steps", [((8, 3), 40), ((2, 3, 2, 2), 5), ((4, 3), 1)])
def test_biased_average_converts_exactly_to_pytorchs(rng, shape, steps):
    keras_state, module, m = _two_runs(rng, shape, steps)
    pt = cv.convert_bn_state(keras_state, "keras", "pytorch", batch_size=m, steps=steps)
    assert_close(pt["running_mean"], module.running_mean.numpy(), "float64")
    assert_close(pt["running_var"], module.running_var.numpy(), "float64")
    assert int(pt["num_batches_tracked"]) == steps
    # ... and back: PyTorch's unbiased average to the biased one Keras tracked
    back = cv.convert_bn_state({k: v.numpy() for k, v in module.state_dict().items()},
                               "pytorch", "keras", batch_size=m, steps=steps, momentum=module.momentum)
    assert_close(back["moving_variance"], keras_state["moving_variance"], "float64")


def test_without_steps_the_error_is_bounded_by_the_initial_values_weight(rng):
    steps, m = 500, 8
    keras_state, module, _ = _two_runs(rng, (m, 3), steps)
    pt = cv.convert_bn_state(keras_state, "keras", "pytorch", batch_size=m)
    err = np.abs(pt["running_var"] - module.running_var.numpy()).max()
    bound = (m / (m - 1) - 1) * 0.99**steps
    assert 0.5 * bound < err <= bound * (1 + 1e-9)
    # copying without conversion is off by the factor m/(m - 1) on the batch terms
    raw = np.abs(keras_state["moving_variance"] - module.running_var.numpy()).max()
    assert raw > 10 * err


def test_flax_nested_state_converts_like_keras(rng):
    keras_state, module, m = _two_runs(rng, (6, 2), 10)
    flax_state = {"batch_stats": {"mean": keras_state["moving_mean"], "var": keras_state["moving_variance"]}}
    pt = cv.convert_bn_state(flax_state, "flax", "pytorch", batch_size=m, steps=10)
    assert_close(pt["running_var"], module.running_var.numpy(), "float64")


# ----------------------------------------------------------------------------- running_update


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5), (2, 3, 4, 4)])
def test_pytorch_update_matches_torch_and_bncourse(rng, shape):
    torch = optional("torch")
    C = shape[1]
    module = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(C, dtype=torch.float64)
    layer = bnp.BatchNorm(C, dtype="float64")
    mean, var = np.zeros(C), np.ones(C)
    for _ in range(3):
        x = rng.normal(1.0, 2.0, size=shape)
        mean, var = cv.running_update(mean, var, x, "pytorch")
        module(torch.from_numpy(x))
        layer(x)
    for ours, theirs in ((mean, module.running_mean), (var, module.running_var)):
        assert_close(ours, theirs.numpy(), "float64")
    assert_close(var, layer.running_var, "float64")


def test_channels_last_frameworks_reduce_all_but_the_last_axis(rng):
    x = rng.normal(3.0, 2.0, size=(5, 4, 4, 2))                 # NHWC
    mean, var = cv.running_update(np.zeros(2), np.ones(2), x, "flax", momentum=0.0)
    assert_close(mean, x.mean(axis=(0, 1, 2)), "float64")
    assert_close(var, x.var(axis=(0, 1, 2)), "float64")          # biased
    mean_c, var_c = cv.running_update(np.zeros(2), np.ones(2), np.moveaxis(x, -1, 1), "chainer", 0.0)
    assert_close(mean_c, mean, "float64")
    assert_close(var_c, x.var(axis=(0, 1, 2), ddof=1), "float64")  # unbiased
    old = np.ones(2)
    cv.running_update(old, old, x, "keras")
    np.testing.assert_array_equal(old, 1.0)                      # inputs untouched


def test_unbiased_update_needs_two_values():
    with pytest.raises(ValueError, match="m >= 2"):
        cv.running_update(np.zeros(2), np.ones(2), np.ones((1, 2)), "pytorch")


def test_chainer_single_value_batch_warns_and_decays_the_variance():
    """Chainer: adjust = m / max(m - 1, 1) = 1 for m = 1, a warning, the biased variance 0
    averaged in: avg_var <- decay * avg_var."""
    x = np.array([[3.0, -1.0]])
    with pytest.warns(UserWarning, match="one value per channel"):
        mean, var = cv.running_update(np.array([1.0, 2.0]), np.array([4.0, 0.5]), x, "chainer", 0.8)
    assert_close(mean, 0.8 * np.array([1.0, 2.0]) + 0.2 * x[0], "float64")
    assert_close(var, 0.8 * np.array([4.0, 0.5]), "float64")
