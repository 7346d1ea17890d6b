"""Finite-difference gradients: the yardstick every backward pass in the course is held to.

For a scalar function f of an array x, the central difference

    ∂f/∂x_j ≈ (f(x + h·e_j) − f(x − h·e_j)) / (2h)

has a truncation error of order h²·|f'''| (the even terms of the Taylor series cancel) and a
rounding error of order u·|f|/h, u the unit roundoff of the arithmetic.  The total is
smallest near h ≈ u^(1/3) (about 5e-6 in float64), where both are about u^(2/3) ≈ 2e-11
relative: a finite-difference check can confirm a float64 gradient to roughly 10 digits,
never to 16.  Everything here runs in float64 on NumPy arrays; it is written for checking,
not for speed (2 evaluations of f per entry).
"""

import numpy as np

from .tolerance import normwise_error  # noqa: F401  (part of this module's API since chapter 4)


def central_difference(f, x, h=1e-6):
    """The gradient of the scalar function ``f`` at ``x`` by central differences.

    Args:
        f: callable taking an array shaped like ``x`` and returning a real number.  It is
            called 2·x.size times on one private float64 copy of ``x`` that is perturbed
            in place, one entry at a time, so it must not keep a reference to its argument.
        x: array-like point; it is not modified.
        h: the step, > 0.
    Returns:
        float64 array shaped like ``x``.
    """
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h!r}")
    point = np.array(x, dtype=np.float64)       # a copy: perturbed in place below
    grad = np.empty_like(point)
    for j in np.ndindex(point.shape):
        old = point[j]
        point[j] = old + h
        up = float(f(point))
        point[j] = old - h
        down = float(f(point))
        point[j] = old
        grad[j] = (up - down) / (2 * h)
    return grad


def directional_difference(f, x, v, h=1e-6):
    """The directional derivative ⟨∇f(x), v⟩ by one central difference,
    (f(x + h·v) − f(x − h·v)) / (2h): two evaluations of ``f`` whatever the size of x."""
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h!r}")
    x = np.asarray(x, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if x.shape != v.shape:
        raise ValueError(f"direction shape {v.shape} differs from x's {x.shape}")
    return (float(f(x + h * v)) - float(f(x - h * v))) / (2 * h)
