"""scikit-learn's callbacks (:mod:`sklearn.callback`) in a fit: the fit, its epochs, the merge.

A fit of :class:`~sklearn_iic.IICClustering` is the root task of
scikit-learn's callback API; its subtasks are the epochs of training, in
order, then the merge of the micro-clusters (which labels the data too).
:class:`FitTasks` opens and ends them; :class:`EpochTasks` is the training
loop's callback through which it follows the epochs.
"""

from ._training import Callback


class FitTasks:
    """The tasks of one fit, for the callbacks set with ``set_callbacks``.

    Made once the plan of the fit, and so its number of epochs, is known:
    the fit's task then begins, with room for ``n_epochs`` epochs and the
    merge. Trained data-parallel, only rank 0 calls the callbacks: on the
    other ranks (``rank != 0``) no task is opened and :meth:`begin` and
    :meth:`end` do nothing.

    Parameters
    ----------
    estimator : IICClustering
        The estimator being fitted.
    X, y : object
        The arguments of ``fit``, as given: what the callbacks receive.
    n_epochs : int
        The most epochs the fit runs.
    rank : int
        This process's rank in the fit.

    Attributes
    ----------
    fit : sklearn.callback.CallbackContext or None
        The fit's task; None on the ranks that call no callbacks.
    observed : bool
        Whether callbacks are set, so that the epochs are worth following.
    """

    def __init__(self, estimator, X, y, n_epochs, rank):
        self.estimator, self.X, self.y = estimator, X, y
        self.fit = None
        if rank == 0:
            self.fit = estimator._init_callback_context(max_subtasks=n_epochs + 1)
            self.fit.call_on_fit_task_begin(estimator=estimator, X=X, y=y)
        self.observed = self.fit is not None and bool(getattr(estimator, "_skl_callbacks", ()))

    def begin(self, task_name):
        """Begin the fit's next subtask, ``task_name``: its context, or None on other ranks."""
        if self.fit is None:
            return None
        task = self.fit.subcontext(task_name=task_name)
        task.call_on_fit_task_begin(estimator=self.estimator, X=self.X, y=self.y)
        return task

    def end(self, task, attributes=None):
        """End ``task``; whether a callback asks to stop there.

        ``attributes`` (a dict, or a callable that returns one, called only
        if a callback asks for ``fitted_estimator``) are the fitted
        attributes of a model that predicts as if fit had stopped there.
        """
        if task is None:
            return False
        return task.call_on_fit_task_end(
            estimator=self.estimator, X=self.X, y=self.y, reconstruction_attributes=attributes
        )


class EpochTasks(Callback):
    """The training loop's callback that runs every epoch as a task ``"epoch"`` of the fit.

    At an epoch's end, a callback that returns True stops training after
    that epoch (``loop.stop_training``); the loop's ``converged`` stays as
    the convergence test left it. Every rank learns at a checkpoint whether
    rank 0, the one that calls the callbacks, stops, so that all stop after
    the same epoch.

    Parameters
    ----------
    tasks : FitTasks
        The tasks of the fit.
    fitted_attributes : callable
        ``fitted_attributes(loop)``: the fitted attributes of a model that
        predicts as if fit had stopped after the loop's current epoch.
    """

    def __init__(self, tasks, fitted_attributes):
        self.tasks = tasks
        self.fitted_attributes = fitted_attributes

    def on_epoch_begin(self, loop, epoch):
        self.task = self.tasks.begin("epoch")

    def on_epoch_end(self, loop, epoch, loss):
        stop = self.tasks.end(self.task, lambda: self.fitted_attributes(loop))
        if loop.group.checkpoint(value=int(stop)):
            loop.stop_training = True
