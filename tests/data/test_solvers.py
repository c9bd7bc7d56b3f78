"""The Darcy and elasticity solvers: convergence order, operator structure, independent checks, errors."""

import numpy as np
import pytest
import sympy as sym
import torch

from nips_plugin.data.solvers import darcy_operator, elasticity_operator, solve_darcy, solve_elasticity

X, Y = sym.symbols("x y")
SIZES = (17, 33, 65)


def nodes(n):
    return np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")


def on_nodes(expr, n):
    """A sympy expression of (x, y) evaluated on the n x n node grid (axis 0 = x)."""
    x, y = nodes(n)
    return sym.lambdify((X, Y), expr, "numpy")(x, y) + np.zeros_like(x)


def orders(errors):
    """Observed orders log2(e_h / e_{h/2}) of errors on grids refined by 2, per norm."""
    errors = np.asarray(errors)
    return np.log2(errors[:-1] / errors[1:])


def error_norms(e, n):
    """Max norm and nodal L2 norm sqrt(h^2 sum e^2) of a nodal error."""
    return np.abs(e).max(), np.sqrt(np.sum(e**2)) / (n - 1)


def test_darcy_second_order_on_manufactured_solution():
    b = 1 + sym.sin(2 * sym.pi * X) * sym.cos(sym.pi * Y) / 2
    u = sym.sin(sym.pi * X) * sym.sin(sym.pi * Y) * X * (1 - Y)
    f = -(sym.diff(b * sym.diff(u, X), X) + sym.diff(b * sym.diff(u, Y), Y))
    errors = [error_norms(solve_darcy(on_nodes(b, n), on_nodes(f, n)) - on_nodes(u, n), n) for n in SIZES]
    assert np.all(orders(errors) > 1.9), orders(errors)


def elasticity_source(E, ux, uy, nu):
    """Body force -div sigma(u) of plane-strain elasticity, symbolically."""
    lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    exx, eyy = sym.diff(ux, X), sym.diff(uy, Y)
    exy = (sym.diff(ux, Y) + sym.diff(uy, X)) / 2
    sxx, syy, sxy = lam * (exx + eyy) + 2 * mu * exx, lam * (exx + eyy) + 2 * mu * eyy, 2 * mu * exy
    return -(sym.diff(sxx, X) + sym.diff(sxy, Y)), -(sym.diff(sxy, X) + sym.diff(syy, Y))


@pytest.mark.parametrize("E", [sym.Integer(2), 1 + sym.sin(sym.pi * X) * sym.sin(2 * sym.pi * Y) / 2],
                         ids=["homogeneous", "smooth"])
def test_elasticity_second_order_on_manufactured_solution(E):
    nu = 0.3
    ux = sym.sin(sym.pi * X) * sym.sin(sym.pi * Y)
    uy = X * (1 - X) * sym.sin(2 * sym.pi * Y)
    fx, fy = elasticity_source(E, ux, uy, nu)
    errors = []
    for n in SIZES:
        uh = solve_elasticity(on_nodes(E, n), np.stack([on_nodes(fx, n), on_nodes(fy, n)]), nu)
        errors.append(error_norms(uh - np.stack([on_nodes(ux, n), on_nodes(uy, n)]), n))
    assert np.all(orders(errors) > 1.9), orders(errors)


def random_coefficient(n, seed=0):
    return np.exp(np.random.default_rng(seed).normal(size=(n, n)))


def test_operators_are_symmetric_positive_definite():
    A = darcy_operator(random_coefficient(7)).toarray()
    K, L = elasticity_operator(random_coefficient(7), nu=0.35)
    K = K.toarray()
    assert A.shape == (25, 25) and K.shape == (50, 50) and L.shape == (50, 98)
    for M in (A, K):
        np.testing.assert_allclose(M, M.T, rtol=0, atol=1e-12 * np.abs(M).max())
        assert np.linalg.eigvalsh(M).min() > 0


def dense_darcy(b, f):
    """Independent dense solve: node-by-node loop over the flux-form stencil, Dirichlet rows."""
    n = b.shape[0]
    A, rhs = np.zeros((n * n, n * n)), np.zeros(n * n)
    for i in range(n):
        for j in range(n):
            p = i * n + j
            if i in (0, n - 1) or j in (0, n - 1):
                A[p, p] = 1.0
                continue
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                face = 2 * b[i, j] * b[i + di, j + dj] / (b[i, j] + b[i + di, j + dj])
                A[p, p] += face * (n - 1) ** 2
                A[p, (i + di) * n + j + dj] -= face * (n - 1) ** 2
            rhs[p] = f[i, j]
    return np.linalg.solve(A, rhs).reshape(n, n)


def test_darcy_matches_independent_dense_solve_on_two_phase_field():
    rng = np.random.default_rng(1)
    b = np.where(rng.normal(size=(8, 8)) > 0, 12.0, 3.0)
    f = rng.normal(size=(8, 8))
    np.testing.assert_allclose(solve_darcy(b, f), dense_darcy(b, f), rtol=1e-10, atol=1e-13)


GAUSS = 0.5 + np.array([-1, 1]) / (2 * np.sqrt(3))  # 2-point Gauss on [0, 1], weights 1/2


def bilinear(w, i, j, s, t, h):
    """Value [2] and gradient [2, 2] (grad[c, k] = d w_c / d x_k) of the Q1 interpolant of a
    nodal field w [2, n, n] at local point (s, t) in [0, 1]^2 of cell (i, j)."""
    c = w[:, i:i + 2, j:j + 2]  # c[:, a, b] sits at node (i + a, j + b)
    value = (c[:, 0, 0] * (1 - s) * (1 - t) + c[:, 1, 0] * s * (1 - t)
             + c[:, 0, 1] * (1 - s) * t + c[:, 1, 1] * s * t)
    dx = ((c[:, 1, 0] - c[:, 0, 0]) * (1 - t) + (c[:, 1, 1] - c[:, 0, 1]) * t) / h
    dy = ((c[:, 0, 1] - c[:, 0, 0]) * (1 - s) + (c[:, 1, 1] - c[:, 1, 0]) * s) / h
    return value, np.stack([dx, dy], axis=1)


def q1_forms(E, u, v, f, nu):
    """Independent cell-by-cell integrals of the Q1 interpolants of nodal fields [2, n, n]:
    the strain-energy form a(u, v) = ∫ eps(u) : C(E_cell) : eps(v) and the load ∫ v . f."""
    n = E.shape[0]
    h = 1 / (n - 1)
    lam, mu = nu / ((1 + nu) * (1 - 2 * nu)), 1 / (2 * (1 + nu))
    energy = load = 0.0
    for i in range(n - 1):
        for j in range(n - 1):
            E_cell = E[i:i + 2, j:j + 2].mean()
            for s in GAUSS:
                for t in GAUSS:
                    (_, gu), (v_val, gv), (f_val, _) = (bilinear(w, i, j, s, t, h) for w in (u, v, f))
                    eu, ev = (gu + gu.T) / 2, (gv + gv.T) / 2
                    stress_work = lam * np.trace(eu) * np.trace(ev) + 2 * mu * np.sum(eu * ev)
                    energy += h * h / 4 * E_cell * stress_work
                    load += h * h / 4 * v_val @ f_val
    return energy, load


def test_elasticity_operator_matches_independent_q1_integrals():
    n, nu = 6, 0.3
    rng = np.random.default_rng(2)
    E = random_coefficient(n, seed=3)
    u, v = np.zeros((2, n, n)), np.zeros((2, n, n))
    u[:, 1:-1, 1:-1] = rng.normal(size=(2, n - 2, n - 2))
    v[:, 1:-1, 1:-1] = rng.normal(size=(2, n - 2, n - 2))
    f = rng.normal(size=(2, n, n))  # boundary values load the adjacent cells too
    K, L = elasticity_operator(E, nu)
    energy, load = q1_forms(E, u, v, f, nu)
    u_int, v_int = u[:, 1:-1, 1:-1].reshape(-1), v[:, 1:-1, 1:-1].reshape(-1)
    np.testing.assert_allclose(u_int @ (K @ v_int), energy, rtol=1e-12)
    np.testing.assert_allclose(v_int @ (L @ f.reshape(-1)), load, rtol=1e-12)


def test_solvers_satisfy_their_operators_and_batch():
    n = 9
    rng = np.random.default_rng(4)
    b, f = random_coefficient(n), rng.normal(size=(2, 3, n, n))
    u = solve_darcy(b, f)
    assert u.shape == f.shape and np.all(u[..., 0, :] == 0) and np.all(u[..., :, -1] == 0)
    A = darcy_operator(b)
    np.testing.assert_allclose(A @ u[1, 2, 1:-1, 1:-1].reshape(-1), f[1, 2, 1:-1, 1:-1].reshape(-1),
                               atol=1e-9)
    np.testing.assert_allclose(solve_darcy(b, f[1, 2]), u[1, 2], atol=1e-14)

    g = rng.normal(size=(3, 2, n, n))
    w = solve_elasticity(b, g, nu=0.25)
    K, L = elasticity_operator(b, nu=0.25)
    assert w.shape == g.shape and np.all(w[..., 0] == 0)
    np.testing.assert_allclose(K @ w[2, :, 1:-1, 1:-1].reshape(-1), L @ g[2].reshape(-1), atol=1e-10)
    np.testing.assert_allclose(solve_elasticity(b, g[2], nu=0.25), w[2], atol=1e-14)


def test_uniform_load_vector_is_the_cell_area():
    # consistent Q1 load of a unit body force: the integral of each interior hat function, h^2
    n = 6
    _, L = elasticity_operator(np.ones((n, n)))
    np.testing.assert_allclose(L @ np.ones(2 * n * n), np.full(2 * (n - 2) ** 2, (n - 1.0) ** -2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_in_torch_out(dtype):
    n = 7
    b = torch.as_tensor(random_coefficient(n))
    f = torch.randn(2, n, n, dtype=dtype, generator=torch.Generator().manual_seed(0))
    for solve, rhs in ((solve_darcy, f), (solve_elasticity, f)):
        u = solve(b, rhs)
        assert torch.is_tensor(u) and u.dtype == dtype and u.shape == rhs.shape
        np.testing.assert_allclose(u.numpy(), solve(b.numpy(), rhs.numpy().astype(np.float64)),
                                   rtol=1e-5, atol=1e-7)
    assert solve_darcy(b.numpy(), f.numpy()).dtype == f.numpy().dtype


GOOD = np.ones((5, 5))


@pytest.mark.parametrize("solve, coef, rhs, message", [
    (solve_darcy, np.where(np.eye(5), 0.0, 1.0), np.ones((5, 5)), "positive"),
    (solve_darcy, -GOOD, np.ones((5, 5)), "positive"),
    (solve_darcy, np.where(np.eye(5), np.nan, 1.0), np.ones((5, 5)), "non-finite"),
    (solve_darcy, GOOD, np.full((5, 5), np.inf), "non-finite"),
    (solve_darcy, GOOD, np.ones((4, 5, 6)), r"\[\.\.\., 5, 5\]"),
    (solve_darcy, np.ones((5, 6)), np.ones((5, 6)), "square"),
    (solve_darcy, np.ones((2, 2)), np.ones((2, 2)), "at least 3x3"),
    (solve_elasticity, np.where(np.eye(5), np.inf, 1.0), np.ones((2, 5, 5)), "non-finite"),
    (solve_elasticity, -GOOD, np.ones((2, 5, 5)), "positive"),
    (solve_elasticity, GOOD, np.ones((3, 5, 5)), r"\[\.\.\., 2, 5, 5\]"),
    (solve_elasticity, GOOD, np.full((2, 5, 5), np.nan), "non-finite"),
])
def test_bad_inputs_raise_clear_errors(solve, coef, rhs, message):
    with pytest.raises(ValueError, match=message):
        solve(coef, rhs)


def test_bad_poisson_ratio_raises():
    with pytest.raises(ValueError, match="Poisson ratio"):
        elasticity_operator(GOOD, nu=0.5)


def test_radial_kernel_quadrature_is_second_order():
    """u(x) = int_0^1 exp(-(x-y)^2 / (2 s^2)) dy in closed form: the trapezoidal rule's error
    falls as h^2, and the matrix is symmetric up to the end weights."""
    from scipy.special import erf
    from nips_plugin.data.solvers import radial_kernel_matrix, solve_radial_kernel
    s = 0.1
    kernel = lambda r: np.exp(-r**2 / (2 * s**2))  # noqa: E731
    errors = []
    for n in (21, 41, 81):
        x = np.linspace(0, 1, n)
        exact = s * np.sqrt(np.pi / 2) * (erf((1 - x) / (np.sqrt(2) * s)) + erf(x / (np.sqrt(2) * s)))
        errors.append(np.abs(solve_radial_kernel(kernel, np.ones(n)) - exact).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 1.9) & (orders < 2.1)), orders
    A = radial_kernel_matrix(kernel, 9)
    np.testing.assert_allclose(A[1:-1, 1:-1], A[1:-1, 1:-1].T)
    with pytest.raises(ValueError, match="at least 2 nodes"):
        radial_kernel_matrix(kernel, 1)
