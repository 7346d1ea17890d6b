"""Figure 1 of Ioffe & Szegedy (2015), §4.1: MNIST, three hidden layers of 100 sigmoid units,
batches of 60, trained by plain SGD with and without batch norm before each sigmoid.

    python -m bncourse.figure1                 # the short (CI) schedule, the shipped subset
    python -m bncourse.figure1 --full          # the paper's 50,000 steps
    python -m bncourse.figure1 --full-data     # MNIST's 60,000/10,000 digits (downloads once)

records (a) test accuracy every ``eval_every`` steps and (b, c) the 15th, 50th and 85th
percentiles, over the test images, of the input to every sigmoid of the last hidden layer;
writes them as JSON with a three-panel figure in the paper's layout.  The sweeps of the
course's chapter (learning rate, initial weight scale, batch size with batch or group norm)
are :func:`sweep` over one field of :class:`Config`.  Everything is seeded: the same
arguments give the same numbers.
"""

import argparse
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
import json
from pathlib import Path
import time

import numpy as np

from .datasets import load_mnist
from .mlp import MLP

PAPER_STEPS = 50_000      # the paper's schedule
CI_STEPS = 1_500          # the short schedule of the chapter and the CI
PERCENTILES = (15, 50, 85)
JSON_UNITS = 10           # the command line saves the percentiles of units 0-9


@dataclass(frozen=True)
class Config:
    """One training run.  Defaults: the paper's network and batch size; the paper does not
    give its learning rate or initial weight scale ("small random Gaussian values"), so
    these are ours (see the chapter)."""

    norm: str | None = "batch"   # None, "batch" or "group", before every sigmoid
    steps: int = CI_STEPS
    batch_size: int = 60
    lr: float = 0.5
    init_std: float = 0.05       # hidden weights ~ N(0, init_std²), biases 0
    output_std: float | None = None  # output layer's weights (None: init_std)
    eval_every: int = 100
    seed: int = 0                # initial weights and batch order (same for every norm)
    dtype: str = "float32"
    groups: int = 10             # group norm: groups of 10 units


@dataclass
class History:
    """What one run recorded, at ``steps`` (0, eval_every, 2·eval_every, ...):

    ``test_accuracy`` (T,); ``percentiles`` (T, 3, 100): the 15/50/85th percentiles over the
    test images of each last-hidden-layer sigmoid input; ``train_loss`` (T,): mean training
    loss since the previous record (NaN at step 0); ``diverged``: a non-finite loss stopped
    the run early; ``model``: the trained :class:`~bncourse.mlp.MLP` (not saved to JSON)."""

    config: Config
    steps: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    percentiles: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    diverged: bool = False
    seconds: float = 0.0
    model: object = field(default=None, repr=False)

    @property
    def final_accuracy(self):
        return self.test_accuracy[-1]

    def to_json(self, units=None):
        """A JSON-ready dict; ``units`` (a list) keeps only those units' percentiles."""
        p = np.asarray(self.percentiles)
        p = p if units is None else p[:, :, units]
        return {"config": dataclasses.asdict(self.config), "steps": self.steps,
                "test_accuracy": [round(a, 5) for a in self.test_accuracy],
                "train_loss": [None if np.isnan(v) else round(v, 5) for v in self.train_loss],
                "percentiles": np.round(p, 4).tolist(), "units": units,
                "diverged": self.diverged, "seconds": round(self.seconds, 1)}

    @classmethod
    def from_json(cls, d):
        """The inverse of :meth:`to_json` (percentiles of the units it kept; loss None → NaN)."""
        return cls(Config(**d["config"]), list(d["steps"]), list(d["test_accuracy"]),
                   np.array(d["percentiles"], dtype=float),
                   [np.nan if v is None else v for v in d["train_loss"]],
                   d["diverged"], d["seconds"])


FULL_RUN_FILE = "figure1_full.json"   # package data, next to the MNIST subset


def load_full_run():
    """The records of ``python -m bncourse.figure1 --full`` on the shipped subset (a dict).

    The 50,000-step run takes minutes, so the package ships its output (the JSON that
    :func:`main` writes: run settings, then ``"baseline"`` and ``"batchnorm"`` records for
    :meth:`History.from_json`, each with its units' ``"drift"``); chapter 9 reads it here,
    so it needs no file of the repository.
    """
    return json.loads((resources.files(__package__) / "data" / FULL_RUN_FILE).read_text())


def batches(n, batch_size, rng):
    """Endless index batches (batch_size,): a fresh permutation of range(n) each epoch,
    cut into consecutive batches (the last, incomplete one is dropped)."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def evaluate(model, x, y):
    """(test accuracy, (3, width) percentiles of the last hidden layer's sigmoid inputs).

    The accuracy is the inference network's: batch norm with its running statistics (the
    exponential averages of PyTorch's rule, standing in for the population statistics of
    Alg. 2 of the paper).  The percentiles are the training network's, N_BN^tr in the paper:
    batch norm uses the statistics of the test images themselves, as in training.  Running
    statistics are left untouched.  x: (N, 784), y: (N,)."""
    model.eval()
    logits = model.forward(x)
    acc = float(np.mean(logits.argmax(axis=1) == y))
    norms = [layer for layer in model.layers if getattr(layer, "track_running_stats", False)]
    try:
        for layer in norms:        # eval mode without running stats: batch statistics, no update
            layer.track_running_stats = False
        if norms:
            model.forward(x)
    finally:
        for layer in norms:
            layer.track_running_stats = True
    u = model.sigmoid_inputs[-1].astype(np.float64)
    model.train()
    return acc, np.percentile(u, PERCENTILES, axis=0)


def initial_model(config):
    """The untrained network of a run: weights from the first of two generators spawned from
    ``config.seed`` (the second draws the batches).  For a given seed the weights are the same
    standard normal numbers for every norm and every ``init_std``, only scaled."""
    init_rng = np.random.default_rng(config.seed).spawn(2)[0]
    return MLP(norm=config.norm, init_std=config.init_std, rng=init_rng, dtype=config.dtype,
               groups=config.groups, output_std=config.output_std)


def train(data, config=Config(), progress=False, desc=None):
    """Train the paper's network on ``data`` (an :class:`~bncourse.datasets.MNIST`) for
    ``config.steps`` SGD steps; returns its :class:`History`.  ``progress`` shows a tqdm bar."""
    model = initial_model(config)
    batch_rng = np.random.default_rng(config.seed).spawn(2)[1]
    x_test = data.x_test.astype(config.dtype, copy=False)
    hist = History(config)
    start = time.perf_counter()

    def record(step, loss):
        acc, pct = evaluate(model, x_test, data.y_test)
        hist.steps.append(step)
        hist.test_accuracy.append(acc)
        hist.percentiles.append(pct)
        hist.train_loss.append(loss)

    record(0, float("nan"))
    losses = []
    batch_iter = batches(len(data.x_train), config.batch_size, batch_rng)
    with _progress_bar(config.steps, progress, desc or f"norm={config.norm}") as bar:
        for step in range(1, config.steps + 1):
            idx = next(batch_iter)
            loss = model.loss_and_backward(data.x_train[idx], data.y_train[idx])
            if not np.isfinite(loss):
                hist.diverged = True
                break
            model.sgd_step(config.lr)
            losses.append(loss)
            if step % config.eval_every == 0:
                record(step, float(np.mean(losses)))
                losses = []
                bar.set_postfix(test_acc=f"{hist.test_accuracy[-1]:.4f}", refresh=False)
            bar.update(1)
    hist.percentiles = np.array(hist.percentiles)
    hist.model = model
    hist.seconds = time.perf_counter() - start
    return hist


def sweep(data, base, name, values, norms=(None, "batch"), progress=False, cache=None):
    """Train ``base`` with field ``name`` set to each of ``values``, for each norm:
    {norm: [History per value]}.  ``cache``, a dict, keeps runs by their :class:`Config`
    (runs are deterministic), so sweeps that share a configuration train it once."""
    cache = {} if cache is None else cache
    results = {}
    for norm in norms:
        results[norm] = []
        for v in values:
            config = dataclasses.replace(base, norm=norm, **{name: v})
            if config not in cache:
                cache[config] = train(data, config, progress, desc=f"norm={norm} {name}={v}")
            results[norm].append(cache[config])
    return results


def percentile_drift(history, start=1 / 3):
    """How far each last-hidden-layer unit's sigmoid-input distribution still moves after
    the first ``start`` of training: max over the 15th/50th/85th percentiles of
    |p(t₀) − p(end)|, divided by the unit's final spread p85 − p15, where t₀ is the first
    record at or after ``start`` of the run.  Returns (units,): 0 for a distribution that
    no longer moves; 1 for one that moved by its whole width."""
    p = np.asarray(history.percentiles)
    t0 = int(np.ceil(start * (len(p) - 1)))
    return np.abs(p[t0] - p[-1]).max(axis=0) / (p[-1, 2] - p[-1, 0])


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass

    def set_postfix(self, **kwargs):
        pass


def _progress_bar(total, enabled, desc):
    """A tqdm bar (``tqdm`` is in the ``book`` extra) or a silent stand-in."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm  # text bars: a terminal, or a notebook without widgets
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="step", mininterval=0.5)


# ----------------------------------------------------------------------------- figures


def plot_figure1(baseline, batchnorm, unit=0, axes=None):
    """The paper's Figure 1: (a) test accuracy vs steps, with and without BN; (b, c) the
    15th/50th/85th percentiles of one last-hidden-layer sigmoid input (``unit``) over
    training, without (b) and with (c) BN.  Returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    fig = axes[0].figure
    ax = axes[0]
    ax.plot(baseline.steps, baseline.test_accuracy, "--", color="tab:blue", label="Without BN")
    ax.plot(batchnorm.steps, batchnorm.test_accuracy, color="tab:red", label="With BN")
    ax.set(xlabel="training steps", ylabel="test accuracy", title="(a)")
    ax.set_ylim(max(0.0, min(baseline.test_accuracy[1:] + batchnorm.test_accuracy[1:]) - 0.02), 1)
    ax.legend(loc="best")       # placed at draw time, after any set_ylim, off the curves
    for ax, hist, title in ((axes[1], baseline, "(b) without BN"), (axes[2], batchnorm, "(c) with BN")):
        p = np.asarray(hist.percentiles)[:, :, unit]
        for k, style, label in ((0, ":", "15th, 85th percentiles"), (1, "-", "median"), (2, ":", None)):
            ax.plot(hist.steps, p[:, k], style, color="black", label=label)
        ax.set(xlabel="training steps", ylabel="sigmoid input", title=title)
    lo = min(np.min(np.asarray(h.percentiles)[:, :, unit]) for h in (baseline, batchnorm))
    hi = max(np.max(np.asarray(h.percentiles)[:, :, unit]) for h in (baseline, batchnorm))
    for ax in axes[1:]:
        ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    axes[2].legend(loc="best", fontsize="small")
    return fig


def plot_sweep(results, name, values, ax=None, xscale="log", labels=None):
    """Final test accuracy against the swept value, one line per norm."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4), constrained_layout=True)
    labels = labels or {None: "without BN", "batch": "batch norm", "group": "group norm"}
    styles = {None: ("--o", "tab:blue"), "batch": ("-o", "tab:red"), "group": ("-s", "tab:green")}
    for norm, runs in results.items():
        fmt, color = styles[norm]
        ax.plot(values, [h.final_accuracy for h in runs], fmt, color=color, label=labels[norm])
    ax.set(xscale=xscale, xlabel=name, ylabel="final test accuracy", ylim=(0, 1))
    ax.set_xticks(values, [f"{v:g}" for v in values])   # the swept values only
    ax.minorticks_off()
    ax.legend()
    return ax.figure


# ----------------------------------------------------------------------------- command line


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.figure1",
        description="Reproduce Figure 1 of Ioffe & Szegedy (2015): MNIST, with and without BN.")
    parser.add_argument("--full", action="store_true",
                        help=f"the paper's schedule: {PAPER_STEPS} steps (default: {CI_STEPS}, "
                             "the chapter's and the CI's)")
    parser.add_argument("--steps", type=int, help="any number of steps, overrides --full "
                        f"(default: {CI_STEPS}, or {PAPER_STEPS} with --full)")
    parser.add_argument("--full-data", action="store_true",
                        help="MNIST's 60,000/10,000 digits, downloaded once (default: the "
                             "10,000-digit subset shipped with the package)")
    parser.add_argument("--eval-every", type=int, help="steps between records "
                        "(default: 100, or 500 for the full schedule)")
    parser.add_argument("--lr", type=float, default=Config.lr,
                        help="SGD learning rate (default: %(default)s)")
    parser.add_argument("--init-std", type=float, default=Config.init_std,
                        help="standard deviation of the initial weights (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=Config.seed,
                        help="seed of the initial weights and the batch order "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="figure1_results",
                        help="directory for figure1.json and figure1.png (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (default: one tqdm bar per run)")
    args = parser.parse_args(argv)

    steps = args.steps or (PAPER_STEPS if args.full else CI_STEPS)
    eval_every = args.eval_every or (500 if steps > 10_000 else 100)
    data = load_mnist("full" if args.full_data else "subset")
    base = Config(steps=steps, eval_every=eval_every, lr=args.lr, init_std=args.init_std,
                  seed=args.seed)
    runs = {}
    for key, norm in (("baseline", None), ("batchnorm", "batch")):
        runs[key] = train(data, dataclasses.replace(base, norm=norm),
                          progress=not args.no_progress, desc=key)
        print(f"{key}: test accuracy {runs[key].final_accuracy:.4f} after {steps} steps "
              f"({runs[key].seconds:.0f} s)", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"data": data.source, "n_train": len(data.x_train), "n_test": len(data.x_test),
               "steps": steps, "eval_every": eval_every, "lr": args.lr, "init_std": args.init_std,
               "seed": args.seed}
    for key, hist in runs.items():     # percentiles of units 0-9; the drift of every unit
        payload[key] = hist.to_json(units=list(range(JSON_UNITS)))
        payload[key]["drift"] = np.round(percentile_drift(hist), 4).tolist()
    (out / "figure1.json").write_text(json.dumps(payload) + "\n")
    try:
        import matplotlib
    except ImportError:         # matplotlib is in the ``book`` extra
        print(f"wrote {out / 'figure1.json'} (no figure: matplotlib is not installed)")
        return
    matplotlib.use("Agg")
    plot_figure1(runs["baseline"], runs["batchnorm"]).savefig(out / "figure1.png", dpi=120)
    print(f"wrote {out / 'figure1.json'} and {out / 'figure1.png'}")


if __name__ == "__main__":
    main()
