"""The checking engine of :mod:`bncourse.course.labs`: run a learner's function on the probes,
compare with the reference, name the catalogued mistake it matches, and report.

A result displays as a small green/red box in a notebook (``_repr_html_``: fixed inline
styles, no ids or dates, so stored outputs compare exactly) and as plain text elsewhere.
Numbers in messages have 2 significant digits (stable across CPUs and BLAS kernels).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
import html
import os
import re
import sysconfig
import traceback
from typing import Any

import numpy as np

from ..tolerance import normwise_error

RTOL = 1e-4   # normwise, per output: float32 learners pass; every catalogued mistake is ≥ 1e-2 off

_PACKAGE_DIR = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
_LIBRARY_DIRS = tuple(os.path.realpath(p) for p in
                      {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                       sysconfig.get_paths()["platlib"]})


@dataclass(frozen=True)
class Output:
    """One output of a learner function: its name and the axis of its channels (or None)."""

    name: str
    channel_axis: int | None = None
    scalar_ok: bool = False        # a Python/NumPy number is accepted (a count n)


@dataclass(frozen=True)
class Probe:
    """One seeded input of a checker: a label for messages and the positional arguments."""

    label: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Spec:
    """A checker: its learner signature, outputs, probes (smallest first), the package's
    reference, and the catalogue: mistake id → the variants that make it (outputs tuples)."""

    name: str
    signature: str
    outputs: tuple[Output, ...]
    probes: tuple[Probe, ...]
    reference: Callable[..., tuple[Any, ...]]
    catalogue: dict[str, list[Callable[..., tuple[Any, ...]]]] = field(default_factory=dict)


class LabResult:
    """The verdict of one checker.

    Attributes: ``passed`` (bool); ``mistake`` (an id of :data:`MISTAKES`, or None when the
    learner's outputs match no catalogued mistake, or passed); ``message`` (what is wrong, on
    which probe, where to look); ``check`` (the checker's name).
    """

    def __init__(self, check: str, passed: bool, mistake: str | None, message: str) -> None:
        self.check, self.passed, self.mistake, self.message = check, passed, mistake, message

    @property
    def title(self) -> str:
        if self.passed:
            return f"{self.check}: passed"
        return f"{self.check}: failed" + (f" ({self.mistake})" if self.mistake else "")

    def __repr__(self) -> str:
        return f"{self.title}\n{self.message}"

    def _repr_html_(self) -> str:
        fg, bg, mark = ("#1b5e20", "#e8f5e9", "&#10004;") if self.passed else \
                       ("#b71c1c", "#ffebee", "&#10008;")
        return (f'<div style="border:1px solid {fg};background:{bg};color:{fg};'
                f'padding:6px 10px;border-radius:4px;font-family:sans-serif">'
                f"<b>{mark} {html.escape(self.title)}</b>"
                f'<pre style="margin:4px 0 0;white-space:pre-wrap;color:#212121;'
                f'background:transparent">{html.escape(self.message)}</pre></div>')


def num(v: float) -> str:
    """v with 2 significant digits (tiny values are 0)."""
    return "0" if abs(v) < 1e-12 else f"{v:.2g}"


# ----------------------------------------------------------------------------- learner code


class LearnerError(Exception):
    """The learner's function raised or returned something unusable (message for the learner)."""


def _short_filename(filename: str) -> str:
    """A file name without machine paths: ``<cell>`` for notebook cells, else the basename."""
    if re.search(r"ipykernel_\d+|<ipython-input-", filename):
        return "<cell>"
    return os.path.basename(filename) or filename


def _is_learner_frame(filename: str) -> bool:
    path = os.path.realpath(filename) if os.path.isabs(filename) else filename
    return not (path.startswith(_PACKAGE_DIR + os.sep)
                or any(path.startswith(d + os.sep) for d in _LIBRARY_DIRS))


def learner_traceback(exc: BaseException) -> str:
    """The traceback lines of the learner's own code (no bncourse or library frames)."""
    lines = []
    for fr in traceback.extract_tb(exc.__traceback__):
        if _is_learner_frame(fr.filename):
            lines.append(f'  File "{_short_filename(fr.filename)}", line {fr.lineno}, in {fr.name}')
            if fr.line:
                lines.append(f"    {fr.line.strip()}")
    lines += [s.rstrip("\n") for s in traceback.format_exception_only(type(exc), exc)]
    return "\n".join(lines)


def _copy(a: Any) -> Any:
    return a.copy() if isinstance(a, np.ndarray) else a


def _read_output(value: Any, out: Output, shape: tuple[int, ...]) -> np.ndarray:
    if value is None or isinstance(value, (list, tuple, dict, str)):
        raise LearnerError(f"{out.name} is a {type(value).__name__}; return an array (a NumPy "
                           f"array, or a torch tensor) of shape {shape}")
    if not (out.scalar_ok or hasattr(value, "__array__") or isinstance(value, np.generic)):
        raise LearnerError(f"{out.name} is a {type(value).__name__}; return an array of shape {shape}")
    try:
        a = np.asarray(value)
    except Exception as exc:   # e.g. a tensor that requires grad
        raise LearnerError(f"{out.name} cannot be read with np.asarray: "
                           f"{type(exc).__name__}: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise LearnerError(f"{out.name} has dtype {a.dtype}; return real numbers")
    a = a.astype(np.float64)
    if a.shape != shape:
        raise LearnerError(f"{out.name} has shape {a.shape}; expected {shape}")
    return a


def _defined_at(fn: Callable[..., Any]) -> str:
    """'my_bn (<cell>, line 3)': where the learner's function is defined, without paths."""
    while isinstance(fn, partial):
        fn = fn.func
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__name__", type(fn).__name__)
    return f"{name} ({_short_filename(code.co_filename)}, line {code.co_firstlineno})" if code else name


def call_learner(fn: Callable[..., Any], spec: Spec, probe: Probe,
                 shapes: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, ...]:
    """The learner's outputs on one probe, as float64 arrays of the reference's shapes."""
    try:
        ret = fn(*(_copy(a) for a in probe.args))
    except Exception as exc:
        raise LearnerError(f"your function raised an error on probe {probe.label}:\n"
                           f"{learner_traceback(exc)}") from None
    where = f"\n  your function: {_defined_at(fn)}, on probe {probe.label}"
    outs = spec.outputs
    if len(outs) == 1:
        if isinstance(ret, tuple):
            raise LearnerError(f"your function returned a tuple of {len(ret)} items; expected "
                               f"one array {outs[0].name}{where}")
        ret = (ret,)
    elif not isinstance(ret, (tuple, list)) or len(ret) != len(outs):
        names = ", ".join(o.name for o in outs)
        got = f"a {type(ret).__name__}" + (f" of {len(ret)} items" if isinstance(ret, (tuple, list))
                                           else "")
        raise LearnerError(f"your function returned {got}; expected a tuple ({names}){where}")
    try:
        return tuple(_read_output(v, o, s) for v, o, s in zip(ret, outs, shapes))
    except LearnerError as exc:
        raise LearnerError(f"{exc}{where}") from None


# ----------------------------------------------------------------------------- comparing


def _close(a: tuple[np.ndarray, ...], e: tuple[np.ndarray, ...]) -> bool:
    return all(x.shape == y.shape and bool(np.all(np.isfinite(x)))
               and normwise_error(x, y) <= RTOL for x, y in zip(a, e))


def _where(out: Output, index: tuple[int, ...]) -> str:
    if out.channel_axis is not None and len(index) == 1:      # a (C,) vector
        return f"channel {index[0]}"
    where = f"index {index}" if index else "its value"
    if out.channel_axis is not None and len(index) > out.channel_axis:
        where += f" (channel {index[out.channel_axis]})"
    return where


def _describe(out: Output, a: np.ndarray, e: np.ndarray) -> str:
    """'dx: largest error 0.35 at index (2, 1) (channel 1): expected 1.2, got 0.85'."""
    bad = ~np.isfinite(a)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"{out.name}: not finite (nan or inf) at {_where(out, index)}"
    if normwise_error(a, e) <= RTOL:
        return f"{out.name}: correct"
    diff = np.abs(a - e)
    # the first index within rounding of the largest error: ties do not depend on the CPU
    first = int(np.argmax(diff >= diff.max() * (1 - 1e-6)))
    index = tuple(int(i) for i in np.unravel_index(first, diff.shape))
    text = (f"{out.name}: largest error {num(float(diff[index]))} at {_where(out, index)}: "
            f"expected {num(float(e[index]))}, got {num(float(a[index]))}")
    if out.channel_axis is not None and a.ndim > out.channel_axis:
        axes = tuple(i for i in range(a.ndim) if i != out.channel_axis)
        wrong = np.flatnonzero(diff.max(axis=axes) > RTOL * max(1.0, float(np.abs(e).max())))
        text += f"; wrong channels: {', '.join(map(str, wrong))} of {a.shape[out.channel_axis]}"
    return text


def check(fn: Any, spec: Spec, mistakes: dict[str, str], hints: dict[str, str]) -> LabResult:
    """Run ``fn`` on the probes of ``spec`` and diagnose (module docstring of labs)."""
    if not callable(fn):
        raise TypeError(f"{spec.name} expects your function {spec.signature}, "
                        f"got {type(fn).__name__}")
    expected = [tuple(np.asarray(v, dtype=np.float64) for v in spec.reference(*p.args))
                for p in spec.probes]
    try:
        got = [call_learner(fn, spec, p, [v.shape for v in e])
               for p, e in zip(spec.probes, expected)]
    except LearnerError as exc:
        return LabResult(spec.name, False, None, str(exc))
    labels = "; ".join(p.label for p in spec.probes)
    if all(_close(g, e) for g, e in zip(got, expected)):
        return LabResult(spec.name, True, None,
                         f"matches the reference on all {len(spec.probes)} probes: {labels}")
    k = next(i for i, (g, e) in enumerate(zip(got, expected)) if not _close(g, e))
    probe = spec.probes[k]
    details = "\n".join(f"  {_describe(o, a, e)}" for o, a, e in zip(spec.outputs, got[k], expected[k]))
    for mistake, variants in spec.catalogue.items():
        for variant in variants:
            outs = [tuple(np.asarray(v, dtype=np.float64) for v in variant(*p.args))
                    for p in spec.probes]
            if all(_close(g, o) for g, o in zip(got, outs)):
                return LabResult(spec.name, False, mistake,
                                 f"likely mistake [{mistake}]: {mistakes[mistake]}\n"
                                 f"smallest probe that shows it: {probe.label}\n{details}\n"
                                 f"where to look: {hints[mistake]}")
    return LabResult(spec.name, False, None,
                     "wrong, and it matches no catalogued mistake\n"
                     f"smallest probe that shows it: {probe.label}\n{details}")
