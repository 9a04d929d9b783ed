"""Active Brownian colloids and multi-agent reinforcement learning, in one jitted JAX program.

- :mod:`.physics`: 2-D overdamped active Brownian dynamics (Stokes and Perrin friction).
- :mod:`.tasks`: tasks, observables, rewards, the multi-agent environment (chemotaxis) and
  hand-written controllers.
- :mod:`.rod`: a rigid rod pinned at its centre, pushed by colloids (contact torque, Brownian
  rotation); :mod:`.vision`: subdivided vision cones; :mod:`.rod_rotation`: the rod-rotation
  task of the temperature paper (registered as ``"rod_rotation"``).
- :mod:`.policy`: the shared actor and critic, :class:`TrainedPolicy`, deployment.
- :mod:`.policy_gradient`: the chemotaxis paper's loss on a continuous trajectory.
- :mod:`.ppo`: PPO with GAE; :func:`make_train` builds either training from its configuration.
- :mod:`.analysis`: distance curves, success rates, policy maps, strategies, Péclet numbers.
"""

from ntkbook.swarm import (
    analysis,
    physics,
    policy,
    policy_gradient,
    ppo,
    rod,
    rod_rotation,
    tasks,
    vision,
)
from ntkbook.swarm.physics import diffusion_coefficients
from ntkbook.swarm.policy import TrainedPolicy, actor_apply, deploy, observation_grid
from ntkbook.swarm.policy_gradient import PolicyGradientConfig
from ntkbook.swarm.ppo import PPOConfig
from ntkbook.swarm.tasks import ACTIONS, EnvConfig, swimmer_parameters
from ntkbook.swarm.training import make_train

__all__ = [
    "analysis",
    "physics",
    "policy",
    "policy_gradient",
    "ppo",
    "rod",
    "rod_rotation",
    "tasks",
    "vision",
    "ACTIONS",
    "EnvConfig",
    "PPOConfig",
    "PolicyGradientConfig",
    "TrainedPolicy",
    "actor_apply",
    "deploy",
    "diffusion_coefficients",
    "make_train",
    "observation_grid",
    "swimmer_parameters",
]
