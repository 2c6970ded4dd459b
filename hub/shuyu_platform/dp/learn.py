"""DP machine-learning models fitted on the raw rows inside the service (R1, R4).

A tenant asks for a model in JSON; :func:`parse_model` checks the request against the
dataset's policy and the tenant's grant, the ledger debits its ε, :func:`fit` trains a
diffprivlib estimator on the granted raw rows and returns **only fitted parameters**
(coefficients, class means, cluster centres): never rows, never the row count::

    {"dataset": "health_records", "model": "linear_regression", "epsilon": 0.5,
     "features": ["dosage_mg"], "label": "settlement_amount",
     "filters": [{"column": "sex", "op": "==", "value": "F"}]}

Models (:data:`MODELS`):

``logistic_regression``
    Objective perturbation (Chaudhuri et al., diffprivlib's ``LogisticRegression``
    algorithm), one-vs-rest over the label's public keys, ε split evenly over the fits.
``linear_regression``
    The functional mechanism (diffprivlib's ``LinearRegression``); the label must be
    numeric with DP bounds.
``gaussian_nb``
    Noisy per-class counts, means and variances (diffprivlib's ``GaussianNB``).
``kmeans``
    DPLloyd (diffprivlib's ``KMeans``), ``n_clusters`` centres.

Privacy accounting. Each fit is ε-DP as diffprivlib states for its estimator, with
ε = ``spec.epsilon / max_contributions`` (group privacy: one person may contribute up
to ``max_contributions`` rows), so the fit is ``spec.epsilon``-DP for the policy's privacy
unit and the ledger debits ``spec.epsilon`` (pure ε, basic composition, like queries).
diffprivlib's estimators get a fresh, unlimited ``BudgetAccountant`` per fit, so
diffprivlib neither refuses nor remembers anything; the ledger is the only account.

Everything the mechanisms are calibrated to comes from the policy: features (and a
regression label) are clipped to their ``dp.lower``/``dp.upper`` bounds and rescaled
with those public bounds before fitting (so diffprivlib's bounds and data norm are
known constants and it never measures them on the data), class labels are the label's
``dp.public_keys`` (rows with another value are dropped), and every released parameter
is transformed back to **column units**: a coefficient is per unit of its feature, a
class mean or a cluster centre is in the feature's own units.

Guards that are not in diffprivlib itself:

* Rows with a null (or NaN) in any used column are dropped, row by row.
* Before fitting, a few public *anchor rows* are appended at the centre of the feature
  box: one per class for classifiers, one for linear regression, ``n_clusters`` for
  k-means. They depend on nothing but the policy, so the fit stays ε-DP, and they make
  the fit succeed on any data (even no rows) with the same output shape (every public
  class present). A refusal or a missing class that depended on the true rows would
  leak them; the anchors' pull on the fit shrinks like (anchors / rows), negligible
  beyond a few hundred rows.
* Linear regression is fitted without diffprivlib's own intercept step, on features and
  label scaled to [-1, 1] plus a constant column: diffprivlib 0.6.6 computes the
  sensitivity of the squared terms from the lower bound only, which is exact only for
  bounds symmetric about zero, and its DP centring spends more than its share of ε
  (IBM/differential-privacy-library#104, #105).
* Class counts are not released (they sum to the true row count), and naive Bayes class
  priors are rounded to four decimals (diffprivlib normalises its noisy counts to the
  true total, which full-precision ratios would give away).

Caveat kept from diffprivlib: its analyses treat the number of rows as public. It
calibrates some noise with the true count (objective perturbation's regularisation,
k-means's number of iterations, naive Bayes's normalisation of its noisy class counts),
whereas the query engine's neighbours add or remove a person and keep the count
private. The count itself is never released here. diffprivlib's mechanisms draw their
noise from :class:`secrets.SystemRandom`, as no seed is given.

Compatibility: diffprivlib 0.6.6 fails to import with scikit-learn 1.9 and its
``LogisticRegression`` passes an argument scikit-learn 1.8 removed, so the project pins
scikit-learn below 1.8. The logistic fit calls diffprivlib's per-class solver (the
function its ``LogisticRegression.fit`` calls) directly, to fit exactly the public
classes with an explicit ε each.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

import numpy as np
import polars as pl

from ..data.policy import DatasetPolicy
from .engine import Source
from .query import EPSILON_QUANTUM, Filter, QueryError, _Checker, _filters, parse_epsilon

#: The models a tenant may fit.
MODELS: Final[tuple[str, ...]] = (
    "logistic_regression",
    "linear_regression",
    "gaussian_nb",
    "kmeans",
)
#: Models whose label is a categorical column with public keys.
CLASSIFIERS: Final[frozenset[str]] = frozenset({"logistic_regression", "gaussian_nb"})
#: Models that need a label at all.
SUPERVISED: Final[frozenset[str]] = CLASSIFIERS | {"linear_regression"}
#: Most features one model may use.
MAX_FEATURES: Final[int] = 20
#: Fewest and most k-means clusters.
MIN_CLUSTERS: Final[int] = 2
MAX_CLUSTERS: Final[int] = 20
#: Decimals kept of naive Bayes class priors (full precision would reveal the row count).
PRIOR_DECIMALS: Final[int] = 4

_KEYS: Final[frozenset[str]] = frozenset(
    {"dataset", "model", "features", "label", "epsilon", "filters", "n_clusters", "dry_run"}
)
_NO_ROW_COUNT: Final[str] = (
    "Parameters only: the number of rows used is not released (it is not differentially private)."
)
_MECHANISMS: Final[dict[str, str]] = {
    "logistic_regression": (
        "diffprivlib objective perturbation (Chaudhuri et al. 2011), one-vs-rest over the "
        "label's public keys with ε split evenly (a single fit for two classes)"
    ),
    "linear_regression": (
        "diffprivlib functional mechanism (Zhang et al. 2012): Laplace noise on the "
        "coefficients of the least-squares objective"
    ),
    "gaussian_nb": (
        "diffprivlib Gaussian naive Bayes: ε/3 each on noisy class counts, per-class means "
        "and per-class variances"
    ),
    "kmeans": "diffprivlib DPLloyd k-means (Su et al. 2016): noisy counts and sums per iteration",
}

#: Serialises fits: warning filters are process-wide, and fits are run on worker threads.
_FIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """A checked model request: every column exists, is granted and fits its role."""

    dataset: str
    model: str
    features: tuple[str, ...]
    label: str | None
    """The class column (classifiers) or the target (linear regression); None for k-means."""
    epsilon: float
    """ε of the whole fit, capped by the policy and quantised like a query's."""
    filters: tuple[Filter, ...]
    n_clusters: int | None
    """Number of k-means centres; None for every other model."""
    dry_run: bool = False

    @property
    def epsilon_micro(self) -> int:
        """ε in millionths: what the ledger debits."""
        return round(self.epsilon / EPSILON_QUANTUM)

    def as_dict(self) -> dict[str, Any]:
        """Canonical JSON form (for the ledger and the audit chain); parses back to itself."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "features": list(self.features),
            "label": self.label,
            "epsilon": self.epsilon,
            "filters": [f.as_dict() for f in self.filters],
            "n_clusters": self.n_clusters,
        }


# ============================================================================== parsing


def parse_model(body: Any, policy: DatasetPolicy, granted: Sequence[str]) -> ModelSpec:
    """Check a JSON model request against ``policy`` and the grant's ``granted`` fields.

    Raises :class:`~.query.QueryError` naming the offending part (status 403 for a column
    outside the grant); nothing is debited for a request that fails here.
    """
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object")
    unknown = set(body) - _KEYS
    if unknown:
        raise QueryError(
            f"unknown request keys: {', '.join(sorted(unknown))}; "
            f"a model request takes {', '.join(sorted(_KEYS))}"
        )
    if body.get("dataset") != policy.dataset:
        raise QueryError(f"the request is about {body.get('dataset')!r}, not {policy.dataset}")
    model = body.get("model")
    if not isinstance(model, str) or model not in MODELS:
        raise QueryError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
    check = _Checker(policy, granted)
    features = _features(body.get("features"), check)
    label = _label(model, body.get("label"), features, check)
    n_clusters = _n_clusters(model, body.get("n_clusters"))
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise QueryError("dry_run must be true or false")
    return ModelSpec(
        dataset=policy.dataset,
        model=model,
        features=features,
        label=label,
        epsilon=parse_epsilon(body, policy),
        filters=_filters(body.get("filters"), check),
        n_clusters=n_clusters,
        dry_run=dry_run,
    )


def _features(raw: Any, check: _Checker) -> tuple[str, ...]:
    """The feature columns: 1 to :data:`MAX_FEATURES` distinct numeric columns with bounds."""
    if not isinstance(raw, list) or not raw:
        raise QueryError("features must be a non-empty list of numeric column names")
    if len(raw) > MAX_FEATURES:
        raise QueryError(f"at most {MAX_FEATURES} features per model, not {len(raw)}")
    for index, column in enumerate(raw):
        check.numeric(column, f"features[{index}]")
    if len(set(raw)) != len(raw):
        twice = next(c for c in raw if raw.count(c) > 1)
        raise QueryError(f"features name {twice!r} twice")
    return tuple(raw)


def _label(model: str, raw: Any, features: tuple[str, ...], check: _Checker) -> str | None:
    """The label column, checked for the model's kind (None for k-means)."""
    if model not in SUPERVISED:
        if raw is not None:
            raise QueryError(f"{model} takes no label (it clusters the features)")
        return None
    if raw is None:
        kind = "a categorical" if model in CLASSIFIERS else "a numeric"
        raise QueryError(f"{model} needs a label: {kind} column")
    if model in CLASSIFIERS:
        field = check.field(raw, "label")
        if field.dp is None or field.dp.public_keys is None:
            raise QueryError(
                f"label: {raw!r} has no public key set in the policy of {check.policy.dataset}, "
                f"so it cannot be a class label; {model} needs a categorical label with "
                "dp.public_keys"
            )
        if len(field.dp.public_keys) < 2:
            raise QueryError(
                f"label: {raw!r} has a single public key; a classifier needs at least two classes"
            )
    else:
        check.numeric(raw, "label")
    if raw in features:
        raise QueryError(f"label {raw!r} is also a feature")
    return str(raw)


def _n_clusters(model: str, raw: Any) -> int | None:
    """The number of k-means centres (None for every other model)."""
    if model != "kmeans":
        if raw is not None:
            raise QueryError(f"only kmeans takes n_clusters, not {model}")
        return None
    if raw is None:
        raise QueryError(
            f"kmeans needs n_clusters, a whole number from {MIN_CLUSTERS} to {MAX_CLUSTERS}"
        )
    if isinstance(raw, bool) or not isinstance(raw, int) or not MIN_CLUSTERS <= raw <= MAX_CLUSTERS:
        raise QueryError(
            f"n_clusters must be a whole number from {MIN_CLUSTERS} to {MAX_CLUSTERS}, not {raw!r}"
        )
    return raw


# ============================================================================ estimate


def estimate(spec: ModelSpec) -> dict[str, Any]:
    """What a fit of ``spec`` would cost and how it works, without touching any row."""
    return {
        "epsilon": spec.epsilon,
        "model": spec.model,
        "features": list(spec.features),
        "label": spec.label,
        "n_clusters": spec.n_clusters,
        "mechanism": _MECHANISMS[spec.model],
        "note": (
            f"A fit costs ε = {spec.epsilon:g}, divided by the policy's max_contributions "
            "for group privacy. Features are clipped to their policy bounds; the returned "
            "parameters are in column units. Accuracy depends on the number of rows (not "
            "known in advance and never released): with tens of thousands of rows and ε "
            "around 1 the noise is small, with hundreds it can dominate. " + _NO_ROW_COUNT
        ),
    }


# ================================================================================= fit


def fit(source: Source, spec: ModelSpec) -> dict[str, Any]:
    """Fit ``spec`` on the granted raw rows of ``source``; JSON-able parameters only.

    Call only after the ledger has debited ``spec.epsilon``. The result never holds rows
    or the row count.
    """
    dpl = _diffprivlib()
    policy = source.policy
    lower, upper = _bounds(policy, spec.features)
    frame = _rows(source, spec)
    x = np.clip(frame.select(spec.features).to_numpy().astype(np.float64), lower, upper)
    epsilon = spec.epsilon / source.contributions
    with _FIT_LOCK, warnings.catch_warnings():
        # Every bound is given, so a PrivacyLeakWarning would mean a bug here: fail closed.
        warnings.simplefilter("error", dpl.PrivacyLeakWarning)
        # A noisy objective often stops before lbfgs's tolerance; that is expected.
        warnings.filterwarnings("ignore", category=dpl.ConvergenceWarning)
        # scipy deprecates the lbfgs 'iprint' option diffprivlib 0.6.6 still passes.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"diffprivlib\.")
        if spec.model == "logistic_regression":
            keys = _public_keys(policy, spec.label)
            y = frame[str(spec.label)].to_numpy()
            params = _logistic(dpl, x, y, keys, lower, upper, epsilon)
        elif spec.model == "linear_regression":
            y_lower, y_upper = _bounds(policy, (str(spec.label),))
            y = np.clip(frame[str(spec.label)].to_numpy().astype(np.float64), y_lower, y_upper)
            params = _linear(dpl, x, y, lower, upper, float(y_lower[0]), float(y_upper[0]), epsilon)
        elif spec.model == "gaussian_nb":
            keys = _public_keys(policy, spec.label)
            y = frame[str(spec.label)].to_numpy()
            params = _gaussian_nb(dpl, x, y, keys, lower, upper, epsilon)
        else:
            assert spec.n_clusters is not None  # parse_model requires it
            params = _kmeans(dpl, x, spec.n_clusters, lower, upper, epsilon)
    return {
        "model": spec.model,
        "features": list(spec.features),
        "label": spec.label,
        **params,
        "n_rows_note": _NO_ROW_COUNT,
    }


@functools.cache
def _diffprivlib() -> SimpleNamespace:
    """diffprivlib's pieces (it pulls in scikit-learn), imported once with this module."""
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.models import GaussianNB, KMeans, LinearRegression
    from diffprivlib.models.logistic_regression import _logistic_regression_path
    from diffprivlib.utils import PrivacyLeakWarning
    from sklearn.exceptions import ConvergenceWarning

    return SimpleNamespace(
        BudgetAccountant=BudgetAccountant,
        GaussianNB=GaussianNB,
        KMeans=KMeans,
        LinearRegression=LinearRegression,
        logistic_path=_logistic_regression_path,
        PrivacyLeakWarning=PrivacyLeakWarning,
        ConvergenceWarning=ConvergenceWarning,
    )


# Imported with this module (which the service imports before it debits anything), so a
# diffprivlib that cannot load refuses the request instead of failing a debited fit.
_diffprivlib()


def _bounds(policy: DatasetPolicy, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The policy's DP bounds of numeric ``columns`` (checked by :func:`parse_model`)."""
    lower, upper = [], []
    for column in columns:
        settings = policy.fields[column].dp
        assert settings is not None and settings.lower is not None and settings.upper is not None
        lower.append(settings.lower)
        upper.append(settings.upper)
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)


def _public_keys(policy: DatasetPolicy, label: str | None) -> list[str]:
    """The class labels of a classifier: the label's public keys, in policy order."""
    assert label is not None
    settings = policy.fields[label].dp
    assert settings is not None and settings.public_keys is not None
    return list(settings.public_keys)


def _rows(source: Source, spec: ModelSpec) -> pl.DataFrame:
    """The used columns of the granted, filtered rows, without rows holding a null or NaN.

    Features (and a regression label) are Float64; a class label is text, and rows whose
    label is not one of its public keys are dropped.
    """
    numeric = list(spec.features)
    if spec.model == "linear_regression":
        numeric.append(str(spec.label))
    exprs = [pl.col(c).cast(pl.Float64).fill_nan(None) for c in numeric]
    frame = source.rows(spec.filters)
    if spec.model in CLASSIFIERS:
        label = str(spec.label)
        keys = _public_keys(source.policy, label)
        exprs.append(pl.col(label).cast(pl.String))
        frame = frame.select(exprs).drop_nulls().filter(pl.col(label).is_in(keys))
    else:
        frame = frame.select(exprs).drop_nulls()
    return frame.collect()


def _to_symmetric(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Map the box [lower, upper] onto [-1, 1] per column."""
    return 2.0 * (x - lower) / (upper - lower) - 1.0


def _to_unit(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Map the box [lower, upper] onto [0, 1] per column."""
    return (x - lower) / (upper - lower)


def _floats(values: Any) -> list[Any]:
    """A (nested) array as JSON numbers; a non-finite value (a diverged fit) becomes None."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim > 1:
        return [_floats(row) for row in array]
    return [float(v) if math.isfinite(v) else None for v in array]


def _logistic(
    dpl: SimpleNamespace,
    x: np.ndarray,
    y: np.ndarray,
    keys: list[str],
    lower: np.ndarray,
    upper: np.ndarray,
    epsilon: float,
) -> dict[str, Any]:
    """One-vs-rest logistic regression over the public ``keys``; coefficients per column unit.

    Features are scaled to [-1, 1], so every row's norm is at most √d, the data norm
    diffprivlib needs. Two classes take one fit (the log-odds of ``keys[1]`` against
    ``keys[0]``) with all of ε; more take one fit per class with ε / (number of classes),
    exactly as diffprivlib's ``LogisticRegression.fit`` splits it.
    """
    n_features = x.shape[1]
    z = np.vstack([_to_symmetric(x, lower, upper), np.zeros((len(keys), n_features))])
    labels = np.concatenate([y.astype(object), np.asarray(keys, dtype=object)])
    positive = keys[1:] if len(keys) == 2 else keys
    data_norm = math.sqrt(n_features)
    rows = []
    for cls in positive:
        coefs, _, _ = dpl.logistic_path(
            z,
            labels,
            epsilon=epsilon / len(positive),
            data_norm=data_norm,
            pos_class=cls,
            Cs=[1.0],
            fit_intercept=True,
            max_iter=100,
            tol=1e-4,
            random_state=None,
            check_input=False,
        )
        rows.append(coefs[0])
    fitted = np.asarray(rows)  # (fits, d + 1): coefficients in scaled units, then intercept
    # z = a * x + b per column, so w·z + w0 = (w * a)·x + (w0 + w·b).
    a = 2.0 / (upper - lower)
    b = -(upper + lower) / (upper - lower)
    coef = fitted[:, :n_features] * a
    intercept = fitted[:, n_features] + fitted[:, :n_features] @ b
    return {
        "classes": keys,
        "positive_classes": positive,
        "coef": _floats(coef),
        "intercept": _floats(intercept),
        "note": (
            "Row i of coef and intercept gives the log-odds of positive_classes[i] "
            + (
                f"against {keys[0]!r}"
                if len(keys) == 2
                else "against all other classes (one-vs-rest; predict the class with the "
                "highest score)"
            )
            + ", per unit of each feature."
        ),
    }


def _linear(
    dpl: SimpleNamespace,
    x: np.ndarray,
    y: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    y_lower: float,
    y_upper: float,
    epsilon: float,
) -> dict[str, Any]:
    """Least squares with the functional mechanism; coefficients per column unit.

    Features and label are scaled to [-1, 1] and a constant column carries the intercept,
    so diffprivlib fits without its own centring (``fit_intercept=False``) and every
    sensitivity it computes is exact (see the module docstring).
    """
    n_features = x.shape[1]
    z = np.vstack([_to_symmetric(x, lower, upper), np.zeros((1, n_features))])
    z = np.hstack([z, np.ones((z.shape[0], 1))])
    y_span = np.array([y_lower]), np.array([y_upper])
    target = np.concatenate([_to_symmetric(y, *y_span), [0.0]])
    ones = np.ones(n_features + 1)
    model = dpl.LinearRegression(
        epsilon=epsilon,
        bounds_X=(np.append(-np.ones(n_features), 1.0), ones),
        bounds_y=(-1.0, 1.0),
        fit_intercept=False,
        accountant=dpl.BudgetAccountant(),
    ).fit(z, target)
    w = np.asarray(model.coef_, dtype=np.float64).ravel()
    # x' = a x + b per feature, y = c y' + d: y = c (w·(a x + b) + w0) + d.
    a = 2.0 / (upper - lower)
    b = -(upper + lower) / (upper - lower)
    c = (y_upper - y_lower) / 2.0
    d = y_lower + c
    coef = c * w[:n_features] * a
    intercept = c * (w[n_features] + w[:n_features] @ b) + d
    return {
        "coef": _floats(coef),
        "intercept": _floats([intercept])[0],
        "note": "label ≈ intercept + Σ coef[j] × features[j], in column units.",
    }


def _gaussian_nb(
    dpl: SimpleNamespace,
    x: np.ndarray,
    y: np.ndarray,
    keys: list[str],
    lower: np.ndarray,
    upper: np.ndarray,
    epsilon: float,
) -> dict[str, Any]:
    """Gaussian naive Bayes over the public ``keys``; means and variances in column units."""
    n_features = x.shape[1]
    u = np.vstack([_to_unit(x, lower, upper), np.full((len(keys), n_features), 0.5)])
    labels = np.concatenate([y.astype(object), np.asarray(keys, dtype=object)])
    model = dpl.GaussianNB(
        epsilon=epsilon,
        bounds=(np.zeros(n_features), np.ones(n_features)),
        accountant=dpl.BudgetAccountant(),
    ).fit(u, labels)
    order = [list(model.classes_).index(k) for k in keys]  # diffprivlib sorts the classes
    span = upper - lower
    theta = lower + np.asarray(model.theta_)[order] * span
    var = np.asarray(model.var_)[order] * span**2
    prior = np.round(np.asarray(model.class_prior_)[order], PRIOR_DECIMALS)
    return {
        "classes": keys,
        "theta": _floats(theta),
        "var": _floats(var),
        "class_prior": _floats(prior),
        "note": (
            "theta[i][j] and var[i][j] are the mean and variance of features[j] in class "
            f"classes[i], in column units; class_prior is rounded to {PRIOR_DECIMALS} decimals."
        ),
    }


def _kmeans(
    dpl: SimpleNamespace,
    x: np.ndarray,
    n_clusters: int,
    lower: np.ndarray,
    upper: np.ndarray,
    epsilon: float,
) -> dict[str, Any]:
    """DP k-means on features scaled to [0, 1]; centres in column units, sorted."""
    n_features = x.shape[1]
    u = np.vstack([_to_unit(x, lower, upper), np.full((n_clusters, n_features), 0.5)])
    model = dpl.KMeans(
        n_clusters=n_clusters,
        epsilon=epsilon,
        bounds=(np.zeros(n_features), np.ones(n_features)),
        accountant=dpl.BudgetAccountant(),
    ).fit(u)
    centres = lower + np.asarray(model.cluster_centers_, dtype=np.float64) * (upper - lower)
    centres = centres[np.lexsort(centres.T[::-1])]  # by the first feature, then the next
    return {
        "n_clusters": n_clusters,
        "cluster_centers": _floats(centres),
        "note": "One row per centre, one value per feature, in column units.",
    }
