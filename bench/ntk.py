"""Benchmark of the eNTK engine on this machine, with every ratio measured in the same run.

1. Exact kernels: ``structured`` and blocked ``jacobian`` against the naive per-block ``jacrev``
   contraction that neural-tangents (JACOBIAN_CONTRACTION) and ZnNL use: for every pair of
   sample blocks, the Jacobians of both blocks are recomputed with ``jax.jacrev`` of the batched
   network and contracted leaf by leaf. Cases: MLP 784-256-256-10 (tanh), N = 512, and a CNN
   with two conv layers on 28×28 inputs, N = 128; traced kernels in float32.
2. Matrix-free measures at N = 2,000 against the exact kernel: top-10 eigenvalues (Lanczos) and
   the spectral entropy (stochastic Lanczos quadrature).
3. The engine as the chapters call it (MLP 784-256-256-10 tanh, traced, float32):
   - the repeated one-shot ``empirical_ntk(model.apply, params, x)`` against a prebuilt
     ``ntk_fn`` at N = 512 (goal ≤ 1.5×; the one-shot call keeps its compiled programs in a
     cache keyed by the function's identity and the options);
   - ``ntk_fn`` against a hand-written structured kernel of this MLP at N = 2,048 (goal ≤ 1.3×),
     with the engine's time split into stages and the FLOPs of the two compiled contractions.

Where the time goes at N = 2,048 (2-core CPU; XLA's cost analysis of the compiled programs).
Nearly all of it is the contraction of per-sample features into the N × N kernel, which is
matmul-bound: per dense layer ``(H Hᵀ + 1) ∘ tr_a(G Gᵀ)`` with ``H`` (N, d_in) the layer's
inputs and ``G`` (N, O·d_out) its output cotangents, about ``2N²(d_in + O·d_out)`` FLOPs. The
per-sample features (one VJP per output) take roughly a tenth, input checks and assembly of the
kernel a few ms. The gap of 1.59–1.66× to the hand-written kernel was the biases: the engine
treated them as "other" parameters with per-sample Jacobians, a (N, O·Σd_out) = (N, 5,220)
matrix multiplied by its transpose, 98.5 GFLOP of contraction against 57.6 GFLOP by hand
(1.71×), which recomputes the ``G Gᵀ`` products a second time. A bias added to a dense layer's
output is that layer's weight on a constant input 1, so it now folds into the layer's Gram
product as the ``+ 1`` above: the engine's one-block contraction does the hand-written kernel's
FLOPs (54.7 G, plus about 4 G for the features). By default the engine also splits a
self-kernel into blocks of at most 512 samples and contracts only the upper triangle of block
pairs (10 of 16 at N = 2,048), which the hand-written kernel, one square product per layer,
does not; the bench prints both.

Run: ``python bench/ntk.py`` (about ten minutes on 2 CPU cores; ``--parts engine`` for part 3
alone, about one minute). Timings are the best of ``--repeats`` runs after one compiling call.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import best_times_interleaved

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


def best_time_and_result(fn, repeats: int) -> tuple[float, np.ndarray]:
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
        t_naive, k_naive = best_time_and_result(
            lambda model=model, params=params, x=x, block=block: naive_blockwise_jacrev(
                model.apply, params, x, block
            ),
            1,
        )
        print(f"{name}, N={n}: naive per-block jacrev (block {block}): {t_naive:8.3f} s")
        for method in ("structured", "jacobian"):
            fn = ntk.ntk_fn(model.apply, method=method)
            t, k = best_time_and_result(lambda fn=fn, params=params, x=x: fn(params, x), repeats)
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


def handwritten_mlp_kernel(params, x: jax.Array) -> jax.Array:
    """Traced eNTK of a tanh ``MLP`` written out by hand: ``Σ_l (H_l H_lᵀ + 1) ∘ tr_a(G_l G_lᵀ)``.

    ``H_l`` are the inputs of dense layer ``l`` (the ``+ 1`` is its bias), ``G_l[i, a]`` the
    derivative of output ``a`` with respect to the layer's pre-activations, obtained by one
    backward matmul per layer for all outputs at once. The last layer's ``G`` is the identity,
    so its trace over outputs is the constant ``O``. Float32 products at the highest precision,
    as the engine's.
    """
    dot = jax.numpy.matmul
    layers = [params["params"][f"Dense_{k}"] for k in range(len(params["params"]))]
    inputs, derivatives = [x.reshape(x.shape[0], -1)], []
    for layer in layers[:-1]:
        h = jnp.tanh(dot(inputs[-1], layer["kernel"], precision="highest") + layer["bias"])
        inputs.append(h)
        derivatives.append(1 - h**2)
    n, n_outputs = x.shape[0], layers[-1]["kernel"].shape[1]
    kernel = n_outputs * (dot(inputs[-1], inputs[-1].T, precision="highest") + 1)
    g = layers[-1]["kernel"].T[None] * derivatives[-1][:, None, :]  # (N, O, d)
    for k in range(len(layers) - 2, -1, -1):
        flat = g.reshape(n, -1)
        g_gram = dot(flat, flat.T, precision="highest")
        kernel = kernel + (dot(inputs[k], inputs[k].T, precision="highest") + 1) * g_gram
        if k > 0:
            g = dot(g, layers[k]["kernel"].T, precision="highest") * derivatives[k - 1][:, None]
    return kernel


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per program
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def engine_as_chapters_call_it(repeats: int, n_one_shot: int, n_kernel: int) -> None:
    n = max(n_one_shot, n_kernel)
    data = load_dataset("mnist", n_train=n, n_test=0, key=jax.random.key(6))
    images = jnp.asarray(data.x_train.reshape(n, -1), jnp.float32)
    model = MLP((256, 256), 10, "tanh")
    params = model.init(jax.random.key(7), images[:1])
    print(
        f"== the engine as the chapters call it, MLP 784-256-256-10 tanh, traced, float32 "
        f"(best of {repeats} after one untimed call)"
    )

    x = images[:n_one_shot]
    fn = ntk.ntk_fn(model.apply)
    t_fn, t_one_shot = best_times_interleaved(
        [
            lambda: np.asarray(fn(params, x)),
            lambda: np.asarray(ntk.empirical_ntk(model.apply, params, x)),
        ],
        repeats,
    )
    same = np.array_equal(
        np.asarray(fn(params, x)), np.asarray(ntk.empirical_ntk(model.apply, params, x))
    )
    print(
        f"N={n_one_shot}: prebuilt ntk_fn {t_fn * 1e3:8.1f} ms   repeated one-shot "
        f"empirical_ntk {t_one_shot * 1e3:8.1f} ms   ratio {t_one_shot / t_fn:5.2f}x "
        f"(goal <= 1.5)   identical kernels: {same}"
    )

    x = images[:n_kernel]
    hand = jax.jit(handwritten_mlp_kernel)
    # One block: the whole N × N square, as the hand-written kernel computes it.
    one_block = ntk.ntk_fn(model.apply, block_size=n_kernel)
    t_hand, t_fn, t_one_block = best_times_interleaved(
        [
            lambda: np.asarray(hand(params, x)),
            lambda: np.asarray(fn(params, x)),
            lambda: np.asarray(one_block(params, x)),
        ],
        repeats,
    )
    k_hand = np.asarray(hand(params, x))
    for name, t, f in (("ntk_fn", t_fn, fn), ("ntk_fn, one block", t_one_block, one_block)):
        k = np.asarray(f(params, x))
        error = np.max(np.abs(k - k_hand)) / np.max(np.abs(k_hand))
        print(
            f"N={n_kernel}: hand-written structured kernel {t_hand:7.3f} s   {name:>17} "
            f"{t:7.3f} s   ratio {t / t_hand:5.2f}x (goal <= 1.3)   max rel. difference "
            f"{error:.1e}"
        )

    # Where the time of the one-block call goes (the engine's private stages).
    leaves = jax.tree_util.tree_leaves(params)
    plan = one_block._plan(params, x, 10)
    features = plan["features"](leaves, x)
    t_check, t_features, t_contract = best_times_interleaved(
        [
            lambda: one_block._check(params, x),
            lambda: jax.block_until_ready(plan["features"](leaves, x)),
            lambda: plan["contract"](features, features, trace_outputs=True).block_until_ready(),
        ],
        repeats,
    )
    print(
        f"   one-block stages: input checks {t_check * 1e3:6.1f} ms, per-sample features "
        f"{t_features * 1e3:6.1f} ms, contraction {t_contract * 1e3:6.1f} ms, the rest "
        f"(assembly, copies) {max(t_one_block - t_check - t_features - t_contract, 0.0) * 1e3:6.1f}"
        " ms"
    )
    size = fn._block_size(fn._plan(params, x, 10), n_kernel, symmetric=True)
    blocks = -(-n_kernel // size)
    block_features = plan["features"](leaves, x[:size])
    block_flops = _flops(
        fn._plan(params, x, 10)["contract"]
        .lower(block_features, block_features, trace_outputs=True)
        .compile()
    )
    one_block_flops = _flops(
        plan["contract"].lower(features, features, trace_outputs=True).compile()
    )
    hand_flops = _flops(hand.lower(params, x).compile())
    print(
        f"   compiled FLOPs: whole hand-written kernel {hand_flops / 1e9:5.1f} G; "
        f"engine contraction, one block {one_block_flops / 1e9:5.1f} G, default "
        f"{blocks} blocks of {size} ({blocks * (blocks + 1) // 2} block pairs) "
        f"{blocks * (blocks + 1) // 2 * block_flops / 1e9:5.1f} G"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--engine-repeats", type=int, default=5)
    parser.add_argument("--matfree-samples", type=int, default=2000)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("exact", "matfree", "engine"),
        default=["exact", "matfree", "engine"],
    )
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.default_backend()}: {jax.devices()}")
    if "exact" in args.parts:
        exact_methods(args.repeats)
    if "matfree" in args.parts:
        matrix_free(args.matfree_samples)
    if "engine" in args.parts:
        engine_as_chapters_call_it(args.engine_repeats, 512, 2048)
