"""Shared pieces of the benchmark scripts: data, timing a clusterer, summarising seeds, reports."""

import pathlib
import platform
import shlex
import sys
import time
from functools import partial

import numpy as np
import torch
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.datasets import make_blobs, make_classification
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from sklearn_iic.metrics import clustering_accuracy

METRICS = ("ACC", "NMI", "ARI")
# Classic methods that take no seed: one run stands for all.
DETERMINISTIC = ("Ward", "HDBSCAN")


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


class Classic:
    """A classic clusterer on standardised feature vectors (images flattened, as they are)."""

    def __init__(self, model, standardize):
        self.model, self.standardize = model, standardize

    def fit_predict(self, X):
        X = X.reshape(len(X), -1)
        if self.standardize:
            X = StandardScaler().fit_transform(X)
        return self.model.fit_predict(X)


def classic_methods(k, images=False, standardize=True):
    """The classic clusterers of the comparisons: ``{name: make(seed)}``.

    Parameters
    ----------
    k : int
        The number of clusters (HDBSCAN finds its own).
    images : bool, default=False
        Images: a diagonal-covariance Gaussian mixture of one initialisation,
        as full covariances of hundreds of pixels are out of reach.
    standardize : bool, default=True
        Standardise the features before fitting; pixels, which share one
        unit, are passed as they are.

    Returns
    -------
    dict
        KMeans (``n_init=10``), GaussianMixture, Ward, spectral clustering
        on a 10-nearest-neighbour graph and HDBSCAN, each a ``Classic``.
    """
    classic = {
        "KMeans": lambda s: KMeans(k, n_init=10, random_state=s),
        "GaussianMixture": lambda s: GaussianMixture(
            k, covariance_type="diag" if images else "full", n_init=1 if images else 3,
            random_state=s,
        ),
        "Ward": lambda s: AgglomerativeClustering(k),
        "Spectral (kNN)": lambda s: SpectralClustering(
            k, affinity="nearest_neighbors", n_neighbors=10, random_state=s
        ),
        "HDBSCAN": lambda s: HDBSCAN(copy=True),
    }
    return {name: partial(_classic, make, standardize) for name, make in classic.items()}


def _classic(make, standardize, seed):
    return Classic(make(seed), standardize)


def evaluate(make_model, X, y, seeds, describe=None):
    """Fit ``make_model(seed)`` on X for each seed; return per-seed metric dicts.

    ``describe(model, labels)``, if given, returns more fields of each run
    (a dict), read from the fitted model after the timed ``fit_predict``.
    Every run also says whether IIC's cluster heads labelled (``"head"``;
    false for other estimators).
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
            "head": getattr(model, "cluster_head_", None) is not None,
            **(describe(model, labels) if describe is not None else {}),
        })
    return runs


def head_count(heads):
    """``"k/n"``: on k of n runs the cluster heads labelled (``heads``: their ``"head"`` flags)."""
    return f"{int(np.sum(heads))}/{len(heads)}"


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


def cpu_model():
    """The CPU's model name and torch's kernel level (``lscpu`` reads the name from /proc)."""
    name = platform.processor() or platform.machine()
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


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
