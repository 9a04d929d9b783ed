"""Subdivided vision cones against hand-placed particles."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.swarm import vision


def _look(targets, radii, types, heading=0.0, **kwargs):
    return np.asarray(
        vision.vision_cones(
            jnp.zeros((1, 2)),
            jnp.array([heading]),
            jnp.asarray(targets, jnp.float32),
            jnp.asarray(radii, jnp.float32),
            jnp.asarray(types, jnp.int32),
            n_types=2,
            **kwargs,
        )[0]
    )


def test_each_particle_adds_min_one_two_r_over_d_to_the_cone_of_its_angle_and_type():
    # five cones over ±1.4 rad are 0.56 rad wide; cone 2 is centred on the heading
    angles = [0.0, 0.7, -1.2, 2.0]  # cone 2, cone 3, cone 0, behind (unseen)
    distances = [10.0, 4.0, 20.0, 5.0]
    targets = [[d * math.cos(a), d * math.sin(a)] for a, d in zip(angles, distances, strict=True)]
    cones = _look(targets, [3.0, 3.0, 0.5, 3.0], [0, 0, 1, 0])
    expected = np.zeros((5, 2))
    expected[2, 0] = 0.6  # 2·3/10
    expected[3, 0] = 1.0  # 2·3/4 > 1
    expected[0, 1] = 0.05  # 2·0.5/20
    np.testing.assert_allclose(cones, expected, rtol=1e-5)


def test_cones_turn_with_the_heading_and_ignore_the_viewer_and_far_particles():
    target = [[0.0, 10.0]]  # straight north
    north = _look(target + [[0.0, 0.0]], [1.0, 1.0], [0, 0], heading=math.pi / 2)
    east = _look(target, [1.0], [0], heading=0.0)
    assert north[2, 0] == pytest.approx(0.2) and north.sum() == pytest.approx(0.2)
    assert east.sum() == 0.0  # 90° to the left lies outside ±1.4 rad
    assert _look(target, [1.0], [0], heading=math.pi / 2, vision_range=5.0).sum() == 0.0


def test_flatten_puts_all_cones_of_one_type_first():
    cones = jnp.arange(10.0).reshape(1, 5, 2)
    np.testing.assert_array_equal(vision.flatten_cones(cones)[0], [0, 2, 4, 6, 8, 1, 3, 5, 7, 9])
