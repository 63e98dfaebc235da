"""scikit-learn's callbacks (sklearn.callback) on IICClustering: tasks, progress bars, logs."""

import io
import re
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import is_clusterer
from sklearn.callback import ProgressBar, ScoringMonitor
from sklearn.callback.tests._utils import FailingCallback, RecordingCallback, StopFitCallback
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_iic import IICClustering

# Fits of a few epochs leave clusters empty and do not converge; that is not tested here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:IICClustering labelled the data"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

# Few epochs, no convergence test: a fit of k epochs is the reference of an epoch's model.
SHORT = dict(n_clusters=3, n_epochs=3, tol=None, random_state=0)


class StopAfter:
    """Stops training after ``epochs`` epochs by returning True at that epoch's end."""

    def __init__(self, epochs):
        self.epochs = epochs

    def setup(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        return context.task_name == "epoch" and context.task_id + 1 == self.epochs

    def teardown(self, estimator, context):
        pass


@pytest.fixture
def console(monkeypatch):
    """rich's global console, on which ProgressBar draws, replaced by one written to a string."""
    rich = pytest.importorskip("rich")
    from rich.console import Console

    captured = Console(file=io.StringIO(), width=150)
    monkeypatch.setattr(rich, "_console", captured)
    return captured


def _ends(callback):
    """(task name, task id, fitted_estimator) of each task's end that ``callback`` recorded."""
    return [
        (r["context"].task_name, r["context"].task_id, r["kwargs"]["fitted_estimator"])
        for r in callback.record if r["name"] == "on_fit_task_end"
    ]


def test_the_fit_is_a_task_of_epochs_then_the_merge(blobs):
    X, y = blobs
    callback = RecordingCallback()
    model = IICClustering(**SHORT).set_callbacks(callback).fit(X, y)
    assert is_clusterer(model)
    names = [(r["name"], r["context"].task_name) for r in callback.record]
    epoch = [("on_fit_task_begin", "epoch"), ("on_fit_task_end", "epoch")]
    assert names == [
        ("setup", "fit"), ("on_fit_task_begin", "fit"), *epoch * 3,
        ("on_fit_task_begin", "merge"), ("on_fit_task_end", "merge"),
        ("on_fit_task_end", "fit"), ("teardown", "fit"),
    ]
    root = callback.record[0]["context"]
    assert root.max_subtasks == 3 + 1 and root.estimator_name == "IICClustering"
    assert [c.task_id for c in root._children_map.values()] == [0, 1, 2, 3]
    # The callbacks get fit's X and y as given.
    begin = callback.record[1]["kwargs"]
    assert begin["X"] is X and begin["y"] is y
    # No state of the callbacks is left on the estimator.
    assert not hasattr(model, "_callback_fit_ctx")


def test_automatic_epochs_are_counted_in_advance(blobs):
    X, _ = blobs
    callback = RecordingCallback()
    model = IICClustering(n_clusters=3, random_state=0).set_callbacks(callback, StopAfter(2))
    model.fit(X)
    assert callback.record[0]["context"].max_subtasks == model._plan.n_epochs + 1 == 101
    assert model.n_iter_ == 2


def test_an_epochs_model_predicts_as_a_fit_of_as_many_epochs(blobs):
    X, _ = blobs
    callback = RecordingCallback()
    model = IICClustering(**SHORT).set_callbacks(callback).fit(X)
    ends = _ends(callback)
    assert [(name, i) for name, i, _ in ends] == [
        ("epoch", 0), ("epoch", 1), ("epoch", 2), ("merge", 3), ("fit", 0)
    ]
    for epoch, (_, _, fitted) in enumerate(ends[:3]):
        reference = IICClustering(**dict(SHORT, n_epochs=epoch + 1)).fit(X)
        assert fitted is not model and fitted.n_iter_ == epoch + 1
        assert fitted.loss_curve_ == reference.loss_curve_
        np.testing.assert_array_equal(fitted.labels_, reference.labels_)
        np.testing.assert_array_equal(fitted.predict_proba(X), reference.predict_proba(X))
        assert fitted.score(X) == reference.score(X)
    # Making those models changed nothing in training: the fit is the plain fit.
    plain = IICClustering(**SHORT).fit(X)
    assert model.loss_curve_ == plain.loss_curve_
    np.testing.assert_array_equal(model.labels_, plain.labels_)
    np.testing.assert_array_equal(model.predict_proba(X), plain.predict_proba(X))
    for _, _, fitted in ends[3:]:
        np.testing.assert_array_equal(fitted.predict_proba(X), plain.predict_proba(X))


def test_a_callback_returning_true_stops_training_after_that_epoch(blobs, capsys):
    X, _ = blobs
    params = dict(n_clusters=3, n_epochs=50, random_state=0)
    with warnings.catch_warnings():
        # Stopped by a callback, the epochs did not run out: no ConvergenceWarning.
        warnings.simplefilter("error", ConvergenceWarning)
        model = IICClustering(**params, verbose=1).set_callbacks(StopAfter(2)).fit(X)
    assert model.n_iter_ == 2 and len(model.loss_curve_) == 2
    assert not model.converged_
    reference = IICClustering(**dict(params, n_epochs=2, tol=None)).fit(X)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_array_equal(model.predict(X), reference.predict(X))
    assert "stopped by a callback after 2 epochs" in capsys.readouterr().out.splitlines()[-1]
    # scikit-learn's own test callback, which stops every task: one epoch.
    stopper = StopFitCallback()
    model = IICClustering(**SHORT).set_callbacks(stopper).fit(X)
    assert model.n_iter_ == 1 and not model.converged_
    assert stopper.count_hooks("on_fit_task_end") == 1 + 1 + 1  # an epoch, the merge, the fit


def test_convergence_still_says_converged(blobs):
    X, _ = blobs
    params = dict(n_clusters=3, n_epochs=500, n_iter_no_change=5, n_microclusters=None,
                  random_state=0)
    callback = RecordingCallback()
    model = IICClustering(**params).set_callbacks(callback).fit(X)
    plain = IICClustering(**params).fit(X)
    assert model.converged_ and model.n_iter_ == plain.n_iter_ < 500
    fitted = _ends(callback)[model.n_iter_ - 1][2]
    assert fitted.converged_ and fitted.n_iter_ == model.n_iter_


def test_scoring_monitor_logs_scores_per_epoch(blobs):
    pytest.importorskip("pandas")
    X, y = blobs
    monitor = ScoringMonitor(scoring={
        "ari": "adjusted_rand_score",
        "loss": lambda estimator, X, y: estimator.loss_curve_[-1],
    })
    model = IICClustering(**SHORT).set_callbacks(monitor).fit(X, y)
    log = monitor.get_logs().data_as_pandas
    assert list(log["task_name"]) == ["fit", "epoch", "epoch", "epoch", "merge"]
    assert list(log["task_id_path"]) == [(0,), (0, 0), (0, 1), (0, 2), (0, 3)]
    epochs = log[log["task_name"] == "epoch"]
    np.testing.assert_array_equal(epochs["loss"], model.loss_curve_)
    assert log["ari"].iloc[0] == adjusted_rand_score(y, model.labels_)
    # scikit-learn's ScoringMonitor scores only tasks that have a y: fit(X) logs no score.
    monitor = ScoringMonitor(scoring="adjusted_rand_score")
    IICClustering(**SHORT).set_callbacks(monitor).fit(X)
    assert "adjusted_rand_score" not in monitor.get_logs().data_as_pandas


def test_progress_bar_counts_the_epochs(blobs, console, monkeypatch):
    from sklearn.callback._progressbar import RichProgressMonitor

    progress = []
    end = RichProgressMonitor._on_task_end

    def recording(self, task_info):
        end(self, task_info)
        progress.append(self.root_rich_task.progress)

    monkeypatch.setattr(RichProgressMonitor, "_on_task_end", recording)
    IICClustering(**SHORT).set_callbacks(ProgressBar()).fit(blobs[0])
    # Three epochs and the merge, each a quarter of the fit; then the fit ends.
    np.testing.assert_allclose(progress, [0.25, 0.5, 0.75, 1.0, 1.0])
    out = console.file.getvalue()
    assert re.search(r"IICClustering - fit\s+━+ 100%", out)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_progress_bars_of_a_grid_search_and_a_pipeline(blobs, console, n_jobs):
    X, _ = blobs
    iic = IICClustering(n_clusters=3, n_epochs=2, random_state=0)
    search = GridSearchCV(iic, {"lamb": [1.0, 1.5]}, cv=KFold(2), n_jobs=n_jobs)
    search.set_callbacks(ProgressBar(max_propagation_depth=1)).fit(X)
    out = console.file.getvalue()
    assert re.search(r"GridSearchCV - search #0", out)
    for fit in range(4):
        bar = rf"candidate-split-evaluation \| IICClustering - fit #{fit}\s+━+ 100%"
        assert re.search(bar, out)
    assert re.search(r"refit-with-best-params \| IICClustering - fit #\d\s+━+ 100%", out)
    # Every bar is complete.
    assert not re.search(r"\b\d{1,2}%", out)

    console.file.truncate(0)
    pipe = Pipeline([("scale", StandardScaler()), ("iic", iic)])
    search = GridSearchCV(pipe, {"iic__lamb": [1.0, 1.5]}, cv=KFold(2), n_jobs=n_jobs)
    search.set_callbacks(ProgressBar(max_propagation_depth=2)).fit(X)
    out = console.file.getvalue()
    assert len(re.findall(r"fit-final-estimator \| IICClustering - fit #1\s+━+ 100%", out)) == 5
    assert not re.search(r"\b\d{1,2}%", out)


def test_a_failing_callback_fails_the_fit_and_is_torn_down(blobs):
    X, _ = blobs
    model = IICClustering(**SHORT).fit(X)
    fitted = dict(vars(model))
    callback = FailingCallback(fail_at="on_fit_task_end")  # at the first epoch's end
    with pytest.raises(ValueError, match="Failing callback failed at on_fit_task_end"):
        model.set_callbacks(callback).fit(X[::-1])
    assert callback.count_hooks("setup") == callback.count_hooks("teardown") == 1
    # The fitted model is as it was (set_callbacks aside).
    assert vars(model).keys() == fitted.keys() | {"_skl_callbacks"}
    assert all(vars(model)[name] is value for name, value in fitted.items())


def test_rich_is_needed_by_the_progress_bar_only(blobs, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(ImportError, match="Progressbar requires rich"):
        ProgressBar()
    IICClustering(**SHORT).fit(blobs[0])
