"""Every public JAX function of the package composes with ``jax.jit`` and ``jax.vmap``.

Each case maps one example to an array; ``jit(vmap(f))`` over a batch must equal ``f`` applied
to each example eagerly (input checks run on concrete values only, so a traced call must not
trip over them: ``bool()`` of a traced array is a ``TracerBoolConversionError``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import models, ntk, train
from ntkbook.models.nanopore import EventCNN1D, FeatureMLP, ScaleogramResNet
from ntkbook.nanopore.cwt import cwt, scaleogram, wavelet_fourier
from ntkbook.ntk import matfree
from ntkbook.swarm import physics, policy, policy_gradient, tasks

SCALES = np.geomspace(2.0, 40.0, 8)


def _model_case(model, example_shape, dtype=jnp.float32):
    x = jnp.ones((1, *example_shape), dtype)
    params = model.init(jax.random.key(0), x)
    return lambda example: model.apply(params, example[None])[0]


def _cases():
    rng = np.random.default_rng(0)
    signals = jnp.asarray(rng.standard_normal((3, 128)), jnp.float32)
    images = jnp.asarray(rng.standard_normal((3, 8, 8)), jnp.float32)
    actor, critic = policy.init_networks(jax.random.key(1), (8,))
    config = tasks.EnvConfig()
    positions = jnp.asarray(rng.uniform(0, 1000, (3, 4, 2)), jnp.float32)
    yield "nanopore.cwt.cwt", lambda s: cwt(s, SCALES), signals
    yield "nanopore.cwt.cwt (gmw)", lambda s: cwt(s, SCALES, "gmw"), signals
    yield "nanopore.cwt.scaleogram", lambda s: scaleogram(s, SCALES, (8, 16)), signals
    yield (
        "nanopore.cwt.scaleogram (columns)",
        lambda s: scaleogram(s, SCALES, (8, 16), columns=jnp.array([10.0, 100.0])),
        signals,
    )
    yield "nanopore.cwt.wavelet_fourier", lambda w: wavelet_fourier(w, "gmw"), signals
    yield "models.MLP", _model_case(models.MLP((8,), 3), (5,)), images[:, 0, :5]
    yield "models.ResidualMLP", _model_case(models.ResidualMLP(8, 2, 3), (5,)), images[:, 0, :5]
    yield "models.CNN", _model_case(models.CNN((4,), (8,), 3), (8, 8)), images
    yield "models.AutoEncoder", _model_case(models.AutoEncoder((8,), 2), (6,)), images[:, 0, :6]
    tokens = jnp.asarray(rng.integers(0, 7, (3, 5)), jnp.int32)
    yield "models.Transformer", _model_case(models.Transformer(7, 3), (5,), jnp.int32), tokens
    yield "models.ScaleogramResNet", _model_case(ScaleogramResNet((4, 8), 3), (8, 8)), images
    yield "models.EventCNN1D", _model_case(EventCNN1D((4, 8), 3), (16,)), signals[:, :16]
    yield "models.FeatureMLP", _model_case(FeatureMLP((8,), 3), (5,)), images[:, 0, :5]
    logits = jnp.asarray(rng.standard_normal((3, 4, 5)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, (3, 4)))
    yield "train.cross_entropy_loss", lambda z: train.cross_entropy_loss(z, labels[0]), logits
    yield "train.mse_loss", lambda z: train.mse_loss(z, logits[0]), logits
    yield "train.accuracy", lambda z: train.accuracy(z, labels[0]), logits
    yield "swarm.physics.thermal_energy", physics.thermal_energy, jnp.array([280.0, 300.0, 320.0])
    yield "swarm.physics.minimum_image", lambda d: physics.minimum_image(d, 100.0), positions
    yield "swarm.physics.exclusive_cumsum", physics.exclusive_cumsum, signals
    yield (
        "swarm.physics.friction_coefficients",
        lambda r: jnp.stack(physics.friction_coefficients(r)),
        jnp.array([0.5, 1.0, 2.0]),
    )
    yield "swarm.policy.actor_apply", lambda o: policy.actor_apply(actor, o), positions[..., :1]
    yield "swarm.policy.critic_apply", lambda o: policy.critic_apply(critic, o), positions[..., :1]
    yield (
        "swarm.policy.policy_probabilities",
        lambda o: policy.policy_probabilities(actor, o),
        positions[..., :1],
    )
    yield (
        "swarm.tasks.distance_to_source",
        lambda p: tasks.distance_to_source(p, config),
        positions,
    )
    yield "swarm.tasks.concentration", lambda p: tasks.concentration(p, config), positions
    yield (
        "swarm.policy_gradient.expected_returns",
        lambda r: policy_gradient.expected_returns(r, 0.9),
        positions[..., 0],
    )

    # The eNTK engine: a kernel per batch of samples (the value checks wait for concrete
    # inputs; the blocks are assembled by jnp.block under a transformation).
    mlp = models.MLP((8,), 3, activation="tanh")
    mlp_params = mlp.init(jax.random.key(2), images[:1, 0, :5])
    sample_sets = jnp.asarray(rng.standard_normal((3, 4, 5)), jnp.float32)
    for method in ("structured", "jacobian", "vjp"):
        yield (
            f"ntk.empirical_ntk ({method})",
            lambda xs, method=method: ntk.empirical_ntk(mlp.apply, mlp_params, xs, method=method),
            sample_sets,
        )
    yield (
        "ntk.empirical_ntk (full, x2)",
        lambda xs: ntk.empirical_ntk(mlp.apply, mlp_params, xs, xs[:2], trace_outputs=False),
        sample_sets,
    )
    kernel_fn = ntk.ntk_fn(mlp.apply)
    yield "ntk.ntk_fn", lambda xs: kernel_fn(mlp_params, xs), sample_sets
    yield "ntk.ntk_diagonal", lambda xs: ntk.ntk_diagonal(mlp.apply, mlp_params, xs), sample_sets
    vector = jnp.arange(4.0, dtype=jnp.float32)
    yield (
        "ntk.matfree.ntk_vector_product",
        lambda xs: matfree.ntk_vector_product(mlp.apply, mlp_params, xs)[0](vector),
        sample_sets,
    )


CASES = list(_cases())


@pytest.mark.parametrize("name, function, batch", CASES, ids=[c[0] for c in CASES])
def test_jit_of_vmap_equals_the_eager_loop(name, function, batch):
    traced = np.asarray(jax.jit(jax.vmap(function))(batch))
    eager = np.stack([np.asarray(function(example)) for example in batch])
    np.testing.assert_allclose(traced, eager, rtol=1e-5, atol=1e-5)


def test_cwt_jit_vmap_matches_the_batched_call():
    """The case of the issue: ``jit(vmap(lambda s: cwt(s, scales)))`` used to raise a
    ``TracerBoolConversionError`` from the NaN check; eager calls still get the clear error."""
    signals = jnp.asarray(np.random.default_rng(1).standard_normal((4, 300)), jnp.float32)
    traced = jax.jit(jax.vmap(lambda s: cwt(s, SCALES)))(signals)
    np.testing.assert_allclose(np.asarray(traced), np.asarray(cwt(signals, SCALES)), atol=1e-5)
    with pytest.raises(ValueError, match="NaN or inf"):
        cwt(signals.at[0, 3].set(jnp.nan), SCALES)
    with pytest.raises(ValueError, match="columns must satisfy"):
        scaleogram(signals[0], SCALES, (8, 8), columns=[-1.0, 100.0])
