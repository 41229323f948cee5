"""Exact batched Euclidean projection onto a small polyhedron, in pure torch.

SafeDiffuser solves one tiny QP per planned state at every denoising step,
``min ||z - p||^2  s.t.  A z >= c`` with a handful of constraints (one per barrier). The official
code uses qpth's batched interior-point solver, but qpth pins ``numpy<2`` and cannot be installed
beside this project; an iterative solver would also only be approximately feasible. With few
constraints the problem is solved exactly by enumerating active sets: for every subset ``S`` of at
most ``min(m, n)`` constraints, the projection onto ``{A_S z = c_S}`` is

    z_S = p + A_S^T lam,   (A_S A_S^T) lam = c_S - A_S p,

and ``z_S`` is the optimum iff ``lam >= 0`` and ``A z_S >= c`` (the KKT conditions of a strictly
convex QP). With one constraint this is the closed form ``z = p + max(0, c - a.p) / |a|^2 a``.
All subsets of one size are solved at once for the whole batch, laid out batch-last so that every
operation runs over contiguous batch vectors (Python loops only over the few subsets' sizes);
autograd differentiates through the selected candidate. Cost: ``sum_k C(m, k)`` (at most
``2^m``) candidates per point, so keep ``m`` small (<= 6).
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

import torch
from torch import Tensor

# Slack, in units of the dtype's epsilon times the problem's scale, for "feasible" and
# "lam >= 0" under rounding.
ROUNDING_SLACK = 1e3


@cache
def _subsets(m: int, size: int) -> tuple[tuple[int, ...], ...]:
    return tuple(combinations(range(m), size))


def _solve_gram(gram: Tensor, rhs: Tensor) -> Tensor:
    """``gram^-1 rhs`` for symmetric PSD ``gram [N, k, k, B]`` and ``rhs [N, k, B]``.

    Cramer's rule for k <= 2 (LAPACK on tiny batched matrices is slow), Cholesky beyond. A ridge
    of a few epsilons keeps a singular Gram matrix (dependent or zero rows) solvable; a zero row
    then has no say in ``z``.
    """
    k = gram.shape[1]
    trace = gram.diagonal(dim1=1, dim2=2).sum(-1)  # [N, B]
    ridge = torch.finfo(gram.dtype).eps * (trace + 1.0)
    if k == 1:
        return rhs / (gram[:, 0] + ridge.unsqueeze(1))
    if k == 2:
        a, b, d = gram[:, 0, 0] + ridge, gram[:, 0, 1], gram[:, 1, 1] + ridge
        lam = torch.stack([d * rhs[:, 0] - b * rhs[:, 1], a * rhs[:, 1] - b * rhs[:, 0]], 1)
        return lam / (a * d - b * b).unsqueeze(1)
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    batched = gram.permute(0, 3, 1, 2) + ridge[..., None, None] * eye  # [N, B, k, k]
    chol, _ = torch.linalg.cholesky_ex(batched)
    lam = torch.cholesky_solve(rhs.permute(0, 2, 1).unsqueeze(-1), chol)
    return lam.squeeze(-1).permute(0, 2, 1)


def _candidates(p: Tensor, A: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Every active-set candidate ``z [N, n, B]`` and whether its multipliers are >= 0
    ``[N, B]``, from batch-last ``p [n, B]``, ``A [m, n, B]``, ``c [m, B]``; the empty set
    (``z = p``) first."""
    m, n, _ = A.shape
    gram = (A.unsqueeze(1) * A.unsqueeze(0)).sum(2)  # [m, m, B]
    residual = c - (A * p).sum(1)  # [m, B]: c - A p
    slack = ROUNDING_SLACK * torch.finfo(p.dtype).eps
    zs, signs = [p.unsqueeze(0)], [torch.ones_like(c[:1], dtype=torch.bool)]
    for size in range(1, min(m, n) + 1):
        idx = torch.tensor(_subsets(m, size), device=p.device)  # [N_k, size]
        lam = _solve_gram(gram[idx.unsqueeze(-1), idx.unsqueeze(-2)], residual[idx])
        zs.append(p + (A[idx] * lam.unsqueeze(2)).sum(1))
        tolerance = slack * (1.0 + lam.abs().amax(1, keepdim=True))
        signs.append((lam >= -tolerance).all(1))
    return torch.cat(zs), torch.cat(signs)


def _first_minimum(z: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
    """Per batch element, the candidate of ``z [N, n, B]`` with the smallest ``key [N, B]`` (the
    first on ties) and that key; a running minimum over the few candidates, which beats a strided
    ``argmin`` over them."""
    best_z, best_key = z[0], key[0]
    for z_j, key_j in zip(z[1:], key[1:], strict=True):
        better = key_j < best_key
        best_z, best_key = torch.where(better, z_j, best_z), torch.where(better, key_j, best_key)
    return best_z, best_key


def project_polyhedron(p: Tensor, A: Tensor, c: Tensor) -> Tensor:
    """The point of ``{z : A z >= c}`` closest to ``p``, for each problem of a batch.

    ``p [B, n]``, ``A [B, m, n]``, ``c [B, m]`` -> ``z [B, n]``. Among the KKT-valid candidates
    (see the module docstring) the one closest to ``p`` is returned, which settles ties between
    degenerate active sets; if rounding leaves none valid (or the set is empty, e.g. a zero row
    with ``c > 0``), the candidate with the smallest worst violation.
    """
    if A.shape[1] == 0:
        return p
    p_t, A_t, c_t = p.T, A.permute(1, 2, 0), c.T  # batch last
    z, sign_ok = _candidates(p_t, A_t, c_t)  # [N, n, B], [N, B]
    violation = (c_t - (A_t * z.unsqueeze(1)).sum(2)).amax(1).nan_to_num(nan=torch.inf)
    row_norm = A_t.square().sum(1).sqrt().amax(0)  # [B]
    scale = 1.0 + c_t.abs().amax(0) + row_norm * z.square().sum(1).sqrt()  # [N, B]
    valid = sign_ok & (violation <= ROUNDING_SLACK * torch.finfo(p.dtype).eps * scale)
    distance = torch.where(valid, (z - p_t).square().sum(1), torch.inf)  # [N, B]
    closest, best_distance = _first_minimum(z, distance)
    least_violating, _ = _first_minimum(z, violation)
    return torch.where(best_distance < torch.inf, closest, least_violating).T
