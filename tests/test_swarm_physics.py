"""Active Brownian physics against closed forms (Stokes–Einstein, Perrin, free and active MSD)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.swarm import physics as ph
from ntkbook.swarm import tasks as tk

KT_300 = 1.380649e-23 * 300.0  # J


def test_sphere_coefficients_are_stokes_einstein_in_si():
    for radius in (0.025, 1.0, 2.14):
        a = radius * 1e-6
        d_t, d_r = ph.diffusion_coefficients(radius, 300.0)
        assert d_t == pytest.approx(KT_300 / (6 * math.pi * 8.9e-4 * a) * 1e12, rel=1e-10)
        assert d_r == pytest.approx(KT_300 / (8 * math.pi * 8.9e-4 * a**3), rel=1e-10)
    # the anchors quoted by the chemotaxis and temperature papers
    d_t, d_r = ph.diffusion_coefficients(2.14, 300.0)
    assert d_t == pytest.approx(0.115, rel=0.01) and d_r == pytest.approx(0.019, rel=0.02)
    d_t, d_r = ph.diffusion_coefficients(0.025, 300.0)
    assert d_t == pytest.approx(9.9, rel=0.01) and d_r == pytest.approx(1.2e4, rel=0.02)


def test_float32_friction_matches_float64_coefficients():
    for shape in ("sphere", "prolate", "oblate"):
        p = ph.aspect_ratio_of(shape)
        g_par, g_perp, g_rot = (float(g) for g in ph.friction_coefficients(1.3, 8.9e-4, p))
        kT = 1.380649e-5 * 300.0  # pN·µm
        d_t, d_r = ph.diffusion_coefficients(1.3, 300.0, shape=shape)
        assert 0.5 * (kT / g_par + kT / g_perp) == pytest.approx(d_t, rel=1e-5)
        assert kT / g_rot == pytest.approx(d_r, rel=1e-5)


@pytest.mark.parametrize("p", [3.0, 1.0 / 3.0, 10.0, 0.1])
def test_perrin_mean_friction_matches_perrin_shape_factor(p):
    """Orientation-averaged friction 3/(1/γ_∥ + 2/γ_⊥) over 6πηR is Perrin's closed form F(q)."""
    g_par, g_perp, _ = (float(g) for g in ph.friction_coefficients(1.0, 1.0, p))
    measured = 3.0 / (1.0 / g_par + 2.0 / g_perp) / (6 * math.pi)
    q = 1.0 / p  # equatorial over axial semi-axis
    if q < 1:
        s = math.sqrt(1 - q**2)
        expected = s / (q ** (2 / 3) * math.log((1 + s) / q))
    else:
        s = math.sqrt(q**2 - 1)
        expected = s / (q ** (2 / 3) * math.atan(s))
    assert measured == pytest.approx(expected, rel=1e-5)


def test_spheroids_approach_the_sphere_continuously():
    sphere = np.array([float(g) for g in ph.friction_coefficients(1.0, 8.9e-4, 1.0)])
    for p in (1.02, 0.98):
        near = np.array([float(g) for g in ph.friction_coefficients(1.0, 8.9e-4, p)])
        np.testing.assert_allclose(near, sphere, rtol=0.01)


def _free_physics(radius=1.0, temperature=300.0, aspect_ratio=1.0, boundary="periodic", box=1e5):
    return ph.make_physics(
        radius_um=radius,
        temperature_K=temperature,
        aspect_ratio=aspect_ratio,
        box_length=box,
        boundary=boundary,
    )


def _unwrapped_run(physics, n, speed, t_total, dt, key, segments):
    """Positions (segments+1, n, 2) every t_total/segments in a huge box (no wrapping)."""
    center = jnp.full((2,), float(physics.box_length) / 2)
    state = ph.ColloidState(jnp.broadcast_to(center, (n, 2)), jnp.zeros((n,)))
    steps = int(round(t_total / segments / dt))
    advance = jax.jit(ph.advance, static_argnums=(5, 6))
    out, thetas = [state.positions], [jnp.zeros((n,))]
    unwrapped = jnp.zeros((n,))
    for k in jax.random.split(key, segments):
        new = advance(state, k, speed, 0.0, physics, dt, steps)
        # orientations are wrapped to [0, 2π); unwrap increments (each far below π per segment)
        delta = jnp.mod(new.orientations - state.orientations + jnp.pi, 2 * jnp.pi) - jnp.pi
        unwrapped = unwrapped + delta
        state = new
        out.append(state.positions)
        thetas.append(unwrapped)
    return np.asarray(jnp.stack(out)) - np.asarray(center), np.asarray(jnp.stack(thetas))


def test_passive_msd_is_4_dt_t():
    physics = _free_physics(radius=1.0)
    d_t = float(physics.diffusion_parallel)
    # equal D_∥ = D_⊥: the Gaussian kicks are exact for any step, so a coarse step suffices
    positions, _ = _unwrapped_run(physics, 40_000, 0.0, 2.0, 0.05, jax.random.key(0), 4)
    times = np.arange(1, 5) * 0.5
    msd = np.mean(np.sum(positions[1:] ** 2, axis=-1), axis=1)
    np.testing.assert_allclose(msd, 4 * d_t * times, rtol=0.03)


def test_orientation_correlation_decays_as_exp_minus_dr_t():
    physics = _free_physics(radius=0.5)  # D_r ≈ 1.47 1/s
    d_r = float(physics.diffusion_rotation)
    # the orientation update is the exact Gaussian, so a coarse step suffices
    # up to D_r·t ≈ 1.2, where the standard error of the mean cosine stays below 0.6%
    _, thetas = _unwrapped_run(physics, 200_000, 0.0, 0.8, 0.1, jax.random.key(1), 4)
    times = np.arange(1, 5) * 0.2
    correlation = np.mean(np.cos(thetas[1:]), axis=1)
    np.testing.assert_allclose(correlation, np.exp(-d_r * times), rtol=0.03)


def test_active_msd_matches_active_brownian_formula():
    physics = _free_physics(radius=0.8)  # D_r ≈ 0.36 1/s, D_t ≈ 0.31 µm²/s
    d_t, d_r = float(physics.diffusion_parallel), float(physics.diffusion_rotation)
    speed = 2.0
    # D_r·Δt = 0.007: the Euler–Maruyama bias of the active term is well below 1%
    positions, _ = _unwrapped_run(physics, 10_000, speed, 8.0, 0.02, jax.random.key(2), 4)
    times = np.arange(1, 5) * 2.0
    msd = np.mean(np.sum(positions[1:] ** 2, axis=-1), axis=1)
    expected = ph.active_msd(times, speed, d_t, d_r)
    # the active part dominates (ballistic to diffusive crossover at 1/D_r ≈ 2.8 s)
    assert np.all(expected > 3 * 4 * d_t * times)
    np.testing.assert_allclose(msd, expected, rtol=0.05)


def test_spheroid_long_time_msd_uses_the_mean_diffusion_coefficient():
    # radius 0.3 µm: D_r ≈ 2.3 1/s (prolate), so t = 4 s is far beyond the rotational time
    d_t, _ = ph.diffusion_coefficients(0.3, 300.0, shape="prolate")
    physics = _free_physics(radius=0.3, aspect_ratio=3.0)
    positions, _ = _unwrapped_run(physics, 40_000, 0.0, 4.0, 0.05, jax.random.key(3), 1)
    msd = float(np.mean(np.sum(positions[-1] ** 2, axis=-1)))
    assert msd == pytest.approx(4 * d_t * 4.0, rel=0.03)


def test_stepwise_scan_path_matches_the_closed_forms_too():
    """Far from the walls a walled box runs the lax.scan of `step` (three normals per step)."""
    walled = _free_physics(radius=0.8, boundary="walls")
    d_t, d_r = float(walled.diffusion_parallel), float(walled.diffusion_rotation)
    positions, thetas = _unwrapped_run(walled, 10_000, 2.0, 4.0, 0.02, jax.random.key(4), 2)
    msd = np.mean(np.sum(positions[1:] ** 2, axis=-1), axis=1)
    np.testing.assert_allclose(msd, ph.active_msd([2.0, 4.0], 2.0, d_t, d_r), rtol=0.05)
    np.testing.assert_allclose(
        np.mean(np.cos(thetas[1:]), axis=1), np.exp(-d_r * np.array([2.0, 4.0])), rtol=0.05
    )


def test_spheroid_short_time_msd_along_and_across_the_director():
    """At D_r·t ≪ 1 the kicks along and across the director have variances 2D_∥t and 2D_⊥t."""
    physics = _free_physics(radius=1.0, aspect_ratio=3.0)  # D_r ≈ 0.079 1/s
    d_par, d_perp = float(physics.diffusion_parallel), float(physics.diffusion_perpendicular)
    positions, _ = _unwrapped_run(physics, 40_000, 0.0, 0.1, 0.01, jax.random.key(6), 1)
    along, across = positions[-1, :, 0], positions[-1, :, 1]  # director along x at t = 0
    assert np.mean(along**2) == pytest.approx(2 * d_par * 0.1, rel=0.03)
    assert np.mean(across**2) == pytest.approx(2 * d_perp * 0.1, rel=0.03)
    assert d_par / d_perp == pytest.approx(1.23, rel=0.01)  # γ_⊥/γ_∥ for p = 3


def test_walls_reflect_and_periodic_box_wraps():
    walled = _free_physics(radius=1.0, box=10.0, boundary="walls")
    periodic = _free_physics(radius=1.0, box=10.0)
    state = ph.ColloidState(jnp.array([[9.9, 5.0], [0.1, 5.0]]), jnp.array([0.0, jnp.pi]))
    zero_noise = jnp.zeros((2, 3))
    moved = ph.step(state, zero_noise, 1.0, 0.0, walled, 0.5)  # 0.5 µm towards the walls
    np.testing.assert_allclose(moved.positions[:, 0], [9.6, 0.4], atol=1e-5)
    wrapped = ph.step(state, zero_noise, 1.0, 0.0, periodic, 0.5)
    np.testing.assert_allclose(wrapped.positions[:, 0], [0.4, 9.6], atol=1e-5)


def test_wca_forces_are_minus_the_energy_gradient():
    physics = ph.make_physics(radius_um=1.0, box_length=20.0, interactions=True)
    positions = jnp.array([[5.0, 5.0], [6.9, 5.3], [5.2, 6.8], [15.0, 15.0], [0.5, 15.0]])

    def energy(r):
        d = r[:, None, :] - r[None, :, :]
        d = d - 20.0 * jnp.round(d / 20.0)
        d2 = jnp.sum(d**2, -1) + jnp.eye(r.shape[0])
        s6 = (physics.wca_sigma**2 / d2) ** 3
        u = 4 * physics.wca_epsilon * (s6**2 - s6) + physics.wca_epsilon
        inside = (d2 < 2 ** (1 / 3) * physics.wca_sigma**2) & ~jnp.eye(r.shape[0], dtype=bool)
        return 0.5 * jnp.sum(jnp.where(inside, u, 0.0))

    forces = ph.wca_forces(positions, physics)
    np.testing.assert_allclose(forces, -jax.grad(energy)(positions), rtol=1e-4, atol=1e-7)
    assert float(jnp.abs(forces[0]).sum()) > 0 and float(jnp.abs(forces[3]).sum()) == 0


def test_wca_pushes_overlapping_colloids_apart():
    physics = ph.make_physics(radius_um=1.0, temperature_K=0.0, box_length=50.0, interactions=True)
    physics = physics.replace(wca_epsilon=jnp.float32(4.14e-3))
    state = ph.ColloidState(jnp.array([[20.0, 20.0], [21.8, 20.0]]), jnp.zeros((2,)))
    after = ph.advance(state, jax.random.key(0), 0.0, 0.0, physics, 2e-3, 1000)
    gap = float(jnp.linalg.norm(after.positions[1] - after.positions[0]))
    assert gap == pytest.approx(2 ** (1 / 6) * 2.0, abs=0.01)


def test_bad_physical_parameters_raise():
    with pytest.raises(ValueError, match="radius_um"):
        ph.diffusion_coefficients(-1.0, 300.0)
    with pytest.raises(ValueError, match="temperature_K"):
        ph.diffusion_coefficients(1.0, -5.0)
    with pytest.raises(ValueError, match="viscosity"):
        ph.diffusion_coefficients(1.0, 300.0, viscosity=0.0)
    with pytest.raises(ValueError, match="unknown shape 'cube'"):
        ph.diffusion_coefficients(1.0, 300.0, shape="cube")
    with pytest.raises(ValueError, match="prolate"):
        ph.diffusion_coefficients(1.0, 300.0, shape="prolate", aspect_ratio=0.5)
    with pytest.raises(ValueError, match="radius_um"):
        ph.diffusion_coefficients(float("nan"), 300.0)
    with pytest.raises(ValueError, match="unknown boundary"):
        ph.make_physics(boundary="sticky")
    with pytest.raises(ValueError, match="integrator_step"):
        tk.EnvConfig(integrator_step=0.0)
    with pytest.raises(ValueError, match="must divide"):
        tk.EnvConfig(decision_interval=0.1, integrator_step=0.03)
    with pytest.raises(ValueError, match="radius_um"):
        tk.swimmer_parameters(radius_um=[1.0, -0.5])
    with pytest.raises(ValueError, match="temperature_K"):
        tk.swimmer_parameters(temperature_K=-1.0)
    with pytest.raises(ValueError, match="unknown shape"):
        tk.swimmer_parameters(shape=["sphere", "disc"])
    # zero temperature is allowed: a deterministic swimmer
    d_t, d_r = ph.diffusion_coefficients(1.0, 0.0)
    assert d_t == 0.0 and d_r == 0.0


@pytest.mark.parametrize("length", [1, 31, 32, 100, 1000])
def test_exclusive_cumsum_matches_numpy(length):
    x = np.random.default_rng(length).standard_normal((2, 3, length)).astype(np.float32)
    expected = np.cumsum(x.astype(np.float64), axis=-1) - x
    np.testing.assert_allclose(ph.exclusive_cumsum(jnp.asarray(x)), expected, atol=2e-5)


def test_free_advance_matches_the_stepwise_loop_for_a_fast_rotating_spheroid():
    """The summed free-space path draws the displacement from its conditional Gaussian.

    A long prolate swimmer (D_∥ ≈ 1.4 D_⊥) that turns by about a radian during the run, so
    the covariance depends on the orientation path: mean and covariance of the displacement and the
    orientation spread equal those of ``step`` in a ``lax.scan`` (three normals per step).
    """
    # a small box keeps float32 positions fine-grained (the runs move < 2 µm, no wrap)
    physics = _free_physics(radius=0.3, aspect_ratio=8.0, box=20.0)  # D_r ≈ 0.7 1/s
    n, dt, steps, speed = 40_000, 1e-3, 200, 1.0
    start = ph.ColloidState(jnp.full((n, 2), 10.0), jnp.zeros((n,)))
    summed = ph.advance(start, jax.random.key(7), speed, 6.0, physics, dt, steps)

    def body(state, xi):
        return ph.step(state, xi, jnp.full((n,), speed), 6.0, physics, dt), None

    noise = jax.random.normal(jax.random.key(8), (steps, n, 3))
    looped = jax.lax.scan(body, start, noise)[0]
    for a, b in ((summed, looped),):
        da, db = np.asarray(a.positions) - 10.0, np.asarray(b.positions) - 10.0
        sem = np.std(db, axis=0) / np.sqrt(n)
        np.testing.assert_allclose(da.mean(0), db.mean(0), atol=4 * np.sqrt(2) * sem.max())
        cov_a, cov_b = np.cov(da.T), np.cov(db.T)
        # standard error of a sample covariance entry ≈ variance · sqrt(2/n)
        tolerance = 6 * np.trace(cov_b) / 2 * np.sqrt(2 / n)
        np.testing.assert_allclose(cov_a, cov_b, atol=tolerance)
        wrap = lambda t: np.mod(np.asarray(t) + np.pi, 2 * np.pi) - np.pi  # noqa: E731
        assert np.std(wrap(a.orientations)) == pytest.approx(np.std(wrap(b.orientations)), rel=0.02)
    # the test can fail: the kicks' covariance is anisotropic and turned by ω, so an isotropic
    # or unturned covariance would miss c_xy by more than the tolerance
    assert abs(cov_b[0, 1]) > 1.5 * tolerance


def test_pairwise_wca_vanishes_at_contact_and_is_minus_the_energy_gradient():
    sigma = ph.wca_sigma(3.08, 0.847)
    assert float(sigma) * 2 ** (1 / 6) == pytest.approx(3.08 + 0.847, rel=1e-6)
    epsilon = ph.wca_epsilon(300.0, offset_K=1.0)
    assert float(epsilon) == pytest.approx(1.380649e-23 * 301.0 * 1e18, rel=1e-6)
    assert float(ph.wca_epsilon(300.0, fixed=0.01)) == pytest.approx(0.01)

    def energy(d):
        r = jnp.linalg.norm(d)
        s6 = (sigma / r) ** 6
        return 4 * epsilon * (s6**2 - s6) + epsilon

    d = jnp.array([2.5, 1.7])
    np.testing.assert_allclose(
        ph.wca_pair_forces(d, sigma, epsilon), -jax.grad(energy)(d), rtol=1e-5
    )
    at_contact = jnp.array([3.08 + 0.847 + 1e-4, 0.0])
    assert float(jnp.abs(ph.wca_pair_forces(at_contact, sigma, epsilon)).max()) == 0.0


def test_open_boundary_leaves_positions_alone_and_relaxation_removes_overlaps():
    physics = ph.make_physics(radius_um=1.0, temperature_K=0.0, box_length=10.0, boundary="open")
    state = ph.ColloidState(jnp.array([[9.5, 5.0]]), jnp.zeros((1,)))
    moved = ph.step(state, jnp.zeros((1, 3)), 2.0, 0.0, physics, 1.0)
    np.testing.assert_allclose(moved.positions, [[11.5, 5.0]])
    crowded = ph.init_colloids(jax.random.key(0), 30, [0.0, 0.0], 3.0).positions
    assert int(ph.overlaps(crowded, 1.0)) > 0
    assert int(ph.overlaps(ph.relax_overlaps(crowded, 1.0), 1.0)) == 0


def test_too_many_colloids_for_the_area_raise_naming_the_numbers():
    ph.check_fits(10, 1.0, 100.0)
    with pytest.raises(ValueError, match="40 colloids of radius 1 µm cannot fit"):
        ph.check_fits(40, 1.0, 100.0)
