"""Multi-agent PPO: GAE with episode ends, the clipped objective, stop-gradient targets, and the
whole training run jitted, vmapped over seeds and over a physical parameter, and deterministic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.swarm import policy, ppo
from ntkbook.swarm import tasks as tk

ENV = tk.EnvConfig(n_agents=2, integrator_step=0.05, episode_length=3)
CONFIG = ppo.PPOConfig(
    n_envs=2,
    n_steps=4,
    n_updates=4,
    update_epochs=2,
    n_minibatches=2,
    hidden=(8, 8),
    snapshot_every=2,
)


def gae_by_hand(r, v, v_next, term, trunc, gamma, lam):
    """The textbook recursion, one episode end at a time, in plain Python."""
    T = len(r)
    adv = [0.0] * T
    running = 0.0
    for t in reversed(range(T)):
        bootstrap = 0.0 if term[t] else v_next[t]
        delta = r[t] + gamma * bootstrap - v[t]
        if term[t] or trunc[t]:
            running = 0.0
        running = delta + gamma * lam * running
        adv[t] = running
    return np.array(adv)


def test_gae_small_case_by_hand():
    # t=1 is a time-limit truncation (bootstrap from V(s'_1) = 5, do not carry A_2 back);
    # t=3 is a true terminal (no bootstrap).
    r = jnp.array([1.0, 0.0, 2.0, 1.0])
    v = jnp.array([0.5, 1.0, 0.0, 2.0])
    v_next = jnp.array([1.0, 5.0, 2.0, 9.0])
    term = jnp.array([False, False, False, True])
    trunc = jnp.array([False, True, False, False])
    g, lam = 0.9, 0.5
    a3 = 1.0 - 2.0
    a2 = (2.0 + g * 2.0 - 0.0) + g * lam * a3
    a1 = 0.0 + g * 5.0 - 1.0
    a0 = (1.0 + g * 1.0 - 0.5) + g * lam * a1
    adv, targets = ppo.gae(r, v, v_next, term, trunc, g, lam)
    np.testing.assert_allclose(adv, [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(targets, np.array([a0, a1, a2, a3]) + np.asarray(v), rtol=1e-6)


def test_gae_random_batch_against_python_loop():
    rng = np.random.default_rng(0)
    T, B = 12, 5
    r, v, v_next = (rng.normal(size=(T, B)).astype(np.float32) for _ in range(3))
    term = rng.random((T, B)) < 0.15
    trunc = (rng.random((T, B)) < 0.15) & ~term
    adv, _ = ppo.gae(*(jnp.asarray(a) for a in (r, v, v_next, term, trunc)), 0.99, 0.95)
    for b in range(B):
        expected = gae_by_hand(r[:, b], v[:, b], v_next[:, b], term[:, b], trunc[:, b], 0.99, 0.95)
        np.testing.assert_allclose(adv[:, b], expected, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_but_termination_does_not():
    r, v, v_next = jnp.zeros(1), jnp.zeros(1), jnp.full(1, 3.0)
    adv_trunc, _ = ppo.gae(r, v, v_next, jnp.array([False]), jnp.array([True]), 0.5, 1.0)
    adv_term, _ = ppo.gae(r, v, v_next, jnp.array([True]), jnp.array([False]), 0.5, 1.0)
    assert float(adv_trunc[0]) == pytest.approx(1.5) and float(adv_term[0]) == 0.0


def _batch_and_networks(key, n=64):
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    actor, critic = policy.init_networks(k1, CONFIG.hidden)
    obs = jax.random.normal(k2, (n, 1))
    batch = {
        "observations": obs,
        "actions": jax.random.randint(k3, (n,), 0, 4),
        "log_probs": jnp.log(jax.random.uniform(k4, (n,), minval=0.05, maxval=0.6)),
        "advantages": jax.random.normal(k5, (n,)),
        "targets": jnp.linspace(-1.0, 1.0, n),
    }
    return {"actor": actor, "critic": critic}, batch


def test_clipped_objective_matches_direct_formula():
    networks, batch = _batch_and_networks(jax.random.key(0))
    total, aux = ppo.ppo_loss(networks, batch, CONFIG)
    logits = np.asarray(policy.actor_apply(networks["actor"], batch["observations"]), np.float64)
    log_pi = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    a = np.asarray(batch["actions"])
    ratio = np.exp(log_pi[np.arange(a.size), a] - np.asarray(batch["log_probs"]))
    adv = np.asarray(batch["advantages"], np.float64)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    eps = CONFIG.clip_epsilon
    # the case form of min(ρA, clip(ρ, 1−ε, 1+ε)A)
    surrogate = [
        min(p * A, (1 + eps) * A) if A >= 0 else min(p * A, (1 - eps) * A)
        for p, A in zip(ratio, adv, strict=True)
    ]
    policy_loss = -np.mean(surrogate)
    values = np.asarray(policy.critic_apply(networks["critic"], batch["observations"]))
    err = values - np.asarray(batch["targets"])
    huber = np.where(np.abs(err) <= 1, 0.5 * err**2, np.abs(err) - 0.5).mean()
    entropy = -np.mean(np.sum(np.exp(log_pi) * log_pi, axis=1))
    assert float(aux["policy_loss"]) == pytest.approx(policy_loss, rel=1e-5)
    assert float(aux["value_loss"]) == pytest.approx(huber, rel=1e-5)
    assert float(aux["entropy"]) == pytest.approx(entropy, rel=1e-5)
    expected = policy_loss + CONFIG.value_coef * huber - CONFIG.entropy_coef * entropy
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert 0.0 < float(aux["clip_fraction"]) < 1.0  # the batch exercises both sides of the clip


def test_value_targets_carry_no_gradient():
    networks, batch = _batch_and_networks(jax.random.key(1))

    def loss_with_targets_from_critic(critic):
        # targets built from the critic itself: a wrong implementation would differentiate them
        targets = policy.critic_apply(critic, batch["observations"]) + 0.3
        nets = {"actor": networks["actor"], "critic": critic}
        return ppo.ppo_loss(nets, {**batch, "targets": targets}, CONFIG)[0]

    frozen_targets = policy.critic_apply(networks["critic"], batch["observations"]) + 0.3

    def loss_with_constant_targets(critic):
        nets = {"actor": networks["actor"], "critic": critic}
        return ppo.ppo_loss(nets, {**batch, "targets": frozen_targets}, CONFIG)[0]

    g1 = jax.grad(loss_with_targets_from_critic)(networks["critic"])
    g2 = jax.grad(loss_with_constant_targets)(networks["critic"])
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    assert any(float(jnp.abs(a).max()) > 0 for a in jax.tree_util.tree_leaves(g1))
    # and the targets returned by gae are stop-gradient in the values
    grad_v = jax.grad(
        lambda v: ppo.gae(
            jnp.ones(3), v, jnp.ones(3), jnp.zeros(3, bool), jnp.zeros(3, bool), 0.9, 0.9
        )[1].sum()
    )(jnp.zeros(3))
    np.testing.assert_array_equal(grad_v, np.zeros(3))


@pytest.fixture(scope="module")
def train_fn():
    return jax.jit(ppo.make_train(ENV, CONFIG))


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def test_train_is_deterministic_under_a_key(train_fn):
    sw = tk.swimmer_parameters(radius_um=1.0)
    a = train_fn(jax.random.key(3), sw)
    b = train_fn(jax.random.key(3), sw)
    c = train_fn(jax.random.key(4), sw)
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(_leaves(a.actor_params)[0], _leaves(c.actor_params)[0])
    assert a.metrics["mean_reward"].shape == (CONFIG.n_updates,)
    assert a.metrics["action_fractions"].shape == (CONFIG.n_updates, 4)
    assert np.all(np.isfinite(np.asarray(a.metrics["policy_loss"])))


def test_train_vmaps_over_seeds_and_radius_and_snapshots_precede_updates(train_fn):
    keys = jax.random.split(jax.random.key(5), 2)
    radii = tk.swimmer_parameters(radius_um=[0.5, 2.0], shape=["sphere", "sphere"])
    # one batch trains two seeds at two radii; each element equals its own single run
    batched = jax.jit(jax.vmap(ppo.make_train(ENV, CONFIG)))(keys, radii)
    for i, radius in enumerate((0.5, 2.0)):
        single = train_fn(keys[i], tk.swimmer_parameters(radius_um=radius))
        for x, y in zip(_leaves(single), _leaves(batched), strict=True):
            np.testing.assert_allclose(y[i], x, rtol=2e-4, atol=2e-5)
    # snapshots: parameters before updates 0 and 2; the first is the initialisation
    np.testing.assert_array_equal(batched.snapshots["update"][0], [0, 2])
    actor0, _ = policy.init_networks(jax.random.split(keys[0], 3)[0], CONFIG.hidden)
    first = jax.tree_util.tree_map(lambda a: a[0, 0], batched.snapshots["actor"])
    for x, y in zip(_leaves(first), _leaves(actor0), strict=True):
        np.testing.assert_array_equal(x, y)
    second = jax.tree_util.tree_map(lambda a: a[0, 1], batched.snapshots["actor"])
    assert not np.allclose(_leaves(second)[0], _leaves(actor0)[0])
    assert policy.actor_apply(first, policy.observation_grid(16)).shape == (16, 4)
    with pytest.raises(ValueError, match="multiple of snapshot_every"):
        ppo.PPOConfig(n_updates=5, snapshot_every=2)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="n_minibatches"):
        ppo.make_train(ENV, ppo.PPOConfig(n_envs=1, n_steps=3, n_minibatches=4))
    with pytest.raises(ValueError, match="gamma"):
        ppo.PPOConfig(gamma=1.5)
