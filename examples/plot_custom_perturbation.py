"""
==========================================
A custom perturbation for 1-D signals
==========================================

What IIC clusters on is decided by the perturbation: the network is rewarded
for giving a sample and its perturbed copy the same cluster, so whatever the
perturbation changes is what the clustering learns to ignore.

Here the data are 1-D signals of length 40 from the `MNIST-1D
<https://github.com/greydanus/mnist1d>`_ generator: ten template shapes,
each placed at a random position, scaled, sheared and corrupted by noise.
The class depends on the shape, not on where it sits in the signal, so a
good perturbation shifts the signal. We write one as a plain function
``g(x, generator)`` and compare it with the default pairing and with KMeans.

If the ``mnist1d`` package is not installed, a simpler set of synthetic
signal classes is generated with NumPy instead.
"""

# %%
# Data
# ----
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.cluster import KMeans

from sklearn_iic import IICClustering
from sklearn_iic.metrics import clustering_accuracy

FAST = os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1"
n_samples = 1500 if FAST else 4000
n_epochs = 30 if FAST else 150


def synthetic_signals(n_samples, length=40, seed=0):
    """Fallback data: five pulse shapes at random positions, with noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, 12)
    shapes = [np.exp(-8 * t**2), -np.exp(-8 * t**2), t, np.sin(np.pi * t), np.abs(t) - 0.5]
    y = rng.integers(len(shapes), size=n_samples)
    X = np.zeros((n_samples, length))
    for i, label in enumerate(y):
        start = rng.integers(length - len(t))
        X[i, start : start + len(t)] = rng.uniform(0.7, 1.3) * shapes[label]
    return X + 0.1 * rng.standard_normal(X.shape), y


try:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset generates the signals locally (get_dataset would download).
    data = make_dataset(get_dataset_args())
    X, y = data["x"][:n_samples], data["y"][:n_samples]
except ImportError:
    X, y = synthetic_signals(n_samples)

X = X.astype(np.float32)
n_classes = len(np.unique(y))
print(f"{X.shape[0]} signals of length {X.shape[1]}, {n_classes} classes")

# %%
# The perturbation
# ----------------
# A perturbation is any callable ``g(x, generator)``. It receives a whole
# batch ``x`` of shape ``(n, n_features)`` on the training device and must
# take all its randomness from ``generator`` (a :class:`torch.Generator` on
# the same device), so that fits are reproducible. It returns a new tensor of
# the same shape; it must not modify ``x`` in place.
#
# Ours draws, for every signal of the batch independently, a circular shift of
# up to ``max_shift`` samples, an amplitude factor and some noise. The shift is
# done for the whole batch at once by gathering with per-row shifted indices.
# It is defined at module level, so an estimator that uses it can be pickled.


def shift_scale_noise(x, generator, max_shift=8, gain=0.2, noise=0.1):
    """Random circular shift, amplitude scaling and additive noise, per signal."""
    n, length = x.shape
    shift = torch.randint(
        -max_shift, max_shift + 1, (n, 1), generator=generator, device=x.device
    )
    index = (torch.arange(length, device=x.device) - shift) % length
    shifted = x.gather(1, index)
    factor = 1 + gain * (2 * torch.rand(n, 1, generator=generator, device=x.device) - 1)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return shifted * factor.to(x.dtype) + noise * eps


# %%
# What the pairs look like: each panel shows a signal (black) and three
# independent draws of its perturbed pair (colours).
generator = torch.Generator().manual_seed(0)
batch = torch.tensor(X[:4])
fig, axes = plt.subplots(2, 2, figsize=(9, 5), sharex=True)
for ax, i in zip(axes.ravel(), range(len(batch))):
    for _ in range(3):
        ax.plot(shift_scale_noise(batch, generator)[i], lw=1, alpha=0.8)
    ax.plot(batch[i], color="black", lw=2)
    ax.set_title(f"class {y[i]}")
fig.suptitle("A signal (black) and three draws of g(x)")
fig.tight_layout()

# %%
# Clustering
# ----------
# ``pairs="perturbation"`` pairs every signal with ``g(x)`` only. The default
# estimator (with its generic pairs, see the user guide) and KMeans serve as
# baselines. All three are given the number of classes.
models = {
    "KMeans": KMeans(n_clusters=n_classes, n_init=10, random_state=0),
    "IIC, default pairs": IICClustering(
        n_clusters=n_classes, n_epochs=n_epochs, random_state=0
    ),
    "IIC, shift perturbation": IICClustering(
        n_clusters=n_classes,
        perturbation=shift_scale_noise,
        pairs="perturbation",
        n_epochs=n_epochs,
        random_state=0,
    ),
}
accuracy = {}
for name, model in models.items():
    labels = model.fit_predict(X)
    accuracy[name] = clustering_accuracy(y, labels)
    print(f"{name:25s} ACC {accuracy[name]:.3f}")

fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(accuracy), list(accuracy.values()), color=["grey", "tab:blue", "tab:orange"])
ax.axvline(1 / n_classes, color="black", ls=":", label="chance")
ax.set_xlim(0, 1)
ax.set_xlabel("clustering accuracy (Hungarian-matched)")
ax.invert_yaxis()
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %%
# The perturbation encodes what we know about the data: the position of the
# shape does not matter. A network that is itself insensitive to shifts (a
# 1-D convolutional network, passed with ``network=``, see
# :ref:`sphx_glr_auto_examples_plot_custom_network.py`) can exploit that
# knowledge further. Conversely, a perturbation that changed the shape itself
# (strong smoothing, say) would make the classes indistinguishable to IIC.
