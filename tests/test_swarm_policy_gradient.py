"""The chemotaxis paper's policy-gradient loss, checked by hand, and continuous training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.swarm import make_train, policy, policy_gradient, ppo
from ntkbook.swarm import tasks as tk

# A window of 3 decisions of 2 agents (time-major), γ = 0.5.
GAMMA = 0.5
OBSERVATIONS = np.array([[[0.5], [-0.5]], [[-1.0], [0.0]], [[2.0], [1.0]]], np.float32)
ACTIONS = np.array([[0, 3], [2, 0], [1, 0]])
REWARDS = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], np.float32)
# G_t = Σ_{k≥t} γ^{k+1} r_k: agent 0: 0.5·1 + 0.125·2, 0.125·2, 0.125·2; agent 1: 0.25, 0.25, 0
RETURNS = np.array([[0.75, 0.25], [0.25, 0.25], [0.25, 0.0]])
# per agent over the window: mean 5/12 and 1/6, population std √2/6 and 1/√72
STANDARDISED = np.array(
    [
        [math.sqrt(2), 1 / math.sqrt(2)],
        [-1 / math.sqrt(2), 1 / math.sqrt(2)],
        [-1 / math.sqrt(2), -math.sqrt(2)],
    ]
)
# linear networks (no hidden layer): logits = o W + b, V = w o + c
ACTOR_W = np.array([[0.3, -0.2, 0.1, 0.0]])
ACTOR_B = np.array([0.1, 0.0, -0.1, 0.2])
CRITIC_W, CRITIC_B = 0.4, -0.1
CONFIG = policy_gradient.PolicyGradientConfig(gamma=GAMMA, hidden=())


def _networks():
    actor = {"params": {"Dense_0": {"kernel": jnp.asarray(ACTOR_W), "bias": jnp.asarray(ACTOR_B)}}}
    critic = {
        "params": {
            "Dense_0": {"kernel": jnp.asarray([[CRITIC_W]]), "bias": jnp.asarray([CRITIC_B])}
        }
    }
    return {"actor": actor, "critic": critic}


def _batch():
    return {
        "observations": jnp.asarray(OBSERVATIONS),
        "actions": jnp.asarray(ACTIONS),
        "rewards": jnp.asarray(REWARDS),
    }


def test_expected_returns_discount_from_the_window_start_and_standardise_per_agent():
    raw = policy_gradient.expected_returns(jnp.asarray(REWARDS), GAMMA, standardize=False)
    np.testing.assert_allclose(raw, RETURNS, rtol=1e-6)
    standardised = policy_gradient.expected_returns(jnp.asarray(REWARDS), GAMMA)
    np.testing.assert_allclose(standardised, STANDARDISED, rtol=1e-5)
    # constant returns have no spread: the float32 epsilon keeps them at 0, not NaN
    flat = policy_gradient.expected_returns(jnp.asarray([[0.0], [0.0], [1.0]]), 1.0)
    np.testing.assert_allclose(flat, 0.0, atol=1e-6)


def _hand_loss():
    """The loss of 3 steps × 2 agents written out with explicit loops in float64."""
    actor_loss = critic_loss = 0.0
    critic_grad = np.zeros(2)  # d/dw, d/dc of the critic loss only
    for i in range(2):
        for t in range(3):
            o = float(OBSERVATIONS[t, i, 0])
            logits = o * ACTOR_W[0] + ACTOR_B
            p = np.exp(logits - logits.max())
            p /= p.sum()
            value = CRITIC_W * o + CRITIC_B
            advantage = STANDARDISED[t, i] - value
            actor_loss -= math.log(p[ACTIONS[t, i]] + 1e-8) * advantage / 2
            err = value - STANDARDISED[t, i]
            critic_loss += (0.5 * err**2 if abs(err) <= 1 else abs(err) - 0.5) / 2
            slope = max(-1.0, min(1.0, err))
            critic_grad += np.array([slope * o, slope]) / 2
    return actor_loss, critic_loss, critic_grad


def test_policy_gradient_loss_matches_a_hand_computation():
    actor_loss, critic_loss, critic_grad = _hand_loss()
    total, aux = policy_gradient.policy_gradient_loss(_networks(), _batch(), CONFIG)
    assert float(aux["actor_loss"]) == pytest.approx(actor_loss, rel=1e-5)
    assert float(aux["critic_loss"]) == pytest.approx(critic_loss, rel=1e-5)
    assert float(total) == pytest.approx(actor_loss + critic_loss, rel=1e-5)
    # the critic is trained by its own loss only: the advantage carries no gradient into it
    grads = jax.grad(lambda n: policy_gradient.policy_gradient_loss(n, _batch(), CONFIG)[0])(
        _networks()
    )["critic"]["params"]["Dense_0"]
    np.testing.assert_allclose(
        [float(grads["kernel"][0, 0]), float(grads["bias"][0])], critic_grad, rtol=1e-5
    )


def test_actor_gradient_is_the_score_function_times_the_advantage():
    # d L_actor / d b_j = −(1/N) Σ A_t,i · p_a/(p_a + 1e-8) · (1[a = j] − π_j)
    expected = np.zeros(4)
    for i in range(2):
        for t in range(3):
            o = float(OBSERVATIONS[t, i, 0])
            logits = o * ACTOR_W[0] + ACTOR_B
            p = np.exp(logits - logits.max())
            p /= p.sum()
            a = ACTIONS[t, i]
            advantage = STANDARDISED[t, i] - (CRITIC_W * o + CRITIC_B)
            expected -= advantage * p[a] / (p[a] + 1e-8) * (np.eye(4)[a] - p) / 2
    grads = jax.grad(lambda n: policy_gradient.policy_gradient_loss(n, _batch(), CONFIG)[0])(
        _networks()
    )
    np.testing.assert_allclose(grads["actor"]["params"]["Dense_0"]["bias"], expected, atol=1e-6)


ENV = tk.EnvConfig(n_agents=3, integrator_step=0.02, episode_length=4)
SWIMMER = tk.swimmer_parameters(radius_um=1.0, speed_body_lengths=5.0)


@pytest.mark.parametrize("continuous", [True, False])
def test_continuous_training_carries_the_state_across_update_windows(continuous):
    config = policy_gradient.PolicyGradientConfig(
        n_updates=6, hidden=(8,), continuous=continuous, n_envs=2
    )
    result = jax.jit(make_train(ENV, config))(jax.random.key(0), SWIMMER)
    start = np.asarray(result.metrics["start_distance"])
    end = np.asarray(result.metrics["mean_distance"])
    assert start.shape == end.shape == (6,)
    if continuous:
        # every window starts exactly where the previous one ended
        np.testing.assert_array_equal(start[1:], end[:-1])
    else:
        # every window starts from new positions in the start disc (mean distance ~ 2/3 of 100)
        assert np.all(np.abs(start[1:] - end[:-1]) > 1e-3)
        assert np.all(start < ENV.start_radius)
    fractions = np.asarray(result.metrics["action_fractions"])
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-5)


def test_training_vmaps_over_seeds_and_radii_and_keeps_snapshots():
    config = policy_gradient.PolicyGradientConfig(n_updates=4, hidden=(8,), snapshot_every=2)
    train = make_train(ENV, config)
    keys = jax.random.split(jax.random.key(3), 2)
    radii = tk.swimmer_parameters(radius_um=[0.5, 2.0], speed_body_lengths=5.0)
    batched = jax.jit(jax.vmap(train))(keys, radii)
    for i, radius in enumerate((0.5, 2.0)):
        single = jax.jit(train)(
            keys[i], tk.swimmer_parameters(radius_um=radius, speed_body_lengths=5.0)
        )
        np.testing.assert_allclose(
            batched.metrics["mean_reward"][i], single.metrics["mean_reward"], rtol=1e-4, atol=1e-6
        )
    np.testing.assert_array_equal(batched.snapshots["update"][0], [0, 2])
    # the first snapshot is the initial actor
    k_init = jax.random.split(keys[0])[0]  # train: (init, run); init: (networks, environments)
    actor0, _ = policy.init_networks(jax.random.split(k_init)[0], (8,))
    first = jax.tree_util.tree_map(lambda a: a[0, 0], batched.snapshots["actor"])
    np.testing.assert_allclose(
        policy.actor_apply(first, policy.observation_grid(5)),
        policy.actor_apply(actor0, policy.observation_grid(5)),
        rtol=1e-6,
    )


def test_make_train_picks_the_loss_from_the_configuration():
    assert isinstance(
        make_train(ENV, ppo.PPOConfig(n_envs=1, n_steps=4, n_minibatches=1)), type(_hand_loss)
    )
    with pytest.raises(TypeError, match="PPOConfig or a PolicyGradientConfig"):
        make_train(ENV, {"n_updates": 3})
    with pytest.raises(ValueError, match="n_updates"):
        policy_gradient.PolicyGradientConfig(n_updates=0)
    with pytest.raises(ValueError, match="gamma"):
        policy_gradient.PolicyGradientConfig(gamma=1.5)
    with pytest.raises(ValueError, match="snapshot_every"):
        policy_gradient.PolicyGradientConfig(n_updates=5, snapshot_every=2)


def test_sampled_actions_follow_the_softmax_of_the_logits():
    logits = jnp.array(
        [[0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 0.0], [-jnp.inf, 1.0, -jnp.inf, 0.0]]
    )
    n = 200_000
    actions = jax.jit(jax.vmap(policy.sample_actions, in_axes=(0, None)))(
        jax.random.split(jax.random.key(4), n), logits
    )
    assert actions.shape == (n, 3) and actions.dtype == jnp.int32
    probabilities = np.asarray(jax.nn.softmax(logits))
    for row in range(3):
        counts = np.bincount(np.asarray(actions[:, row]), minlength=4)
        assert counts.size == 4
        # binomial standard error: every frequency within 5 of them of its probability
        error = np.sqrt(probabilities[row] * (1 - probabilities[row]) / n)
        np.testing.assert_array_less(np.abs(counts / n - probabilities[row]), 5 * error + 1e-12)
    # an action of probability zero is never drawn
    assert set(np.unique(actions[:, 2])) == {1, 3}
