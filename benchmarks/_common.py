"""Shared pieces of the benchmark scripts: timing a clusterer, summarising seeds, tables."""

import platform
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sklearn_iic.metrics import clustering_accuracy

METRICS = ("ACC", "NMI", "ARI")


def evaluate(make_model, X, y, seeds):
    """Fit ``make_model(seed)`` on X for each seed; return per-seed metric dicts."""
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
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
