"""Shared pieces of the benchmark scripts: data, timing a clusterer, summarising seeds, reports."""

import pathlib
import platform
import shlex
import sys
import time

import numpy as np
import torch
from sklearn.datasets import make_blobs, make_classification
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sklearn_iic.metrics import clustering_accuracy

METRICS = ("ACC", "NMI", "ARI")


def large_table(name, n):
    """``n`` float32 rows of a large-data table and their classes (``random_state=0``).

    ``"blobs"``: ``make_blobs`` with 50 features and 10 centres;
    ``"classification"``: ``make_classification`` with 20 features (10
    informative, no redundant ones), 10 classes of one cluster each,
    ``class_sep=2``, a table where KMeans is far from the classes.
    """
    if name == "blobs":
        X, y = make_blobs(n_samples=n, n_features=50, centers=10, random_state=0)
    else:
        X, y = make_classification(
            n, 20, n_informative=10, n_redundant=0, n_classes=10,
            n_clusters_per_class=1, class_sep=2.0, random_state=0,
        )
    return X.astype(np.float32), y


def evaluate(make_model, X, y, seeds, describe=None):
    """Fit ``make_model(seed)`` on X for each seed; return per-seed metric dicts.

    ``describe(model, labels)``, if given, returns more fields of each run
    (a dict), read from the fitted model after the timed ``fit_predict``.
    """
    runs = []
    for seed in seeds:
        model = make_model(seed)
        start = time.perf_counter()
        labels = model.fit_predict(X)
        seconds = time.perf_counter() - start
        runs.append({
            "ACC": clustering_accuracy(y, labels),
            "NMI": normalized_mutual_info_score(y, labels),
            "ARI": adjusted_rand_score(y, labels),
            "fit_s": seconds,
            **(describe(model, labels) if describe is not None else {}),
        })
    return runs


def summarise(runs):
    """Median, minimum and maximum of each metric over seeds."""
    out = {}
    for key in (*METRICS, "fit_s"):
        values = np.array([run[key] for run in runs])
        out[key] = (np.median(values), values.min(), values.max())
    return out


def fmt(stat, spread=True):
    median, low, high = stat
    return f"{median:.3f} ({low:.3f}-{high:.3f})" if spread else f"{median:.3f}"


def device_description():
    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name()}"
    cpu = platform.processor() or platform.machine()
    return f"CPU: {cpu}, {torch.get_num_threads()} torch threads"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path, title, body, argv=None):
    """Write a benchmark's Markdown report and return its text.

    Parameters
    ----------
    path : str or pathlib.Path
        The Markdown file; its folder is created if needed.
    title : str
        First line: what the figures are and the device they were measured on.
    body : str
        Tables and their captions.
    argv : list of str, default=None
        The command line, ``sys.argv`` when None. It is recorded as
        ``python benchmarks/<script> <arguments>``, exactly as run, so that the
        report says how to reproduce it.
    """
    argv = sys.argv if argv is None else argv
    command = shlex.join(["python", f"benchmarks/{pathlib.Path(argv[0]).name}", *argv[1:]])
    text = f"{title}\nCommand: `{command}`\n\n{body}\n"
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
