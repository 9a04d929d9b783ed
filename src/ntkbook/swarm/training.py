"""One entry point for both losses: ``make_train(env_config, config)``.

``config`` chooses the loss: a :class:`~ntkbook.swarm.policy_gradient.PolicyGradientConfig`
(the chemotaxis paper's policy gradient on a continuous trajectory) or a
:class:`~ntkbook.swarm.ppo.PPOConfig` (PPO with GAE on episodes). Both return
``train(key, params) -> TrainedPolicy``.
"""

from __future__ import annotations

from collections.abc import Callable

from ntkbook.swarm import policy_gradient, ppo
from ntkbook.swarm import tasks as tk
from ntkbook.swarm.policy import TrainedPolicy

__all__ = ["make_train"]


def make_train(
    env_config: tk.EnvConfig, config: ppo.PPOConfig | policy_gradient.PolicyGradientConfig
) -> Callable[..., TrainedPolicy]:
    """``train(key, params) -> TrainedPolicy`` for the loss that ``config`` configures.

    Raises:
        TypeError: ``config`` is neither a ``PPOConfig`` nor a ``PolicyGradientConfig``.
    """
    if isinstance(config, ppo.PPOConfig):
        return ppo.make_train(env_config, config)
    if isinstance(config, policy_gradient.PolicyGradientConfig):
        return policy_gradient.make_train(env_config, config)
    raise TypeError(
        f"config must be a PPOConfig or a PolicyGradientConfig, got {type(config).__name__}"
    )
