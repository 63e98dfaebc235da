"""Property-based tests: whatever the input and parameters, a clear outcome.

Either the fit succeeds, with finite probabilities whose rows sum to one, or
it raises a ValueError or TypeError from sklearn_iic or scikit-learn that
names the problem; never an error from deep inside torch or numpy, never
NaN output, and never a fitted model damaged by a failed refit.

The default profile runs a few dozen cases per property (CI); set
``HYPOTHESIS_PROFILE=long`` for hundreds, and
``SKLEARN_IIC_RELIABILITY_REPORT=file.json`` to count the outcomes by kind
(the figures of the reliability page of the docs).
"""

import collections
import json
import os
import pathlib
import re
import traceback
import warnings

import numpy as np
import pytest
import sklearn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sklearn_iic
from sklearn_iic import IICClustering

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

OURS = (
    str(pathlib.Path(sklearn_iic.__file__).parent),
    str(pathlib.Path(sklearn.__file__).parent),
)

DTYPES = st.sampled_from(
    ["float64", "float32", "float16", "int64", "int32", "uint8", "int8", "bool", "complex128"]
)
VALUES = st.one_of(
    st.floats(-1e3, 1e3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e-300, -1e-300, 1e-40, 1e39, -1e300, 1e300, 3e38]),
)


@st.composite
def arrays(draw):
    """Arrays of many dtypes, shapes, magnitudes and memory layouts; half of them plausible data."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        dtype = draw(st.sampled_from(["float64", "float32", "int64", "uint8"]))
        n_samples = draw(st.integers(8, 40))
        shape = draw(st.sampled_from([(n_samples, 1), (n_samples, 3), (n_samples, 6),
                                      (n_samples, 4, 4), (n_samples, 2, 3, 3)]))
        X = rng.normal(size=shape) * draw(st.sampled_from([1.0, 1e-20, 1e20, 255.0]))
    else:
        dtype = draw(DTYPES)
        ndim = draw(st.sampled_from([1, 2, 2, 2, 3, 4]))
        shape = draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=12))
        if ndim >= 2:
            shape = (draw(st.integers(0, 40)), *shape[1:])
        base = draw(st.sampled_from(["normal", "values", "constant"]))
        if base == "normal":
            X = rng.normal(size=shape) * draw(st.sampled_from([1.0, 1e-20, 1e20, 1e-310]))
        elif base == "constant":
            X = np.full(shape, draw(VALUES))
        else:
            X = rng.normal(size=shape)
            if X.size:
                flat = X.reshape(-1)
                for _ in range(draw(st.integers(1, 3))):
                    flat[draw(st.integers(0, X.size - 1))] = draw(VALUES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow and invalid casts make odd values, as wanted
        X = X.astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "reversed", "strided", "read-only", "frame"]))
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "reversed" and X.ndim >= 1:
        X = np.flip(X)
    elif layout == "strided" and X.ndim == 2:
        X = np.repeat(X, 2, axis=1)[:, ::2]
    elif layout == "read-only":
        X = X.copy()
        X.flags.writeable = False
    elif layout == "frame" and X.ndim == 2 and dtype != "complex128":
        pd = pytest.importorskip("pandas")
        X = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).iloc[::-1]
    return X


OUTCOMES = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def outcome_report():
    yield
    path = os.environ.get("SKLEARN_IIC_RELIABILITY_REPORT")
    if path:
        pathlib.Path(path).write_text(json.dumps(OUTCOMES.most_common(), indent=1))


def record(stage, exc=None):
    if exc is None:
        OUTCOMES[f"{stage}: success"] += 1
    else:
        kind = re.sub(r"[-+]?\d[\d.e+-]*", "#", str(exc).split(";")[0].split(":")[0])[:70]
        OUTCOMES[f"{stage}: {type(exc).__name__}: {kind}"] += 1


PARAMS = st.fixed_dictionaries(
    {
        "n_clusters": st.sampled_from([1, 2, 3, 4, 6, 2, 3, 0, True, 2.5]),
        "pairs": st.sampled_from(["auto", "perturbation", "neighbors", "both"]),
        "whiten": st.sampled_from(["auto", True, False]),
        "n_microclusters": st.sampled_from(["auto", None, 1, 6, 100]),
        "overclustering": st.sampled_from([0, 1.5, 3, 1e6]),
        "n_subheads": st.integers(1, 3),
        "n_repeats": st.integers(1, 2),
        "batch_size": st.sampled_from([2, 7, 256]),
        "n_neighbors": st.sampled_from([1, 3, 50]),
        "perturbation": st.sampled_from(["auto", None]),
    }
)


def fit_outcome(model, X):
    """Fit; return None on success, else the exception, after checking it is a clear one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X)
    except (ValueError, TypeError) as exc:
        check_clear(exc)
        record("fit", exc)
        return exc
    record("fit")
    return None


def check_clear(exc):
    """Raised by sklearn_iic or scikit-learn itself, with a message."""
    raiser = traceback.extract_tb(exc.__traceback__)[-1].filename
    assert raiser.startswith(OURS), f"{type(exc).__name__} raised in {raiser}: {exc}"
    assert str(exc), "an error must say what is wrong"


def check_fitted(model, X):
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    labels = model.labels_
    assert labels.min() >= 0 and labels.max() < model.n_clusters
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))


@given(X=arrays(), params=PARAMS)
def test_any_input_and_parameters_give_a_result_or_a_clear_error(X, params):
    model = IICClustering(n_epochs=1, random_state=0, device="cpu", **params)
    if fit_outcome(model, X) is None:
        check_fitted(model, X)


@given(X=arrays(), params=PARAMS)
def test_a_failed_refit_never_damages_a_fitted_model(X, params):
    good = np.random.default_rng(0).normal(size=(30, 3))
    model = IICClustering(n_clusters=2, n_epochs=1, random_state=0).fit(good)
    before, state = model.predict_proba(good), fitted_state(model)
    if fit_outcome(model.set_params(n_epochs=1, **params), X) is not None:
        assert fitted_state(model).keys() == state.keys()
        assert all(fitted_state(model)[k] is v for k, v in state.items())
        np.testing.assert_array_equal(model.predict_proba(good), before)
        record("refit left the model unchanged")


def fitted_state(model):
    """Every attribute but the hyper-parameters (which set_params changed)."""
    params = model.get_params(deep=False)
    return {k: v for k, v in vars(model).items() if k not in params}


@given(X=arrays())
def test_prediction_on_any_input_is_a_result_or_a_clear_error(X):
    model = IICClustering(n_clusters=2, n_epochs=1, random_state=0).fit(
        np.random.default_rng(0).normal(size=(30, 3))
    )
    try:
        proba = model.predict_proba(X)
    except (ValueError, TypeError) as exc:
        check_clear(exc)
        record("predict", exc)
    else:
        record("predict")
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
