"""Benchmark of the eNTK engine on this machine, with every ratio measured in the same run.

1. Exact kernels: ``structured`` and blocked ``jacobian`` against the naive per-block ``jacrev``
   contraction that neural-tangents (JACOBIAN_CONTRACTION) and ZnNL use: for every pair of
   sample blocks, the Jacobians of both blocks are recomputed with ``jax.jacrev`` of the batched
   network and contracted leaf by leaf. Cases: MLP 784-256-256-10 (tanh), N = 512, and a CNN
   with two conv layers on 28×28 inputs, N = 128; traced kernels in float32.
2. Matrix-free measures at N = 2,000 against the exact kernel: top-10 eigenvalues (Lanczos) and
   the spectral entropy (stochastic Lanczos quadrature).

Run: ``python bench/ntk.py`` (about ten minutes on 2 CPU cores). Timings are the best of
``--repeats`` runs after one compiling call.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook import ntk
from ntkbook.data import load_dataset
from ntkbook.models import CNN, MLP
from ntkbook.ntk import matfree, spectrum


def naive_blockwise_jacrev(apply_fn, params, x, block_size: int) -> np.ndarray:
    """Per block pair, ``jacrev`` both blocks and contract leaf by leaf (the baseline).

    Per-sample Jacobians are vmapped (neural-tangents with ``vmap_axes=0``); without that
    option neural-tangents differentiates the batched network, which is slower still.
    """

    def per_sample(p, xs):
        return jax.vmap(lambda xi: jax.jacrev(lambda q: apply_fn(q, xi[None])[0])(p))(xs)

    @jax.jit
    def pair(xa, xb):
        ja = per_sample(params, xa)
        jb = per_sample(params, xb)
        return sum(
            jnp.einsum("ia...,ja...->ij", a, b)
            for a, b in zip(
                jax.tree_util.tree_leaves(ja), jax.tree_util.tree_leaves(jb), strict=True
            )
        )

    n = x.shape[0]
    kernel = np.empty((n, n), np.float32)
    for i in range(0, n, block_size):
        for j in range(0, n, block_size):
            block = pair(x[i : i + block_size], x[j : j + block_size])
            kernel[i : i + block_size, j : j + block_size] = np.asarray(block)
    return kernel


def best_time(fn, repeats: int) -> tuple[float, np.ndarray]:
    result = np.asarray(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = np.asarray(fn())
        times.append(time.perf_counter() - start)
    return min(times), result


def exact_methods(repeats: int) -> None:
    data = load_dataset("mnist", n_train=512, n_test=0, key=jax.random.key(0))
    images = jnp.asarray(data.x_train)
    cases = [
        ("MLP 784-256-256-10 tanh", MLP((256, 256), 10, "tanh"), images.reshape(512, -1), 64),
        ("CNN conv32-conv64-dense256", CNN((32, 64), (256,), 10), images[:128, ..., None], 32),
    ]
    print("== exact eNTK, traced, float32 (best of", repeats, "after compilation)")
    for name, model, x, block in cases:
        params = model.init(jax.random.key(1), x[:1])
        n = x.shape[0]
        t_naive, k_naive = best_time(
            lambda model=model, params=params, x=x, block=block: naive_blockwise_jacrev(
                model.apply, params, x, block
            ),
            1,
        )
        print(f"{name}, N={n}: naive per-block jacrev (block {block}): {t_naive:8.3f} s")
        for method in ("structured", "jacobian"):
            fn = ntk.ntk_fn(model.apply, method=method)
            t, k = best_time(lambda fn=fn, params=params, x=x: fn(params, x), repeats)
            error = np.max(np.abs(k - k_naive)) / np.max(np.abs(k_naive))
            print(
                f"{name}, N={n}: {method:>10}: {t:8.3f} s   speed-up vs naive {t_naive / t:8.1f}x"
                f"   max rel. difference {error:.1e}"
            )


def matrix_free(n: int) -> None:
    data = load_dataset("mnist", n_train=n, n_test=0, key=jax.random.key(2))
    x = jnp.asarray(data.x_train.reshape(n, -1))
    model = MLP((64, 64), 10, "tanh")
    params = model.init(jax.random.key(3), x[:1])
    start = time.perf_counter()
    system = spectrum.eigensystem(np.asarray(ntk.ntk_fn(model.apply)(params, x)))
    t_exact = time.perf_counter() - start
    exact_entropy = spectrum.entropy(system.eigenvalues)
    start = time.perf_counter()
    top = matfree.top_eigenpairs(model.apply, params, x, 10, key=jax.random.key(4))
    t_top = time.perf_counter() - start
    start = time.perf_counter()
    slq = matfree.entropy_slq(model.apply, params, x, key=jax.random.key(5))
    t_slq = time.perf_counter() - start
    top_error = np.max(np.abs(top.eigenvalues - system.eigenvalues[:10]) / system.eigenvalues[:10])
    print(f"== matrix-free vs exact, MLP 784-64-64-10 (tanh), N={n}, float32")
    print(f"exact kernel + float64 eigh:      {t_exact:7.2f} s   entropy {exact_entropy:.5f}")
    print(f"top-10 eigenvalues (Lanczos):    {t_top:7.2f} s   max rel. error {top_error:.2e}")
    print(
        f"entropy (deflated SLQ):          {t_slq:7.2f} s   {slq.value:.5f} ± "
        f"{slq.standard_error:.5f}, rel. error {abs(slq.value - exact_entropy) / exact_entropy:.2%}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--matfree-samples", type=int, default=2000)
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.default_backend()}: {jax.devices()}")
    exact_methods(args.repeats)
    matrix_free(args.matfree_samples)
