"""The exact batched projection onto a polyhedron against SciPy's SLSQP, feasibility, identity
on feasible points, the one-constraint closed form, infeasible rows and gradients."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from algorithms.common.qp import project_polyhedron


def random_feasible(rng: np.random.Generator, batch: int, m: int, n: int):
    """Problems whose set contains a known point (some constraints tight there), and points p
    that usually violate some constraints."""
    A = rng.normal(size=(batch, m, n))
    inside = rng.normal(size=(batch, n))
    gap = rng.uniform(0.0, 1.0, size=(batch, m)) * (rng.random((batch, m)) < 0.5)
    c = np.einsum("bmn,bn->bm", A, inside) - gap
    p = 2.0 * rng.normal(size=(batch, n))
    return p, A, c


def slsqp(p: np.ndarray, A: np.ndarray, c: np.ndarray) -> np.ndarray:
    result = minimize(
        lambda z: np.sum((z - p) ** 2),
        p,
        jac=lambda z: 2 * (z - p),
        constraints=[{"type": "ineq", "fun": lambda z: A @ z - c, "jac": lambda z: A}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    assert result.success, result.message
    return result.x


@pytest.mark.parametrize("m,n", list(itertools.product(range(1, 5), range(2, 5))))
def test_matches_slsqp_and_is_feasible(m, n):
    rng = np.random.default_rng(10 * m + n)
    p, A, c = random_feasible(rng, 25, m, n)  # 12 shapes x 25 = 300 problems
    z = project_polyhedron(*(torch.from_numpy(a) for a in (p, A, c))).numpy()
    reference = np.stack([slsqp(*args) for args in zip(p, A, c, strict=True)])
    np.testing.assert_allclose(z, reference, atol=1e-6)
    assert (np.einsum("bmn,bn->bm", A, z) - c).min() >= -1e-10


def test_feasible_points_are_returned_unchanged():
    rng = np.random.default_rng(0)
    A = torch.from_numpy(rng.normal(size=(200, 3, 2))).float()
    p = torch.from_numpy(rng.normal(size=(200, 2))).float()
    c = (A @ p.unsqueeze(-1)).squeeze(-1) - torch.rand(200, 3)  # p strictly inside
    assert torch.equal(project_polyhedron(p, A, c), p)


def test_one_constraint_is_the_closed_form():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(500, 3)))
    p = torch.from_numpy(rng.normal(size=(500, 3)))
    c = torch.from_numpy(rng.normal(size=500))
    step = (c - (a * p).sum(-1)).clamp_min(0) / a.square().sum(-1)
    expected = p + step.unsqueeze(-1) * a
    torch.testing.assert_close(project_polyhedron(p, a.unsqueeze(1), c.unsqueeze(1)), expected)


def test_degenerate_and_infeasible_rows_give_finite_answers():
    p = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    # duplicated constraint x >= 1 (singular Gram); a zero row with c > 0 (no feasible point)
    A = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    c = torch.tensor([[1.0, 1.0], [1.0, 2.0]])
    z = project_polyhedron(p, A, c)
    torch.testing.assert_close(z[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(z[1], torch.tensor([0.0, 2.0]))  # the satisfiable row holds


def test_gradients_flow_through_the_active_set():
    # one strictly active constraint (lam > 0) and one strictly inactive: a smooth neighbourhood
    p = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64, requires_grad=True)
    A = torch.tensor([[[1.0, 0.5, 0.0], [-0.2, 1.0, 0.3]]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([[1.0, -3.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(project_polyhedron, (p, A, c))
    # and for a point that is already feasible the map is the identity
    inside = torch.tensor([[5.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(project_polyhedron, (inside, A, c))
