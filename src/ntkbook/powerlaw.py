"""Power laws: fits with uncertainties, and where a power law crosses a threshold.

A scaling curve is a measured quantity ``y`` (test loss, a kernel measure) against a resource
``x`` (training-set size, width, compute). :func:`fit_power_law` fits

    y = a · x^(−α)            (``offset=False``)
    y = a · x^(−α) + c        (``offset=True``, ``c`` the irreducible part)

and reports every parameter with a one-sigma standard error. :func:`threshold_crossing` reads
off where a fitted decaying law falls to a given threshold. :func:`compare_exponents` gives the
difference of two fitted exponents with a confidence interval (and in standard errors), which
is how the scaling chapter tests whether data and model scaling have similar exponents.
:func:`frontier` is the compute-efficient frontier of pooled runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _scipy_stats
from scipy.optimize import least_squares

__all__ = [
    "PowerLawFit",
    "fit_power_law",
    "ThresholdCrossing",
    "threshold_crossing",
    "ExponentComparison",
    "compare_exponents",
    "frontier",
]


def _critical_value(confidence: float, dof: float) -> float:
    """Two-sided critical value: Student t with ``dof`` degrees of freedom, normal at ∞."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not dof > 0:
        raise ValueError(f"degrees of freedom must be positive, got {dof}")
    quantile = 0.5 + confidence / 2.0
    if math.isinf(dof):
        return float(_scipy_stats.norm.ppf(quantile))
    return float(_scipy_stats.t.ppf(quantile, dof))


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted ``y = prefactor · x^(−exponent) + offset`` with one-sigma standard errors.

    ``exponent`` is α, positive for a decaying law. Without an offset, ``offset`` and
    ``offset_err`` are 0. ``method`` names how the errors were obtained (see
    :func:`fit_power_law`); ``covariance`` is the 3×3 covariance of (prefactor, exponent,
    offset) whose diagonal gives the squared errors; ``reduced_chi2`` is ``Σ r_i²/(n − p)`` of
    the weighted residuals in the space the fit was done in (log space without offset, linear
    with), NaN when ``n == p``. ``error_dof`` is the number of degrees of freedom behind the
    errors: ``n − p`` when they were estimated from the scatter about the law (no ``y_err``,
    no bootstrap), infinite otherwise; :meth:`exponent_interval` uses it.
    """

    prefactor: float
    exponent: float
    offset: float
    prefactor_err: float
    exponent_err: float
    offset_err: float
    n_points: int
    method: str
    reduced_chi2: float
    covariance: tuple[tuple[float, ...], ...]
    error_dof: float = math.inf

    def exponent_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """``α ± q · σ_α`` with ``q`` the Student-t quantile for :attr:`error_dof` degrees of
        freedom (the normal quantile when it is infinite)."""
        half = _critical_value(confidence, self.error_dof) * self.exponent_err
        return (self.exponent - half, self.exponent + half)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """``prefactor · x^(−exponent) + offset`` at ``x > 0``."""
        x = np.asarray(x, dtype=np.float64)
        if np.any(~np.isfinite(x)) or np.any(x <= 0):
            raise ValueError(f"predict needs finite x > 0, got {x}")
        return self.prefactor * x ** (-self.exponent) + self.offset


def _check_inputs(x, y, y_err, offset):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape}, {y.shape}")
    for name, values in (("x", x), ("y", y)):
        if np.any(~np.isfinite(values)):
            raise ValueError(f"{name} contains NaN or inf: {values}")
    if np.any(x <= 0):
        raise ValueError(f"x must be positive for a power law x^(-alpha), got {x}")
    if not offset and np.any(y <= 0):
        raise ValueError(
            f"y must be positive to fit log y = log a - alpha log x (offset=False), got {y}"
        )
    if y_err is not None:
        y_err = np.asarray(y_err, dtype=np.float64)
        if y_err.shape != y.shape:
            raise ValueError(f"y_err has shape {y_err.shape}, expected {y.shape}")
        if np.any(~np.isfinite(y_err)) or np.any(y_err <= 0):
            raise ValueError(f"y_err must be finite and positive, got {y_err}")
    n_params = 3 if offset else 2
    if x.size < n_params:
        raise ValueError(
            f"{x.size} points cannot determine {n_params} parameters "
            f"(offset={offset}); need at least {n_params}"
        )
    if y_err is None and x.size == n_params:
        raise ValueError(
            f"{x.size} points for {n_params} parameters leave no residual to estimate the "
            "uncertainty from; pass y_err or more points"
        )
    if np.unique(x).size < n_params:
        raise ValueError(f"x needs at least {n_params} distinct values, got {np.unique(x)}")
    return x, y, y_err


def _weighted_linear_fit(log_x, log_y, sigma):
    """Weighted least squares for ``log y = b − α log x``; returns (b, α), covariance, chi2."""
    design = np.stack([np.ones_like(log_x), -log_x], axis=1) / sigma[:, None]
    target = log_y / sigma
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ solution
    covariance = np.linalg.inv(design.T @ design)
    return solution, covariance, float(residual @ residual)


def _offset_residuals(theta, x, y, sigma):
    a, alpha, c = theta
    return (a * x ** (-alpha) + c - y) / sigma


def _offset_jacobian(theta, x, y, sigma):
    a, alpha, _ = theta
    power = x ** (-alpha)
    return np.stack([power, -a * np.log(x) * power, np.ones_like(x)], axis=1) / sigma[:, None]


def _starts(x, y):
    """Starting points for the offset fit, one per trial offset ``c0``.

    With ``c0`` below ``min(y)`` (decaying, ``a > 0``) or above ``max(y)`` (``a < 0``) the model
    is a straight line in log space, whose fit starts close to the basin of the optimum.
    """
    span = float(np.ptp(y)) or float(np.abs(y).max()) or 1.0
    for fraction in (1e-2, 0.1, 1.0):
        for sign in (1.0, -1.0):
            c0 = y.min() - fraction * span if sign > 0 else y.max() + fraction * span
            (b, alpha), _, _ = _weighted_linear_fit(
                np.log(x), np.log(sign * (y - c0)), np.ones_like(x)
            )
            yield np.array([sign * np.exp(b), alpha, c0])


def _nonlinear_fit(x, y, sigma, start=None):
    """Least squares for ``a x^(−α) + c`` from ``start``, or the best of :func:`_starts`."""
    best = None
    for theta0 in [start] if start is not None else _starts(x, y):
        result = least_squares(
            _offset_residuals,
            theta0,
            jac=_offset_jacobian,
            args=(x, y, sigma),
            method="lm",
            x_scale="jac",
        )
        if np.all(np.isfinite(result.x)) and (best is None or result.cost < best.cost):
            best = result
    if best is None:
        raise ValueError("the nonlinear power-law fit with offset did not converge")
    jac = _offset_jacobian(best.x, x, y, sigma)
    covariance = np.linalg.pinv(jac.T @ jac)
    return best.x, covariance, float(2.0 * best.cost)


def _fit(x, y, sigma, offset, start=None):
    """Point estimate (a, α, c), its covariance (unscaled) and chi2 of the weighted residuals."""
    if offset:
        return _nonlinear_fit(x, y, sigma, start)
    (b, alpha), covariance_log, chi2 = _weighted_linear_fit(np.log(x), np.log(y), sigma)
    a = np.exp(b)
    # Delta method: a = exp(b), so ∂a/∂b = a; c is fixed at 0.
    jac = np.array([[a, 0.0], [0.0, 1.0], [0.0, 0.0]])
    return np.array([a, alpha, 0.0]), jac @ covariance_log @ jac.T, chi2


def fit_power_law(
    x: ArrayLike,
    y: ArrayLike,
    *,
    y_err: ArrayLike | None = None,
    offset: bool = False,
    key: jax.Array | None = None,
    n_bootstrap: int = 1000,
) -> PowerLawFit:
    """Fit ``y = a · x^(−α)`` (``offset=False``) or ``y = a · x^(−α) + c`` (``offset=True``).

    How the point estimate is found
        ``offset=False``: weighted linear least squares of ``log y = log a − α log x``, each
        point weighted by ``1/σ_i²`` with ``σ_i = y_err_i / y_i`` (the log-space error, first
        order), or equal weights without ``y_err``. ``offset=True``: nonlinear least squares of
        ``Σ_i ((a x_i^(−α) + c − y_i)/y_err_i)²`` (Levenberg–Marquardt, analytic Jacobian),
        started from the best of several log-linear fits with a trial offset.

    How the uncertainties are obtained
        ``key=None``: from the covariance of the least-squares estimate, ``(JᵀWJ)⁻¹`` (``J``
        the Jacobian of the model at the optimum; in log space for ``offset=False``, where it is
        exact for the linear fit). With ``y_err`` the errors are taken as absolute one-sigma
        errors; without, the covariance is scaled by the reduced chi-square
        ``s² = Σ r_i²/(n − p)`` (as ``scipy.optimize.curve_fit`` does with
        ``absolute_sigma=False``). The prefactor's error follows from ``log a`` by the delta
        method, ``σ_a = a · σ_{log a}``.
        ``key`` given: a wild bootstrap with ``n_bootstrap`` resamples. Each resample keeps the
        ``x`` values and adds to the fitted curve the residuals ``r_i`` (in the fit's space)
        multiplied by independent Rademacher signs drawn from ``key`` and by
        ``√(n/(n − p))`` (the degrees-of-freedom correction); the fit is repeated and the
        standard deviation (and covariance) over resamples is reported. It needs no Gaussian
        or linearity assumption and copes with residuals whose size varies from point to point.

    Errors are raised for ``x ≤ 0`` (and ``y ≤ 0`` where logs are taken), NaN or inf, fewer
    points (or distinct ``x``) than parameters, and, without ``y_err``, as many points as
    parameters (no residual left to estimate the error from).
    """
    x, y, y_err = _check_inputs(x, y, y_err, offset)
    n_params = 3 if offset else 2
    n = x.size
    if offset:
        sigma = y_err if y_err is not None else np.ones_like(y)
    else:
        sigma = y_err / y if y_err is not None else np.ones_like(y)
    theta, covariance, chi2 = _fit(x, y, sigma, offset)
    dof = n - n_params
    reduced_chi2 = chi2 / dof if dof > 0 else float("nan")

    if key is None:
        if y_err is None:
            covariance = covariance * reduced_chi2
        errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        method = "nonlinear least squares covariance" if offset else "log-space WLS covariance"
        if y_err is None:
            method += ", scaled by the reduced chi-square"
    else:
        if not isinstance(n_bootstrap, int) or n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be an integer >= 2, got {n_bootstrap!r}")
        if offset:
            fitted = theta[0] * x ** (-theta[1]) + theta[2]
            residual = y - fitted
        else:
            fitted = np.log(theta[0]) - theta[1] * np.log(x)
            residual = np.log(y) - fitted
        if dof > 0:
            residual = residual * np.sqrt(n / dof)
        signs = np.asarray(jax.random.rademacher(key, (n_bootstrap, n)), dtype=np.float64)
        samples = np.empty((n_bootstrap, 3))
        for b in range(n_bootstrap):
            resampled = fitted + signs[b] * residual
            y_b = resampled if offset else np.exp(resampled)
            samples[b] = _fit(x, y_b, sigma, offset, start=theta)[0]
        covariance = np.cov(samples, rowvar=False, ddof=1)
        errors = np.sqrt(np.diag(covariance))
        method = f"wild bootstrap ({n_bootstrap} resamples)"

    if not np.all(np.isfinite(theta)) or not np.all(np.isfinite(errors)):
        raise ValueError(f"power-law fit gave non-finite values {theta} ± {errors}")
    return PowerLawFit(
        prefactor=float(theta[0]),
        exponent=float(theta[1]),
        offset=float(theta[2]),
        prefactor_err=float(errors[0]),
        exponent_err=float(errors[1]),
        offset_err=float(errors[2]) if offset else 0.0,
        n_points=int(n),
        method=method,
        reduced_chi2=float(reduced_chi2),
        covariance=tuple(tuple(float(v) for v in row) for row in covariance),
        error_dof=float(dof) if key is None and y_err is None else math.inf,
    )


@dataclass(frozen=True)
class ThresholdCrossing:
    """Where a fitted decaying power law falls to ``threshold``, with a one-sigma interval.

    ``log_err`` is the standard error of ``ln x*``; ``low, high = x* · exp(∓log_err)`` is the
    resulting (asymmetric) one-sigma interval. ``extrapolated`` is true when ``x*`` lies outside
    the range of ``x`` that was fitted. ``error_dof`` is the fit's :attr:`PowerLawFit.error_dof`.
    """

    value: float
    log_err: float
    low: float
    high: float
    threshold: float
    extrapolated: bool
    error_dof: float = math.inf

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """``x* · exp(∓q · log_err)``, ``q`` the Student-t quantile for :attr:`error_dof`
        degrees of freedom (normal when infinite): a ``confidence`` interval of ``x*``."""
        half = _critical_value(confidence, self.error_dof) * self.log_err
        return (self.value * math.exp(-half), self.value * math.exp(half))


def threshold_crossing(
    fit: PowerLawFit, threshold: float, *, x_range: tuple[float, float] | None = None
) -> ThresholdCrossing:
    """Solve ``a · x*^(−α) = threshold`` for a fit without offset: ``x* = (a/threshold)^(1/α)``.

    The error of ``ln x* = (ln a − ln threshold)/α`` follows from the fit's covariance by the
    delta method, with gradient ``(1/(α a), −ln x*/α)`` with respect to ``(a, α)``:
    ``σ²_{ln x*} = g ᵀ Σ_{(a, α)} g``. ``x_range`` (the measured ``x`` span) marks the result as
    extrapolated when ``x*`` falls outside it.

    Applied to the relative kernel change against width it gives the width at which training
    moves the kernel by ``threshold``; the answer moves with the threshold, which is a
    convention, so the scaling chapter does not use it for the maximum feature-learning width.
    """
    if fit.offset != 0.0 or fit.offset_err != 0.0:
        raise ValueError("threshold_crossing needs a fit without offset (offset=False)")
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be positive and finite, got {threshold!r}")
    a, alpha = fit.prefactor, fit.exponent
    if a <= 0 or alpha <= 0:
        raise ValueError(
            f"the fitted law {a:.3g}·x^(-{alpha:.3g}) does not decay, so it has no crossing"
        )
    log_value = (np.log(a) - np.log(threshold)) / alpha
    gradient = np.array([1.0 / (alpha * a), -log_value / alpha])
    covariance = np.asarray(fit.covariance)[:2, :2]
    log_err = float(np.sqrt(max(gradient @ covariance @ gradient, 0.0)))
    value = float(np.exp(log_value))
    extrapolated = False
    if x_range is not None:
        extrapolated = not (min(x_range) <= value <= max(x_range))
    return ThresholdCrossing(
        value=value,
        log_err=log_err,
        low=value * float(np.exp(-log_err)),
        high=value * float(np.exp(log_err)),
        threshold=float(threshold),
        extrapolated=extrapolated,
        error_dof=fit.error_dof,
    )


@dataclass(frozen=True)
class ExponentComparison:
    """Two fitted exponents ``α_a`` and ``α_b`` compared, with ``confidence`` intervals.

    ``difference = α_a − α_b`` with standard error ``√(σ_a² + σ_b²)`` and interval
    ``[difference_low, difference_high]``; ``relative = (α_a − α_b)/ᾱ`` with
    ``ᾱ = (α_a + α_b)/2`` and interval ``[relative_low, relative_high]`` (NaN when ``ᾱ ≤ 0``,
    where a relative difference means nothing). ``dof`` is the Welch–Satterthwaite number of
    degrees of freedom of both intervals. :meth:`relative_magnitude` is ``|relative|`` with its
    interval; :attr:`z_score` is ``|difference| / difference_err``.
    """

    exponent_a: float
    exponent_b: float
    difference: float
    difference_err: float
    difference_low: float
    difference_high: float
    relative: float
    relative_err: float
    relative_low: float
    relative_high: float
    dof: float
    confidence: float

    @property
    def z_score(self) -> float:
        """``|α_a − α_b| / √(σ_a² + σ_b²)``: the difference in units of its standard error
        (infinite for a nonzero difference of exactly known exponents, NaN for 0/0)."""
        if self.difference_err == 0.0:
            return math.nan if self.difference == 0.0 else math.inf
        return abs(self.difference) / self.difference_err

    def relative_magnitude(self) -> tuple[float, tuple[float, float]]:
        """``|relative|`` and its interval: the image of ``[relative_low, relative_high]``
        under ``|·|`` (its lower end is 0 when the interval contains 0)."""
        low, high = self.relative_low, self.relative_high
        if math.isnan(self.relative):
            raise ValueError(
                f"the mean exponent ({self.exponent_a:.3g} + {self.exponent_b:.3g})/2 is not "
                "positive, so the relative difference is undefined"
            )
        lowest = 0.0 if low <= 0.0 <= high else min(abs(low), abs(high))
        return abs(self.relative), (lowest, max(abs(low), abs(high)))


def compare_exponents(
    a: PowerLawFit, b: PowerLawFit, *, confidence: float = 0.95
) -> ExponentComparison:
    """The difference of the exponents of two independent fits, absolute and relative.

    ``Δ = α_a − α_b`` with ``σ_Δ² = σ_a² + σ_b²`` (the fits share no data). The relative
    difference ``r = Δ/ᾱ``, ``ᾱ = (α_a + α_b)/2``, has by the delta method
    ``σ_r = 4 √(α_b² σ_a² + α_a² σ_b²) / (α_a + α_b)²``. Both intervals are
    ``estimate ± q σ`` with ``q`` the Student-t quantile for the Welch–Satterthwaite degrees of
    freedom ``ν = (σ_a² + σ_b²)² / (σ_a⁴/ν_a + σ_b⁴/ν_b)`` (``ν_i`` the fits'
    :attr:`PowerLawFit.error_dof`; normal when both are infinite). For the relative difference
    each ``σ_i`` enters weighted by its derivative. With few points per fit ``ν`` is small and
    the intervals are wide: that is the honest uncertainty of exponents fitted to a handful of
    points.
    """

    def welch(weights: tuple[float, float]) -> float:
        terms = [(w * fit.exponent_err) ** 2 for w, fit in zip(weights, (a, b), strict=True)]
        denominator = sum(term**2 / fit.error_dof for term, fit in zip(terms, (a, b), strict=True))
        total = sum(terms)
        if denominator == 0.0:
            return math.inf
        return total**2 / denominator

    difference = a.exponent - b.exponent
    difference_err = math.hypot(a.exponent_err, b.exponent_err)
    dof = welch((1.0, 1.0))
    half = _critical_value(confidence, dof) * difference_err
    total = a.exponent + b.exponent
    if total > 0:
        relative = 2.0 * difference / total
        weights = (4.0 * b.exponent / total**2, 4.0 * a.exponent / total**2)
        relative_err = math.hypot(weights[0] * a.exponent_err, weights[1] * b.exponent_err)
        relative_dof = welch(weights) if relative_err > 0 else math.inf
        relative_half = _critical_value(confidence, relative_dof) * relative_err
        relative_low, relative_high = relative - relative_half, relative + relative_half
    else:
        relative = relative_err = relative_low = relative_high = math.nan
    return ExponentComparison(
        exponent_a=a.exponent,
        exponent_b=b.exponent,
        difference=difference,
        difference_err=difference_err,
        difference_low=difference - half,
        difference_high=difference + half,
        relative=relative,
        relative_err=relative_err,
        relative_low=relative_low,
        relative_high=relative_high,
        dof=dof,
        confidence=confidence,
    )


def frontier(compute: ArrayLike, loss: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The compute-efficient frontier: the points that no point of lower or equal compute beats.

    ``compute`` and ``loss`` are equal-length 1-D arrays of any number of runs pooled together.
    Returns ``(compute, loss)`` of the frontier, sorted by compute, with loss strictly falling.
    Points at equal compute are taken lowest loss first.
    """
    compute = np.asarray(compute, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if compute.ndim != 1 or compute.shape != loss.shape:
        raise ValueError(
            f"compute and loss must be 1-D arrays of equal length, got shapes {compute.shape} "
            f"and {loss.shape}"
        )
    if compute.size == 0:
        raise ValueError("frontier needs at least one point, got none")
    bad = ~(np.isfinite(compute) & np.isfinite(loss))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"compute and loss must be finite, got ({compute[index]}, {loss[index]}) at {index}"
        )
    order = np.lexsort((loss, compute))
    best = np.minimum.accumulate(loss[order])
    kept = np.concatenate([[True], best[1:] < best[:-1]])
    return compute[order][kept], loss[order][kept]
