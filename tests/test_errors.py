"""Bad input raises ValueError/TypeError naming the offending value, and a failed call leaves
every piece of state (running statistics, counters, cached forward, gradients) unchanged."""

import numpy as np
import pytest

import bncourse.numpy as bnp


def _x(shape=(4, 3, 5), dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape,match", [
    ((5,), r"expected 2D to 5D input \(got 1D input\)"),
    ((2, 3, 2, 2, 2, 2), r"expected 2D to 5D input \(got 6D input\)"),
])
def test_wrong_ndim(shape, match):
    with pytest.raises(ValueError, match=match):
        bnp.batch_norm_forward(np.ones(shape, np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_, np.complex64, np.uint8])
def test_non_float_dtypes(dtype):
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        bnp.batch_norm_forward(np.ones((4, 3), dtype))
    with pytest.raises(TypeError, match="gamma must have a floating-point dtype"):
        bnp.batch_norm_forward(_x(), np.ones(3, dtype))


def test_not_an_array():
    with pytest.raises(TypeError, match="expects numpy.ndarray inputs, got builtins.list"):
        bnp.batch_norm_forward([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("name", ["gamma", "beta"])
def test_channel_mismatch_of_parameters(name):
    kwargs = {"gamma": np.ones(3, np.float32), "beta": np.zeros(3, np.float32)}
    kwargs[name] = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=rf"{name} should contain 3 elements, got shape \(4,\)"):
        bnp.batch_norm_forward(_x(), **kwargs)


def test_channel_mismatch_of_running_statistics():
    with pytest.raises(ValueError, match=r"running_var should contain 3 elements, got shape \(2,\)"):
        bnp.batch_norm_inference(_x(), np.zeros(3, np.float32), np.ones(2, np.float32))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1), (1, 3, 1, 1, 1)])
def test_one_value_per_channel_in_training(shape):
    msg = rf"Expected more than 1 value per channel when training, got input size \({shape[0]}, 3"
    with pytest.raises(ValueError, match=msg):
        bnp.batch_norm_forward(np.ones(shape, np.float32))
    # the same input is fine for inference (fixed statistics)
    y = bnp.batch_norm_inference(np.ones(shape, np.float32), np.zeros(3, np.float32), np.ones(3, np.float32))
    assert y.shape == shape


@pytest.mark.parametrize("eps, exc", [(0, ValueError), (0.0, ValueError), (-1e-5, ValueError),
                                      (float("nan"), ValueError), (float("inf"), ValueError),
                                      ("1e-5", TypeError), (True, TypeError)])
def test_eps_must_be_positive_and_finite_in_training(eps, exc):
    # the contract of bncourse.core.validation: a non-number is a TypeError, a bad number a
    # ValueError; eps > 0 in training (PyTorch's rule)
    with pytest.raises(exc, match="eps must be"):
        bnp.batch_norm_forward(_x(), eps=eps)
    with pytest.raises(exc, match="eps must be"):
        bnp.BatchNorm(3, eps=eps)


def test_eps_zero_is_allowed_in_inference_but_not_negative():
    x = _x()
    y = bnp.batch_norm_inference(x, np.zeros(3, np.float32), np.ones(3, np.float32), eps=0.0)
    np.testing.assert_array_equal(y, x)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        bnp.batch_norm_inference(x, np.zeros(3, np.float32), np.ones(3, np.float32), eps=-1e-5)


@pytest.mark.parametrize("momentum, exc", [(-0.1, ValueError), (1.5, ValueError),
                                           (float("nan"), ValueError), ("0.1", TypeError)])
def test_momentum_must_be_in_unit_interval(momentum, exc):
    with pytest.raises(exc, match=r"momentum must be a number in \[0, 1\] or None, got"):
        bnp.BatchNorm(3, momentum=momentum)


def test_dy_shape_must_match_y():
    y, cache = bnp.batch_norm_forward(_x())
    with pytest.raises(ValueError, match=r"dy has shape \(4, 3, 4\) but the forward output had shape \(4, 3, 5\)"):
        bnp.batch_norm_backward(np.ones((4, 3, 4), np.float32), cache)


def _snapshot(layer):
    """Everything a forward/backward may change: buffers, parameters, gradients, cache."""
    return {
        "arrays": {n: getattr(layer, n).copy() for n in ("running_mean", "running_var", "gamma", "beta")},
        "grads": {n: g.copy() for n, g in layer.grads.items()},
        "num_batches_tracked": layer.num_batches_tracked,
        "cache": layer._cache,
    }


@pytest.mark.parametrize("bad_call", [
    lambda L: L(np.ones((4, 5, 2), np.float32)),                 # wrong channel count
    lambda L: L(np.ones((1, 3), np.float32)),                     # one value per channel
    lambda L: L(np.ones((4, 3), np.int32)),                       # integer input
    lambda L: L(np.ones((4,), np.float32)),                       # 1-D
    lambda L: L(np.ones((4, 3, 1, 1, 1, 2), np.float32)),         # 6-D
    lambda L: L.backward(np.ones((4, 3, 4), np.float32)),         # dy of the wrong shape
    lambda L: (setattr(L, "momentum", 2.0), L(_x()))[1],          # invalid attribute values
    lambda L: (setattr(L, "eps", 0.0), L(_x()))[1],
])
def test_failed_calls_leave_the_layer_unchanged(bad_call):
    layer = bnp.BatchNorm(3)
    for _ in range(2):                                            # some history to protect
        layer(_x() + 1)
        layer.backward(np.ones((4, 3, 5), np.float32))
    before = _snapshot(layer)
    with pytest.raises((ValueError, TypeError)):
        bad_call(layer)
    after = _snapshot(layer)
    assert after["num_batches_tracked"] == before["num_batches_tracked"] == 2
    assert after["cache"] is before["cache"]
    for group in ("arrays", "grads"):
        assert after[group].keys() == before[group].keys()
        for name, value in before[group].items():
            np.testing.assert_array_equal(after[group][name], value, err_msg=name)


def test_layer_constructor_checks():
    with pytest.raises(ValueError, match="num_features must be a positive integer, got 0"):
        bnp.BatchNorm(0)
    with pytest.raises(ValueError, match="num_features must be a positive integer, got 3.0"):
        bnp.BatchNorm(3.0)
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups \(4\)"):
        bnp.GroupNorm(4, 6)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="BatchNorm.backward called before forward"):
        bnp.BatchNorm(3).backward(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("call,match", [
    (lambda: bnp.layer_norm_forward(_x(), (4,)), r"Given normalized_shape=\[4\], expected input with shape \[\*, 4\]"),
    (lambda: bnp.group_norm_forward(_x((2, 6, 3)), 4), "divisible by num_groups"),
    (lambda: bnp.instance_norm_forward(_x((2, 3, 1))), "more than 1 spatial element"),
    (lambda: bnp.instance_norm_forward(_x((2, 3))), r"expected 3D to 5D input \(got 2D input\)"),
    (lambda: bnp.rms_norm_forward(_x(), (5,), eps=-1.0), "eps must be non-negative"),
    (lambda: bnp.batch_renorm_forward(_x(), None, None, np.zeros(3, np.float32), np.ones(3, np.float32), r_max=0.5),
     "r_max must be >= 1"),
])
def test_alternatives_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
