"""The cache behind the one-shot ``empirical_ntk``: hits, misses, identity, options, its bound.

Every cached result is compared with a kernel from a freshly built ``NTKFunction`` (no cache)
and, where the functions differ, with the brute-force reference of ``test_ntk_kernel``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.models import MLP
from ntkbook.ntk import empirical_ntk
from ntkbook.ntk import kernel as kernel_module
from ntkbook.ntk.kernel import NTKFunction

F64 = jnp.float64
RTOL = 1e-10


@pytest.fixture(autouse=True)
def _fresh_cache_in_float64():
    with jax.enable_x64(True):
        empirical_ntk.cache_clear()
        yield
        empirical_ntk.cache_clear()


def uncached(apply_fn, params, x1, x2=None, **options) -> np.ndarray:
    return np.asarray(NTKFunction(apply_fn, **options)(params, x1, x2))


def reference_traced(apply_fn, params, x) -> np.ndarray:
    """``Σ_a Σ_p J[i, a, p] J[j, a, p]`` from one ``jacrev`` over the whole batch."""
    leaves = jax.tree_util.tree_leaves(jax.jacrev(apply_fn)(params, x))
    n, o = leaves[0].shape[:2]
    jac = np.concatenate([np.asarray(leaf).reshape(n, o, -1) for leaf in leaves], axis=2)
    return np.einsum("iap,jap->ij", jac, jac)


def close(a, b, rtol: float = RTOL) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and float(np.max(np.abs(a - b))) <= rtol * float(np.max(np.abs(b)))


def mlp(key=0):
    model = MLP(hidden=(6, 5), n_outputs=3, activation="tanh", param_dtype=F64)
    kx, kp = jax.random.split(jax.random.PRNGKey(key))
    x = jax.random.normal(kx, (7, 4), F64)
    return model, model.init(kp, x), x


def scaled_apply(model, scale: float):
    """Closures with the same code and name; only the captured scale differs."""

    def apply_fn(params, x):
        return scale * model.apply(params, x)

    return apply_fn


def test_repeated_call_hits_and_equals_the_uncached_kernel(monkeypatch):
    model, params, x = mlp()
    analyses: list[int] = []
    real = kernel_module._analyse
    monkeypatch.setattr(kernel_module, "_analyse", lambda *a: analyses.append(1) or real(*a))

    first = empirical_ntk(model.apply, params, x)
    # model.apply is a new bound-method object at each access: still the same function.
    second = empirical_ntk(model.apply, params, x)
    info = empirical_ntk.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)
    assert len(analyses) == 1  # the hit neither re-analyses nor rebuilds the compiled programs
    assert close(second, first, 0.0)
    assert close(second, uncached(model.apply, params, x))
    assert close(second, reference_traced(model.apply, params, x))

    # New parameter values and another number of samples reuse the entry and stay exact.
    other = jax.tree_util.tree_map(lambda p: 1.5 * p, params)
    kernel = empirical_ntk(model.apply, other, x[:4])
    assert empirical_ntk.cache_info().hits == 2
    assert close(kernel, reference_traced(model.apply, other, x[:4]))


def test_closures_with_the_same_code_are_different_functions():
    model, params, x = mlp()
    base = reference_traced(model.apply, params, x)
    for scale in (1.0, 2.0, 3.0):
        kernel = empirical_ntk(scaled_apply(model, scale), params, x)
        assert close(kernel, scale**2 * base), scale
    assert empirical_ntk.cache_info().misses == 3

    # Lambdas from one line share their code object; only the default differs.
    same_code = [lambda p, x, s=s: s * model.apply(p, x) for s in (1.0, 2.0)]
    assert same_code[0].__code__ is same_code[1].__code__
    kernels = [np.asarray(empirical_ntk(f, params, x)) for f in same_code]
    assert empirical_ntk.cache_info().misses == 5
    assert close(kernels[0], base) and close(kernels[1], 4.0 * base)


def _module_class(scale: float) -> type[nn.Module]:
    class Scaled(nn.Module):
        @nn.compact
        def __call__(self, x):
            return scale * nn.Dense(3, param_dtype=F64)(jnp.tanh(nn.Dense(5, param_dtype=F64)(x)))

    return Scaled


def test_bound_methods_of_modules_with_equal_repr_are_different_functions():
    _, _, x = mlp()
    one, two = _module_class(1.0)(), _module_class(2.0)()
    assert repr(one) == repr(two)
    params = one.init(jax.random.PRNGKey(3), x)
    k_one = empirical_ntk(one.apply, params, x)
    k_two = empirical_ntk(two.apply, params, x)
    assert empirical_ntk.cache_info().misses == 2
    assert close(k_one, reference_traced(one.apply, params, x))
    assert close(k_two, 4.0 * np.asarray(k_one))

    # Equal Flax modules (same class and fields) are still two objects: two entries, both exact.
    model_a, params_a, _ = mlp()
    model_b = MLP(hidden=(6, 5), n_outputs=3, activation="tanh", param_dtype=F64)
    assert model_a == model_b and model_a is not model_b
    k_a = empirical_ntk(model_a.apply, params_a, x)
    k_b = empirical_ntk(model_b.apply, params_a, x)
    assert empirical_ntk.cache_info().misses == 4
    assert close(k_a, k_b)


def test_options_are_part_of_the_key():
    model, params, x = mlp()
    x2 = x[:3] + 0.5
    variants = [
        {},
        {"trace_outputs": False},
        {"method": "jacobian"},
        {"method": "vjp", "trace_outputs": False},
        {"block_size": 2},
        {"check_per_sample": False},
    ]
    for options in variants:
        kernel = empirical_ntk(model.apply, params, x, x2, **options)
        assert close(kernel, uncached(model.apply, params, x, x2, **options), 1e-8), options
    info = empirical_ntk.cache_info()
    assert (info.misses, info.hits, info.currsize) == (len(variants), 0, len(variants))
    # The full kernel's shape shows that trace_outputs=False did not get the traced entry.
    assert empirical_ntk(model.apply, params, x, trace_outputs=False).shape == (21, 21)
    assert empirical_ntk(model.apply, params, x).shape == (7, 7)
    assert empirical_ntk.cache_info().hits == 2


def test_dtypes_and_shapes_get_their_own_programs():
    model, params, x = mlp()
    params32 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
    k64 = empirical_ntk(model.apply, params, x)
    k32 = empirical_ntk(model.apply, params32, x.astype(jnp.float32))
    assert k64.dtype == jnp.float64 and k32.dtype == jnp.float32
    assert close(k32, k64, 1e-5)

    wide = MLP(hidden=(6, 5), n_outputs=3, activation="tanh", param_dtype=F64)
    x_wide = jnp.concatenate([x, x[:, :2]], axis=1)
    params_wide = wide.init(jax.random.PRNGKey(4), x_wide)
    assert close(
        empirical_ntk(wide.apply, params_wide, x_wide),
        reference_traced(wide.apply, params_wide, x_wide),
    )


def test_cache_is_bounded_least_recently_used_first():
    model, params, x = mlp()
    size = empirical_ntk.cache_info().maxsize
    functions = [scaled_apply(model, 1.0 + k) for k in range(size + 3)]
    for f in functions:
        empirical_ntk(f, params, x[:2])
    info = empirical_ntk.cache_info()
    assert info.currsize == size and info.misses == size + 3

    empirical_ntk(functions[-1], params, x[:2])  # most recent: kept
    assert empirical_ntk.cache_info().hits == 1
    empirical_ntk(functions[0], params, x[:2])  # oldest: dropped, so built again
    info = empirical_ntk.cache_info()
    assert info.misses == size + 4 and info.currsize == size


def test_a_refused_model_is_refused_on_every_call():
    model, params, x = mlp()

    def centred(p, x):
        out = model.apply(p, x)
        return out - out.mean(0)

    for _ in range(2):
        with pytest.raises(ValueError, match="not per sample"):
            empirical_ntk(centred, params, x)
    assert empirical_ntk.cache_info().hits == 1


def test_bad_options_are_refused_before_the_cache():
    model, params, x = mlp()
    with pytest.raises(ValueError, match="unknown eNTK method"):
        empirical_ntk(model.apply, params, x, method=["structured"])
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        empirical_ntk(model.apply, params, x, block_size=True)
    assert empirical_ntk.cache_info().currsize == 0
