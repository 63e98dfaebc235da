"""
=========================================
Progress bars and score logs of a fit
=========================================

scikit-learn 1.9 ships a callback API (:mod:`sklearn.callback`): callbacks
set with ``set_callbacks`` follow the tasks of a fit, and those set on a
pipeline or a grid search follow the fits inside it.
:class:`~sklearn_iic.IICClustering` supports it: its fit is a task whose
subtasks are the epochs of training, then the merge of the micro-clusters
into clusters. Here a :class:`~sklearn.callback.ProgressBar` follows a fit
and a grid search, and a :class:`~sklearn.callback.ScoringMonitor` records
scores of every epoch.

The progress bar needs `rich <https://rich.readthedocs.io>`_ (the
``progress`` extra: ``pip install -e ".[progress]"``). It draws on rich's
console; so that this page can show what it drew, the console records it
and exports it as a picture of a terminal. In a terminal, without
``rich.reconfigure`` below, the bars move as the epochs run.
"""

# %%
import io
import os

import matplotlib.pyplot as plt
import rich
from sklearn.callback import ProgressBar, ScoringMonitor
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_iic import IICClustering

FAST = os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1"
params = dict(n_clusters=3, random_state=0)
if FAST:
    # 30 epochs, all run: without the convergence test, no warning that it was not met.
    params.update(n_epochs=30, tol=None)

X, y = load_wine(return_X_y=True)

# rich's console records what it prints, at a fixed width, instead of drawing it.
rich.reconfigure(record=True, width=110, file=io.StringIO())


class Terminal:
    """What rich's console printed since the last picture: a picture of a terminal (SVG)."""

    def __init__(self, title):
        console = rich.get_console()
        self.text = console.export_text(clear=False)
        self.svg = console.export_svg(title=title)

    def _repr_html_(self):
        return self.svg

    def __repr__(self):
        return self.text


# %%
# A fit: its progress bar and its scores
# --------------------------------------
# The bar counts the epochs and the merge; their number is known before the
# first epoch (``n_epochs="auto"`` is resolved then: 100 epochs for the 178
# wines). The :class:`~sklearn.callback.ScoringMonitor` computes its scores
# at the end of every task on a model that predicts as if the fit had
# stopped there: at an epoch's end, a model of the epochs run so far, merged
# and labelled as the end of a fit would. It scores only tasks that have a
# ``y``: training does not use the ``y`` given to ``fit``, the monitor
# compares the clusters with it. The second score reads the IIC loss that
# training minimised in the epoch, the last item of ``loss_curve_``.
monitor = ScoringMonitor(scoring={
    "ARI": "adjusted_rand_score",
    "IIC loss": lambda estimator, X, y: estimator.loss_curve_[-1],
})
iic = IICClustering(**params).set_callbacks(ProgressBar(), monitor).fit(X, y)
Terminal("IICClustering(n_clusters=3).set_callbacks(ProgressBar(), monitor).fit(X, y)")

# %%
# The log holds a row per task: the fit, each epoch and the merge.
log = monitor.get_logs().data_as_pandas
log[["task_name", "task_id", "ARI", "IIC loss"]].round(3)

# %%
epochs = log[log["task_name"] == "epoch"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharex=True)
for ax, score in zip(axes, ["ARI", "IIC loss"]):
    ax.plot(epochs["task_id"] + 1, epochs[score])
    ax.set_xlabel("epoch")
    ax.set_title(f"{score} of the model after each epoch")
fig.tight_layout()
plt.show()

# %%
# The ARI is zero for the first ten epochs or so, whose models put every
# wine into the same cluster: the uninformative start of training, where
# the loss rests on a plateau. It rises as the loss falls. A model ready to
# ``predict``, ``score`` or ``transform`` at every epoch costs a merge per
# epoch (the pairs of every sample, drawn many times), so only callbacks
# that ask for it, as the monitor does, pay for it: the progress bar alone
# does not.
#
# A grid search: a bar per fit
# ----------------------------
# Set on :class:`~sklearn.model_selection.GridSearchCV`, the progress bar
# follows the search, and, with ``max_propagation_depth=1``, the fit of each
# candidate on each split, whose bar counts its epochs; it does with
# ``n_jobs=2`` too, the fits then running in other processes. Without
# labels, the search ranks the candidates by
# :meth:`~sklearn_iic.IICClustering.score`.
search = GridSearchCV(
    IICClustering(**params), {"lamb": [1.0, 1.5]}, cv=KFold(3, shuffle=True, random_state=0)
)
search.set_callbacks(ProgressBar(max_propagation_depth=1)).fit(X)
Terminal("GridSearchCV(IICClustering(n_clusters=3), {'lamb': [1.0, 1.5]}).fit(X)")

# %%
# rich's console draws again, for whatever runs next.
rich.reconfigure()
