"""Active Brownian colloids and multi-agent reinforcement learning, in one jitted JAX program.

- :mod:`.physics`: 2-D overdamped active Brownian dynamics (Stokes and Perrin friction).
- :mod:`.tasks`: tasks, observables, rewards and the multi-agent environment (chemotaxis).
- :mod:`.ppo`: multi-agent PPO with a shared policy; ``make_train(...)(key, params)``.
- :mod:`.analysis`: distance curves, success rates, policy maps, strategies, Péclet numbers.
"""

from ntkbook.swarm import analysis, physics, ppo, tasks
from ntkbook.swarm.physics import diffusion_coefficients
from ntkbook.swarm.ppo import PPOConfig, actor_apply, deploy, make_train, observation_grid
from ntkbook.swarm.tasks import ACTIONS, EnvConfig, swimmer

__all__ = [
    "analysis",
    "physics",
    "ppo",
    "tasks",
    "ACTIONS",
    "EnvConfig",
    "PPOConfig",
    "actor_apply",
    "deploy",
    "diffusion_coefficients",
    "make_train",
    "observation_grid",
    "swimmer",
]
