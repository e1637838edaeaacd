"""Full-or-weak budget allocation: the math of the paper, as pure functions.

Paper: "Full or Weak annotations? An adaptive strategy for budget-constrained
annotation campaigns" (Gamazo Tejero et al.); sections and equations below are its.
§3:

* the utility u(C, S) of buying C image-label sets and S masks is modelled by
  an exact Gaussian process with the logarithmic mean of eq. (4) and the
  product of two RBF kernels of eq. (5), fitted with Adam (lr 0.1, §4.3);
* the surrogate is the expected improvement over m* (eq. 6);
* eq. (3) (max EI within the budget) and eq. (7) (cheapest strategy whose EI
  reaches 1/(T - t) of that maximum) are both solved on the Pareto front of
  (cost, EI) over the discrete strategy grid (§3.3).

Two fits of the same GP: ``fit_gp`` runs Adam through gpytorch's autograd (the
reference), ``fit_gp_analytic`` takes the same Adam steps from the same start
on the closed-form gradient of the log marginal likelihood, batched over
independent fits; tests check both give the same hyperparameters and decisions.

Two evaluations of the GP posterior over the grid are provided:
``posterior_brute`` asks gpytorch for every grid point (the reference), and
``posterior_grid`` uses the structure of eq. (5): the kernel is a product of
a C factor and an S factor, so the cross-covariance between the grid and the
samples is ``Kc[c, i] * Ks[s, i]``. The posterior mean is then one matrix
product, and the variance's quadratic form factorises through low-rank
factors of the two 1-D kernel blocks (numerical rank, float64, relative
tolerance 1e-11). Tests check both give the same Pareto front and the same
eq. (3) / eq. (7) solutions. With integer prices the front needs no sort:
one best EI per cost level.

Inputs are scaled to [0, 1] by ``scale`` (e.g. the pool size) before the GP
sees them: eq. (4)'s beta and eq. (5)'s length scales are then in units of
``scale`` (a reparametrisation, not a change of model), and Adam's lr 0.1
means the same thing for a pool of 100 or of 10 000 images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

import warnings

with warnings.catch_warnings():
    # gpytorch's linear_operator uses torch.jit.script at import, which this
    # torch deprecates with a FutureWarning printed on every CLI call.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    import gpytorch

DTYPE = torch.float64  # float32 changed the selected strategy in the prototype
RANK_TOL = 1e-11  # relative singular-value cut of the 1-D kernel blocks
_MAX_FACTOR_RANK = 1600  # rc * rs above this: evaluate the variance row by row instead


# -- the GP of eqs. (4) and (5) -------------------------------------------------

class LogMean(gpytorch.means.Mean):
    """Eq. (4): mu(C, S) = gamma_c log(beta_c C + 1) + gamma_s log(beta_s S + 1); beta > 0."""

    def __init__(self, batch_shape: torch.Size = torch.Size()):
        super().__init__()
        self.register_parameter("gamma", torch.nn.Parameter(torch.full((*batch_shape, 2), 0.2, dtype=DTYPE)))
        self.register_parameter("raw_beta", torch.nn.Parameter(torch.full((*batch_shape, 2), 10.0, dtype=DTYPE)))
        self.register_constraint("raw_beta", gpytorch.constraints.Positive())

    @property
    def beta(self) -> torch.Tensor:
        return self.raw_beta_constraint.transform(self.raw_beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, b = self.gamma.unsqueeze(-2), self.beta.unsqueeze(-2)
        return (g * torch.log1p(b * x)).sum(-1)


class AllocationGP(gpytorch.models.ExactGP):
    """Exact GP over scaled (C, S) with the mean of eq. (4) and the ARD RBF kernel of eq. (5)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, likelihood: gpytorch.likelihoods.GaussianLikelihood):
        super().__init__(x, y, likelihood)
        batch = x.shape[:-2]
        self.mean_module = LogMean(batch)
        # sigma^2 exp(-(C-C')^2 / 2 l_c^2) exp(-(S-S')^2 / 2 l_s^2): one RBF with a length scale per input.
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(ard_num_dims=2, batch_shape=batch), batch_shape=batch)
        self.covar_module.base_kernel.lengthscale = torch.full((*batch, 1, 2), 0.25, dtype=DTYPE)
        self.covar_module.outputscale = torch.full(batch, 0.01, dtype=DTYPE)
        self.to(DTYPE)

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


@dataclass
class GPFit:
    """A fitted GP (possibly a batch of them) and what the structured evaluation needs.

    ``model`` is the gpytorch model (reference fit) or None (analytic fit; ``gpytorch_model``
    builds one when the reference posterior is wanted)."""

    model: AllocationGP | None
    x: torch.Tensor  # (..., n, 2) scaled inputs
    y: torch.Tensor  # (..., n)
    scale: tuple[float, float]
    gamma: torch.Tensor  # (..., 2)
    beta: torch.Tensor  # (..., 2)
    lengthscale: torch.Tensor  # (..., 2)
    outputscale: torch.Tensor  # (...)
    noise: torch.Tensor  # (...)
    fit_s: float = 0.0
    final_loss: float = float("nan")
    solved: "_Solved | None" = None  # set by ``members``: the batch's Cholesky factors, solved at once
    raw: torch.Tensor | None = None  # (..., 8) unconstrained hyperparameters of an analytic fit (warm starts)
    steps: float = float("nan")  # mean optimiser steps per member (``fit_gp_warm``; ``iters`` for Adam)

    def params(self, index: int | None = None) -> dict[str, Any]:
        """Hyperparameters as plain floats (of batch member ``index``)."""
        pick = (lambda t: t) if index is None else (lambda t: t[index])
        return {"gamma_c": float(pick(self.gamma)[0]), "gamma_s": float(pick(self.gamma)[1]),
                "beta_c": float(pick(self.beta)[0]), "beta_s": float(pick(self.beta)[1]),
                "lengthscale_c": float(pick(self.lengthscale)[0]), "lengthscale_s": float(pick(self.lengthscale)[1]),
                "outputscale": float(pick(self.outputscale)), "noise": float(pick(self.noise))}

    def member(self, i: int, own_model: bool = False) -> "GPFit":
        """Batch member ``i`` as an unbatched fit (an index array ``i``: those members, as a batch). The structured
        evaluation needs only its hyperparameters; ``own_model`` also builds an unbatched gpytorch model
        with them (for ``posterior_brute``)."""
        one = GPFit(None, self.x[i], self.y[i], self.scale, self.gamma[i], self.beta[i], self.lengthscale[i],
                    self.outputscale[i], self.noise[i], self.fit_s, self.final_loss)
        if own_model:
            one.model = one.gpytorch_model()
        return one

    def members(self) -> list["GPFit"]:
        """Every batch member as an unbatched fit, with K's Cholesky factor and K^-1 (y - mu) (eqs. 4-5)
        computed for the whole batch in one go."""
        solved = _solve(self)
        out = [self.member(i) for i in range(len(self.y))]
        for i, one in enumerate(out):
            one.solved = _Solved(solved.chol[i], solved.alpha[i])
        return out

    def gpytorch_model(self) -> AllocationGP:
        """This (unbatched) fit's hyperparameters in an eval-mode gpytorch model (reference posterior)."""
        if self.model is not None and self.x.dim() == 2:
            return self.model
        likelihood = gpytorch.likelihoods.GaussianLikelihood().to(DTYPE)
        likelihood.noise = self.noise.reshape(1)
        model = AllocationGP(self.x, self.y, likelihood)
        with torch.no_grad():
            model.mean_module.gamma.copy_(self.gamma)
            model.mean_module.raw_beta.copy_(model.mean_module.raw_beta_constraint.inverse_transform(self.beta))
        model.covar_module.base_kernel.lengthscale = self.lengthscale.reshape(1, 2)
        model.covar_module.outputscale = self.outputscale
        model.eval()
        likelihood.eval()
        return model


def fit_gp(c: Any, s: Any, y: Any, scale: tuple[float, float], *, iters: int = 100, lr: float = 0.1) -> GPFit:
    """Fit the GP of eqs. (4)-(5) to utility samples by Adam on the exact marginal likelihood (§4.3: lr 0.1).

    The gpytorch reference: ``fit_gp_analytic`` takes the same Adam steps ten times faster.
    ``c``, ``s``, ``y`` are (n,) or, for a batch of independent GPs, (b, n).
    """
    t0 = time.perf_counter()
    x, y = _inputs(c, s, y, scale)
    batch = x.shape[:-2]
    likelihood = gpytorch.likelihoods.GaussianLikelihood(batch_shape=batch).to(DTYPE)
    likelihood.noise = torch.full((*batch, 1), 1e-3, dtype=DTYPE)
    model = AllocationGP(x, y, likelihood)
    model.train()
    likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # model.parameters() includes the likelihood's
    loss = torch.tensor(float("nan"))
    # Exact Cholesky solves at any size: above 800 points gpytorch would switch
    # to conjugate gradients and converge elsewhere (seen in the prototype).
    with gpytorch.settings.max_cholesky_size(10**6), gpytorch.settings.cholesky_jitter(double_value=1e-10):
        for _ in range(iters):
            opt.zero_grad()
            loss = -mll(model(x), y).sum()
            loss.backward()
            opt.step()
    model.eval()
    likelihood.eval()
    with torch.no_grad():
        return GPFit(model=model, x=x, y=y, scale=(float(scale[0]), float(scale[1])),
                     gamma=model.mean_module.gamma.detach().clone(), beta=model.mean_module.beta.detach().clone(),
                     lengthscale=model.covar_module.base_kernel.lengthscale.detach().reshape(*batch, 2).clone(),
                     outputscale=model.covar_module.outputscale.detach().clone(),
                     noise=likelihood.noise.detach().reshape(batch).clone(),
                     fit_s=time.perf_counter() - t0, final_loss=float(loss.detach()), steps=float(iters))


def _inputs(c: Any, s: Any, y: Any, scale: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled inputs (..., n, 2) and targets (..., n), float64 (module docstring: the scaling)."""
    c, s, y = (torch.as_tensor(np.asarray(a, np.float64), dtype=DTYPE) for a in (c, s, y))
    if not (c.shape == s.shape == y.shape) or c.shape[-1] < 1:
        raise ValueError(f"fit_gp: c, s, y must have the same non-empty shape, got {tuple(c.shape)}, {tuple(s.shape)}, {tuple(y.shape)}")
    return torch.stack([c / scale[0], s / scale[1]], -1), y


# -- the same fit by hand: analytic gradients of the marginal likelihood --------
#
# "Full or Weak annotations?", §3.3 and §4.3 (eqs. 4-5, Adam lr 0.1). fit_gp spends most of its time in gpytorch's autograd. The GP of eqs. (4)-(5)
# has eight hyperparameters and a closed-form gradient of its log marginal
# likelihood, so the same Adam run (same start, same steps, same update) can be
# taken on tensors directly, batched over independent fits.

# Unconstrained ("raw") parameters, as gpytorch stores them: gamma_c, gamma_s (eq. 4),
# raw beta_c, raw beta_s (eq. 4), raw l_c, raw l_s (eq. 5), raw sigma^2 (eq. 5), raw noise.
_GAMMA, _BETA, _ELL, _SIG2, _NOISE = slice(0, 2), slice(2, 4), slice(4, 6), 6, 7
# Eq. (5)'s noise term: the likelihood's GreaterThan(1e-4) constraint keeps its bound in a float32 buffer.
_NOISE_FLOOR = float(torch.tensor(1e-4, dtype=torch.float32))
_CACHE_ELEMENTS = 1 << 18  # float64 entries of one (b, n, n) block of eq. (5)'s K in a batched fit: 2 MiB


def _inv_softplus(v: torch.Tensor) -> torch.Tensor:
    return v + torch.log(-torch.expm1(-v))


def _raw_start() -> torch.Tensor:
    """fit_gp's starting point, bit for bit: AllocationGP sets l and sigma^2 of eq. (5) while
    its kernel is still float32, the noise after the likelihood is float64."""
    f32 = lambda v: float(_inv_softplus(torch.tensor(v, dtype=torch.float32)))  # noqa: E731
    noise = float(_inv_softplus(torch.tensor(1e-3, dtype=DTYPE) - _NOISE_FLOOR))
    return torch.tensor([0.2, 0.2, 10.0, 10.0, f32(0.25), f32(0.25), f32(0.01), noise], dtype=DTYPE)


def _softplus_grad(raw: torch.Tensor) -> torch.Tensor:
    """d softplus / d raw, as torch computes it (linear above 20)."""
    return torch.where(raw > 20.0, torch.ones_like(raw), torch.sigmoid(raw))


@dataclass
class _Samples:
    """One batch of fits' data: inputs, targets and the squared distances of eq. (5) (fixed during a fit)."""

    x: torch.Tensor  # (b, n, 2)
    y: torch.Tensor  # (b, n)
    dc: torch.Tensor  # (b, n, n): (C_i - C_j)^2
    ds: torch.Tensor  # (b, n, n): (S_i - S_j)^2

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor) -> "_Samples":
        d = x[:, :, None, :] - x[:, None, :, :]
        return cls(x, y, (d[..., 0] ** 2).contiguous(), (d[..., 1] ** 2).contiguous())


def _mll_grad(raw: torch.Tensor, data: _Samples, *, checked: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of gpytorch's loss, -log p(y) / n for the GP of eqs. (4)-(5), w.r.t. ``raw`` (b, 8); and the loss.

    With r = y - mu(X) (eq. 4), K = sigma^2 Kc * Ks + noise I (eq. 5) and alpha = K^-1 r:
    dL/dmu = -alpha / n and dL/dK = (K^-1 - alpha alpha^T) / 2n.
    ``checked``: the loss is +inf for members whose K is not positive definite (line searches reject them).
    """
    b, n = data.y.shape
    beta, ell = torch.nn.functional.softplus(raw[:, _BETA]), torch.nn.functional.softplus(raw[:, _ELL])
    sig2 = torch.nn.functional.softplus(raw[:, _SIG2])
    noise = torch.nn.functional.softplus(raw[:, _NOISE]) + _NOISE_FLOOR
    gamma = raw[:, _GAMMA]
    bx = beta[:, None, :] * data.x
    log_term = torch.log1p(bx)  # eq. (4), one column per input
    r = data.y - (gamma[:, None, :] * log_term).sum(-1)
    # Eq. (5): exp(-(C-C')^2 / 2 l_c^2) exp(-(S-S')^2 / 2 l_s^2); per-member factors made contiguous
    # (b, 1, 1) tensors, since broadcasting a strided one is several times slower.
    a = (-0.5 / ell**2).T.contiguous().view(2, b, 1, 1)
    kb = (data.dc * a[0]).add_(data.ds * a[1]).exp_()
    k = kb * sig2.view(b, 1, 1)
    k.diagonal(dim1=-2, dim2=-1).add_(noise[:, None])
    chol, info = torch.linalg.cholesky_ex(k)
    w = torch.cholesky_inverse(chol).mT.contiguous()  # K^-1 of eq. (5), symmetric; LAPACK leaves it column-major
    alpha = (w @ r.unsqueeze(-1)).squeeze(-1)
    loss = ((r * alpha).sum(-1) / 2 + torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)) / n \
        + 0.5 * math.log(2 * math.pi)
    w.sub_(alpha[:, :, None] * alpha[:, None, :])  # 2n dL/dK = K^-1 - alpha alpha^T (eqs. 4-5 likelihood)
    g_noise = torch.diagonal(w, dim1=-2, dim2=-1).sum(-1)
    p = w.mul_(kb).view(b, -1)  # (K^-1 - alpha alpha^T) * dK/dsigma^2, eq. (5)
    g = torch.empty_like(raw)
    g_mu = -alpha / n
    g[:, _GAMMA] = (g_mu[:, :, None] * log_term).sum(1)
    g[:, _BETA] = (g_mu[:, :, None] * gamma[:, None, :] * data.x / (1 + bx)).sum(1)
    h = 0.5 / n
    g[:, 4] = h * sig2 * torch.linalg.vecdot(p, data.dc.view(b, -1)) / ell[:, 0] ** 3
    g[:, 5] = h * sig2 * torch.linalg.vecdot(p, data.ds.view(b, -1)) / ell[:, 1] ** 3
    g[:, _SIG2] = h * p.sum(-1)
    g[:, _NOISE] = h * g_noise
    g[:, 2:] *= _softplus_grad(raw[:, 2:])  # through the positivity of beta (eq. 4), l, sigma^2, noise (eq. 5)
    if checked:
        loss = torch.where((info == 0) & torch.isfinite(loss) & torch.isfinite(g).all(-1), loss, math.inf)
    return g, loss


def _adam(raw: torch.Tensor, data: _Samples, iters: int, lr: float) -> torch.Tensor:
    """``iters`` steps of torch.optim.Adam's update (defaults, §4.3: lr 0.1) on ``raw``; returns the last loss."""
    m, v = torch.zeros_like(raw), torch.zeros_like(raw)
    b1, b2, eps = 0.9, 0.999, 1e-8
    loss = torch.full(raw.shape[:1], float("nan"), dtype=DTYPE)
    for t in range(1, iters + 1):
        g, loss = _mll_grad(raw, data)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        raw.addcdiv_(m, (v.sqrt() / math.sqrt(1 - b2**t)).add_(eps), value=-lr / (1 - b1**t))
    return loss


def _fit_blocks(c: Any, s: Any, y: Any, scale: tuple[float, float], start: torch.Tensor | None, block_elements: int,
                descend: Callable[[torch.Tensor, "_Samples"], tuple[torch.Tensor, Any]]) -> GPFit:
    """Independent fits of eqs. (4)-(5), one per member of ``c``, ``s``, ``y`` ((n,) or (b, n)), from ``start``
    (raw hyperparameters, (8,) or (b, 8); None: the cold start), ``block_elements`` // n² members at a time.
    ``descend(raw_block, samples)`` updates its block of raw hyperparameters in place and returns (loss, steps)."""
    t0 = time.perf_counter()
    x, y = _inputs(c, s, y, scale)
    batch = x.shape[:-2]
    xb, yb = x.reshape(-1, *x.shape[-2:]), y.reshape(-1, y.shape[-1])
    raw = (_raw_start() if start is None else torch.as_tensor(start, dtype=DTYPE)).reshape(-1, 8)
    raw = raw.expand(len(yb), 8).clone()
    loss, steps = torch.empty(len(yb), dtype=DTYPE), torch.empty(len(yb), dtype=DTYPE)
    block = max(1, block_elements // xb.shape[1] ** 2)
    with torch.no_grad():
        for i in range(0, len(yb), block):
            # raw[i : i + block] is a view: descend moves these members' hyperparameters in raw itself
            loss[i : i + block], steps[i : i + block] = descend(raw[i : i + block],
                                                                _Samples.of(xb[i : i + block], yb[i : i + block]))
    sp = torch.nn.functional.softplus
    shape = lambda z, *tail: z.reshape((*batch, *tail))  # noqa: E731
    return GPFit(model=None, x=x, y=y, scale=(float(scale[0]), float(scale[1])), gamma=shape(raw[:, _GAMMA], 2),
                 beta=shape(sp(raw[:, _BETA]), 2), lengthscale=shape(sp(raw[:, _ELL]), 2),
                 outputscale=shape(sp(raw[:, _SIG2])), noise=shape(sp(raw[:, _NOISE]) + _NOISE_FLOOR),
                 fit_s=time.perf_counter() - t0, final_loss=float(loss.sum()), raw=shape(raw, 8),
                 steps=float(steps.mean()))


def fit_gp_analytic(c: Any, s: Any, y: Any, scale: tuple[float, float], *, iters: int = 100,
                    lr: float = 0.1) -> GPFit:
    """``fit_gp`` without gpytorch: the same Adam run on the exact marginal likelihood of eqs. (4)-(5).

    Same start, same steps, same update: the hyperparameters agree with ``fit_gp``'s to rounding
    (tests), about ten times faster. ``c``, ``s``, ``y`` are (n,) or (b, n)."""
    # Blocks small enough that each (b, n, n) stays in a core's cache.
    return _fit_blocks(c, s, y, scale, None, _CACHE_ELEMENTS, lambda raw, data: (_adam(raw, data, iters, lr), iters))


# -- a replay-only schedule: warm-started L-BFGS to convergence ----------------
#
# "Full or Weak annotations?", Alg. 2 refits eqs. (4)-(5) every round to samples that only grow (Alg. 1 adds
# M per round). The exact schedule (``fit_gp_analytic``: 100 Adam steps from the same cold start, §4.3) is what
# a campaign's allocation step takes. ``fit_gp_warm`` instead starts each member from the hyperparameters of
# its previous round and runs L-BFGS until the loss stops moving: the same marginal likelihood, descended
# from ``start``, in a fraction of the steps. Not the same estimate: with 8-64 samples this likelihood often
# has no interior optimum (the noise falls to its floor, length scales and beta run off), so the exact
# schedule's 100 Adam steps are an early stop, and a fit run to convergence lands elsewhere. Replays and
# sweeps may choose it (``replay_gp(schedule="warm")``); benchmarks/perf_allocation.py measures how far its
# decisions and utilities move.

WARM_TOL = 1e-5  # relative change of a member's loss (-log p(y) / n) between accepted steps that ends its fit
WARM_GTOL = 1e-6  # or: largest |gradient| of the loss w.r.t. the raw hyperparameters below this
_HISTORY = 8  # L-BFGS curvature pairs kept per member
_MAX_HALVINGS = 30  # backtracking steps of one line search
_WARM_BLOCK_ELEMENTS = 1 << 20  # float64 entries of one (b, n, n) block of a warm fit (8 MiB)


def _first_step(g: torch.Tensor) -> torch.Tensor:
    """Per member, the scale of a steepest-descent step that moves no raw coordinate by more than 0.1 (Adam's lr, §4.3)."""
    return 0.1 / g.abs().amax(-1).clamp(min=1e-300)


def _lbfgs(raw: torch.Tensor, data: _Samples, max_iters: int, tol: float, gtol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched L-BFGS (Armijo backtracking) on the loss of eqs. (4)-(5) from ``raw`` (b, 8), in place; each member
    stops on its own (relative loss change <= ``tol`` or gradient <= ``gtol``) and is then left out of the
    batch. Returns (loss, steps) per member."""
    b = len(raw)
    g, f = _mll_grad(raw, data, checked=True)
    steps = torch.zeros(b, dtype=torch.int64)
    hs, hy = torch.zeros(_HISTORY, b, 8, dtype=DTYPE), torch.zeros(_HISTORY, b, 8, dtype=DTYPE)
    hrho = torch.zeros(_HISTORY, b, dtype=DTYPE)  # 1 / (s . y); 0 in unused slots, which then add nothing
    active = torch.isfinite(f) & (g.abs().amax(-1) > gtol)
    idx, sub = torch.arange(b), data
    for it in range(max_iters):
        if not bool(active[idx].all()):  # members left: the batch shrinks to the active ones
            idx = torch.nonzero(active).squeeze(-1)
            sub = _Samples(data.x[idx], data.y[idx], data.dc[idx], data.ds[idx])
        if len(idx) == 0:
            break
        x0, g0, f0 = raw[idx], g[idx], f[idx]
        S, Y, R = hs[:, idx], hy[:, idx], hrho[:, idx]
        # Two-loop recursion, newest pair first (slots hold pairs in ring order it - 1, it - 2, ...).
        q, a = g0.clone(), []
        order = [(it - 1 - j) % _HISTORY for j in range(min(it, _HISTORY))]
        for j in order:
            a.append(R[j] * torch.linalg.vecdot(S[j], q))
            q -= a[-1][:, None] * Y[j]
        if order:
            sy, yy = torch.linalg.vecdot(S[order[0]], Y[order[0]]), torch.linalg.vecdot(Y[order[0]], Y[order[0]])
            scale = torch.where((sy > 0) & (yy > 0), sy / yy.clamp(min=1e-300), 1.0)
        else:
            scale = _first_step(g0)
        q *= scale[:, None]
        for j, aj in zip(reversed(order), reversed(a)):
            q += S[j] * (aj - R[j] * torch.linalg.vecdot(Y[j], q))[:, None]
        d = q.neg_()
        slope = torch.linalg.vecdot(g0, d)
        bad = ~(slope < 0)  # not a descent direction: steepest descent, scaled as a first step
        if bool(bad.any()):
            d[bad] = -g0[bad] * _first_step(g0[bad])[:, None]
            slope = torch.linalg.vecdot(g0, d)
        step = torch.ones(len(idx), dtype=DTYPE)
        x1, g1, f1 = x0.clone(), g0.clone(), f0.clone()
        todo = torch.arange(len(idx))
        for _ in range(_MAX_HALVINGS):
            part = sub if len(todo) == len(idx) else _Samples(sub.x[todo], sub.y[todo], sub.dc[todo], sub.ds[todo])
            xt = x0[todo] + step[todo, None] * d[todo]
            gt, ft = _mll_grad(xt, part, checked=True)
            ok = ft <= f0[todo] + 1e-4 * step[todo] * slope[todo]  # Armijo
            if bool(ok.all()):
                x1[todo], g1[todo], f1[todo] = xt, gt, ft
                todo = todo[:0]
                break
            done = todo[ok]
            x1[done], g1[done], f1[done] = xt[ok], gt[ok], ft[ok]
            todo = todo[~ok]
            step[todo] *= 0.5
        moved = torch.ones(len(idx), dtype=torch.bool)
        moved[todo] = False  # no acceptable step: the member stays where it is and stops
        s_, y_ = x1 - x0, g1 - g0
        sy = torch.linalg.vecdot(s_, y_)
        slot = it % _HISTORY
        hs[slot, idx], hy[slot, idx] = s_, y_
        hrho[slot, idx] = torch.where(moved & (sy > 1e-300), 1.0 / sy.clamp(min=1e-300), 0.0)
        raw[idx], g[idx], f[idx] = x1, g1, f1
        steps[idx] += moved
        converged = ((f0 - f1).abs() <= tol * f1.abs().clamp(min=1.0)) | (g1.abs().amax(-1) <= gtol) | ~moved
        active[idx[converged]] = False
    return f, steps


def fit_gp_warm(c: Any, s: Any, y: Any, scale: tuple[float, float], *, start: torch.Tensor | None = None,
                max_iters: int = 100, tol: float = WARM_TOL, gtol: float = WARM_GTOL) -> GPFit:
    """The GP of eqs. (4)-(5) by L-BFGS on the exact marginal likelihood, from ``start`` (raw hyperparameters,
    (b, 8) or (8,), e.g. the previous round's ``GPFit.raw``) or the cold start, until each member's loss stops
    moving (relative change <= ``tol``, or gradient <= ``gtol``; at most ``max_iters`` steps).

    Not the exact schedule of the allocation step (``fit_gp_analytic``): a lower loss of the same likelihood
    reached from ``start``, for replays (``replay_gp(schedule="warm")``)."""
    # Larger blocks than Adam's: the many short iterations of a shrinking batch cost mostly per call.
    return _fit_blocks(c, s, y, scale, start, _WARM_BLOCK_ELEMENTS,
                       lambda raw, data: _lbfgs(raw, data, max_iters, tol, gtol))


# -- posterior over the strategy grid ------------------------------------------

def posterior_brute(fit: GPFit, c: Any, s: Any, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Latent posterior mean and variance at the points (c[k], s[k]) straight from gpytorch (reference path).

    Evaluated ``chunk`` points at a time: gpytorch may build the chunk's full
    test covariance before taking its diagonal."""
    c = torch.as_tensor(np.asarray(c, np.float64), dtype=DTYPE)
    s = torch.as_tensor(np.asarray(s, np.float64), dtype=DTYPE)
    x = torch.stack([c / fit.scale[0], s / fit.scale[1]], -1)
    model = fit.gpytorch_model()
    means, variances = [], []
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(10**6), gpytorch.settings.fast_pred_var(False), \
            gpytorch.settings.skip_posterior_variances(False), gpytorch.settings.cholesky_jitter(double_value=1e-10):
        for i in range(0, max(len(x), 1), chunk):
            post = model(x[i : i + chunk])
            means.append(post.mean.numpy().copy())
            variances.append(post.variance.numpy().copy())
    return np.concatenate(means), np.concatenate(variances)


def _per_member(t: torch.Tensor, dims: int) -> torch.Tensor:
    """A per-member hyperparameter (batch shape, or 0-dim for one fit) shaped to broadcast over ``dims`` more axes."""
    return t.reshape(*t.shape, *([1] * dims))


def _rbf_1d(a: torch.Tensor, b: torch.Tensor, ell: torch.Tensor) -> torch.Tensor:
    """Eq. (5)'s 1-D factor exp(-(a - b)^2 / 2 l^2), a (..., m) against b (..., n): (..., m, n), one l per member."""
    return torch.exp(-0.5 * ((a[..., :, None] - b[..., None, :]) / _per_member(ell, 2)) ** 2)


def _rbf_factors(grid: torch.Tensor, samples: torch.Tensor, ell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (5)'s 1-D factor exp(-(g - x_i)^2 / 2 l^2), grid × samples, as U @ V.T at its numerical rank (RANK_TOL).

    Samples repeat C and S values; the SVD runs on the distinct values, each column
    weighted by the square root of its count: same singular values and left vectors."""
    xu, inv, cnt = torch.unique(samples, return_inverse=True, return_counts=True)
    w = cnt.to(DTYPE).sqrt()
    u, sv, vh = torch.linalg.svd(_rbf_1d(grid, xu, ell) * w, full_matrices=False)
    r = max(1, int((sv > RANK_TOL * sv[0]).sum())) if sv.numel() and sv[0] > 0 else 1
    return u[:, :r] * sv[:r], (vh[:r].T / w[:, None])[inv]


def _padded_factors(grid: torch.Tensor, sizes: Any, samples: torch.Tensor,
                    ell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``_rbf_factors`` of every member (grid[k, :sizes[k]] against samples[k]), zero-padded to (b, g, r) and
    (b, n, r): padded grid rows and rank columns are zeros, which add nothing to eq. (5)'s quadratic form."""
    parts = [_rbf_factors(grid[k, :m], samples[k], ell[k]) for k, m in enumerate(sizes)]
    r = max(u.shape[1] for u, _ in parts)
    u, v = grid.new_zeros(len(parts), grid.shape[-1], r), grid.new_zeros(len(parts), samples.shape[-1], r)
    for k, (uk, vk) in enumerate(parts):
        u[k, : len(uk), : uk.shape[1]] = uk
        v[k, :, : vk.shape[1]] = vk
    return u, v


@dataclass
class _Solved:
    chol: torch.Tensor
    alpha: torch.Tensor


def _solve(fit: GPFit) -> _Solved:
    """Cholesky of K + noise I and alpha = (K + noise I)^-1 (y - mu(X)), eq. (4)/(5) hyperparameters
    (a batch of fits at once; ``members`` hands each its part)."""
    if fit.solved is not None:
        return fit.solved
    x, y, ell = fit.x, fit.y, fit.lengthscale[..., None, None, :]
    d = (x[..., :, None, :] - x[..., None, :, :]) / ell
    kc, ks = torch.exp(-0.5 * d[..., 0] ** 2), torch.exp(-0.5 * d[..., 1] ** 2)  # eq. (5)'s two factors
    k = fit.outputscale[..., None, None] * kc * ks + fit.noise[..., None, None] * torch.eye(y.shape[-1], dtype=DTYPE)
    chol = torch.linalg.cholesky(k)
    g, b = fit.gamma[..., None, :], fit.beta[..., None, :]
    resid = (y - (g * torch.log1p(b * x)).sum(-1)).unsqueeze(-1)  # y - mu(X), eq. (4)
    return _Solved(chol, torch.cholesky_solve(resid, chol).squeeze(-1))


def prior_mean(fit: GPFit, c: torch.Tensor, s: torch.Tensor, *, scaled: bool = False) -> torch.Tensor:
    """Eq. (4) at (c, s) (broadcasting; raw counts unless ``scaled``). For a batch of fits, c and s lead
    with the batch axes."""
    if not scaled:
        c, s = c / fit.scale[0], s / fit.scale[1]
    d = max(c.dim(), s.dim()) - (fit.gamma.dim() - 1)  # axes after the batch's
    (g_c, g_s), (b_c, b_s) = (_per_member(v, d) for v in fit.gamma.unbind(-1)), \
        (_per_member(v, d) for v in fit.beta.unbind(-1))
    return g_c * torch.log1p(b_c * c) + g_s * torch.log1p(b_s * s)


def posterior_grid(fit: GPFit, c_values: Any, s_values: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent posterior mean and variance on the grid c_values × s_values, shape (nc, ns), by the kernel's structure."""
    cg = torch.as_tensor(np.asarray(c_values, np.float64), dtype=DTYPE)
    sg = torch.as_tensor(np.asarray(s_values, np.float64), dtype=DTYPE)
    mean, var = _posterior_rows(fit, cg, sg)
    return mean.T, var.T


def _posterior_rows(fit: GPFit, cg: torch.Tensor, sg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and variance of eqs. (4)-(5) on sg × cg (raw counts), shape (ns, nc): one row per S."""
    mean, var = _posterior_batch(fit, _solve(fit), cg[None], [len(cg)], sg[None], [len(sg)])
    return mean[0], var[0]


def _posterior_batch(fit: GPFit, solved: _Solved, cg: torch.Tensor, nc: Any, sg: torch.Tensor,
                     ns: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and variance of eqs. (4)-(5) of a batch of fits (or of one, as a batch of one), each
    member k on its own grid sg[k, :ns[k]] × cg[k, :nc[k]] (raw counts; later entries are padding):
    shape (b, NS, NC), one row per S. One tensor program for the whole batch."""
    n = fit.y.shape[-1]
    x, ell = fit.x.reshape(-1, n, 2), fit.lengthscale.reshape(-1, 2)
    cg, sg = cg / fit.scale[0], sg / fit.scale[1]
    kc = _rbf_1d(cg, x[..., 0], ell[:, 0])  # (b, NC, n)
    ks = _rbf_1d(sg, x[..., 1], ell[:, 1])  # (b, NS, n)
    sig2 = _per_member(fit.outputscale, 2)
    mean = prior_mean(fit, cg[..., None, :], sg[..., :, None], scaled=True)  # eq. (4), (b, NS, NC)
    # Eq. (5): k(x*, X) alpha = sigma^2 sum_i Ks[s, i] Kc[c, i] alpha_i: one matrix product per member.
    mean.add_(sig2 * ((ks * solved.alpha[..., None, :]) @ kc.mT))
    uc, vc = _padded_factors(cg, nc, x[..., 0], ell[:, 0])
    us, vs = _padded_factors(sg, ns, x[..., 1], ell[:, 1])
    quad = _grid_quadratic(kc, ks, uc, vc, us, vs, solved.chol)
    var = quad.mul_(-sig2 * sig2).add_(sig2).clamp_(min=0.0)  # eq. (5): sigma^2 - k*^T K^-1 k*
    return mean, var


def _grid_quadratic(kc: torch.Tensor, ks: torch.Tensor, uc: torch.Tensor, vc: torch.Tensor, us: torch.Tensor,
                    vs: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """q[k, s, c] = (Kc[c] ⊙ Ks[s])^T (LL^T)^-1 (Kc[c] ⊙ Ks[s]) for every grid point of every member k
    (eq. 5's cross-covariance), from the factors Kc = Uc Vc^T, Ks = Us Vs^T (``_padded_factors``)."""
    rc, rs = uc.shape[-1], us.shape[-1]
    if rc * rs <= _MAX_FACTOR_RANK:
        # Kc[c,i] Ks[s,i] = sum_ab Uc[c,a] Us[s,b] W[i,(a,b)], W[i,(a,b)] = Vc[i,a] Vs[i,b].
        w = (vc[..., :, :, None] * vs[..., :, None, :]).flatten(-2)  # (b, n, rc rs)
        z = torch.linalg.solve_triangular(chol, w, upper=False)
        q4 = (z.mT @ z).unflatten(-1, (rc, rs)).unflatten(-3, (rc, rs))  # (b, rc, rs, rc, rs)
        y = torch.einsum("kabcd,ksb->kacsd", q4, us)
        r = torch.einsum("kacsd,ksd->kacs", y, us).flatten(-3, -2)  # (b, rc rc, NS)
        pc = (uc[..., :, :, None] * uc[..., :, None, :]).flatten(-2)  # (b, NC, rc rc)
        return r.mT @ pc.mT
    # Eq. (5)'s blocks of high numerical rank (very short length scales): exact, one C at a time.
    out = torch.empty(*ks.shape[:-1], kc.shape[-2], dtype=DTYPE)
    for i in range(kc.shape[-2]):
        v = torch.linalg.solve_triangular(chol, (kc[..., i, None, :] * ks).mT, upper=False)  # (b, n, NS)
        out[..., i] = (v * v).sum(-2)
    return out


def expected_improvement(mean: Any, var: Any, m_star: float) -> Any:
    """Eq. (6): E[max(u - m*, 0)] for u ~ N(mean, var) (torch or numpy in, same out).

    (u - m*) Phi(z) + sd phi(z), z = (u - m*) / sd, written as torch.distributions.Normal
    computes Phi and phi, with fewer temporaries."""
    is_np = isinstance(mean, np.ndarray)
    d = torch.as_tensor(mean, dtype=DTYPE) - m_star
    sd = torch.as_tensor(var, dtype=DTYPE).clamp(min=0.0).sqrt_()
    pos = sd > 0
    z = d / torch.where(pos, sd, 1.0)
    ei = torch.erf(z / math.sqrt(2)).add_(1).mul_(0.5).mul_(d)  # eq. (6): (u - m*) Phi(z)
    ei.add_(z.square_().neg_().div_(2).sub_(math.log(math.sqrt(2 * math.pi))).exp_().mul_(sd))  # eq. (6): + sd phi(z)
    ei = torch.where(pos, ei.clamp_(min=0.0), d.clamp_(min=0.0))
    return ei.numpy() if is_np else ei


# -- the strategy grid, Pareto front, eqs. (3) and (7) -------------------------

@dataclass(frozen=True)
class StrategyGrid:
    """Strategies (C, S) reachable from (c0, s0) by buying more, within the budget.

    C in [c0, c_max], S in [s0, s_max], C + S <= total_max (an image gets a
    label set or a mask, not both), alpha_c (C - c0) + alpha_s (S - s0) <= budget_left.
    """

    c0: int
    s0: int
    c_max: int
    s_max: int
    alpha_c: float
    alpha_s: float
    budget_left: float
    total_max: int | None = None

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """S values with at least one feasible C, and the largest feasible C of each."""
        s = np.arange(self.s0, self.s_max + 1)
        hi = np.floor((self.budget_left - self.alpha_s * (s - self.s0)) / self.alpha_c + 1e-9).astype(np.int64) + self.c0
        hi = np.minimum(hi, self.c_max)
        if self.total_max is not None:
            hi = np.minimum(hi, self.total_max - s)
        keep = hi >= self.c0
        return s[keep], hi[keep]

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Every feasible (C, S), row by row (S ascending, then C ascending)."""
        s, hi = self.rows()
        counts = hi - self.c0 + 1
        ss = np.repeat(s, counts)
        start = np.repeat(np.cumsum(counts) - counts, counts)
        cc = self.c0 + np.arange(counts.sum()) - start
        return cc, ss

    def cost(self, c: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Cost of buying up to (c, s) from (c0, s0), eq. (1)."""
        return self.alpha_c * (c - self.c0) + self.alpha_s * (s - self.s0)


def pareto_front(cost: np.ndarray, ei: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated strategies, cost ascending (§3.3).

    A strategy is dominated when another has a smaller cost and a larger or
    equal EI; among equal costs only the best EI (first index on ties) stays.
    Along the front cost and EI both strictly increase.
    """
    cost, ei = np.asarray(cost), np.asarray(ei)
    if cost.size == 0:
        return np.zeros(0, np.int64)
    level = _integer_levels(cost)
    return _front_by_sort(cost, ei) if level is None else _front_by_level(level, ei)


def _integer_levels(cost: np.ndarray) -> np.ndarray | None:
    """cost - min(cost) as indices when every cost is an integer over a range not much larger than the set
    (integer prices, eq. (1)), else None."""
    lo, hi = float(cost.min()), float(cost.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo > 4 * cost.size + 1024:
        return None
    level = cost - lo
    if not np.array_equal(level, np.rint(level)):
        return None
    return level.astype(np.int64)


def _front_by_sort(cost: np.ndarray, ei: np.ndarray) -> np.ndarray:
    """§3.3's front by one sort: cost ascending, then EI descending, then index."""
    order = np.lexsort((np.arange(cost.size), -ei, cost))
    e = ei[order]
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], e[:-1]]))
    return order[e > best_before]


def _front_by_level(level: np.ndarray, ei: np.ndarray) -> np.ndarray:
    """§3.3's front without sorting, costs being integer levels: each level's best EI (first index on
    ties) is on the front when it beats every cheaper level's. Same result as ``_front_by_sort``."""
    best = np.full(int(level.max()) + 1, -np.inf)
    np.maximum.at(best, level, ei)
    tie = np.flatnonzero(ei == best[level])
    first = np.full(len(best), level.size, np.int64)
    np.minimum.at(first, level[tie], tie)
    before = np.maximum.accumulate(np.concatenate([[-np.inf], best[:-1]]))
    return first[best > before]


@dataclass(frozen=True)
class Solution:
    """Eq. (3) and eq. (7) on the Pareto front."""

    c3: int  # eq. (3): max EI within the budget
    s3: int
    ei_max: float
    c7: int  # eq. (7): cheapest strategy with EI >= ei_max / (T - t)
    s7: int
    ei7: float
    cost7: float
    front_size: int


def solve_on_front(c: np.ndarray, s: np.ndarray, cost: np.ndarray, ei: np.ndarray, T: int, t: int) -> Solution:
    """Solve eqs. (3) and (7) from every feasible strategy's cost and EI (linear in the front, §3.3)."""
    if not 0 <= t < T:
        raise ValueError(f"eq. (7) needs 0 <= t < T, got t={t}, T={T}")
    front = pareto_front(cost, ei)
    best = front[-1]  # EI increases along the front: the last point solves eq. (3)
    threshold = ei[best] / (T - t)
    pick = front[np.argmax(ei[front] >= threshold)]  # the first (cheapest) front point over the threshold
    return Solution(int(c[best]), int(s[best]), float(ei[best]), int(c[pick]), int(s[pick]), float(ei[pick]),
                    float(cost[pick]), len(front))


def solve_brute(c: np.ndarray, s: np.ndarray, cost: np.ndarray, ei: np.ndarray, T: int, t: int) -> Solution:
    """Eqs. (3) and (7) by direct search over all feasible strategies (reference for tests)."""
    top = ei.max()
    best_idx = np.flatnonzero(ei == top)
    best = best_idx[np.lexsort((best_idx, cost[best_idx]))[0]]  # ties: cheapest, then first
    ok = np.flatnonzero(ei >= ei[best] / (T - t))
    cheapest = ok[cost[ok] == cost[ok].min()]
    pick = cheapest[np.lexsort((cheapest, -ei[cheapest]))[0]]
    return Solution(int(c[best]), int(s[best]), float(ei[best]), int(c[pick]), int(s[pick]), float(ei[pick]),
                    float(cost[pick]), -1)


@dataclass
class Decision:
    """One allocation step: the eq. (7) delta and what led to it."""

    delta_c: int
    delta_s: int
    solution: Solution
    m_star: float
    gp: dict[str, float] = field(default_factory=dict)
    grid_points: int = 0
    fit_s: float = 0.0
    ei_s: float = 0.0

    def diagnostics(self) -> dict[str, Any]:
        sol = self.solution
        return {"delta_c": self.delta_c, "delta_s": self.delta_s, "eq3": [sol.c3, sol.s3], "ei_max": sol.ei_max,
                "eq7": [sol.c7, sol.s7], "ei7": sol.ei7, "front_size": sol.front_size, "m_star": self.m_star,
                "grid_points": self.grid_points, "gp": self.gp, "fit_s": round(self.fit_s, 4), "ei_s": round(self.ei_s, 4)}


def grid_ei(fit: GPFit, grid: StrategyGrid, m_star: float, *, brute: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, S, EI) of every feasible strategy, structured (default) or by gpytorch's posterior (``brute``)."""
    if brute:
        c, s = grid.points()
        mean, var = posterior_brute(fit, c, s)
        return c, s, expected_improvement(mean, var, m_star)
    s_rows, hi = grid.rows()
    if len(s_rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    c_values = np.arange(grid.c0, hi.max() + 1)  # the feasible set's bounding rectangle
    mean, var = _posterior_rows(fit, torch.from_numpy(c_values.astype(np.float64)), torch.from_numpy(s_rows.astype(np.float64)))
    feasible = torch.from_numpy(c_values[None, :] <= hi[:, None])
    ei = expected_improvement(mean[feasible], var[feasible], m_star).numpy()  # eq. (6), row by row
    cc, ss = grid.points()
    return cc, ss, ei


def allocation_step(c: Any, s: Any, y: Any, m_star: float, grid: StrategyGrid, T: int, t: int, *,
                    scale: tuple[float, float], iters: int = 100, lr: float = 0.1, brute: bool = False,
                    gp: str = "analytic") -> Decision:
    """Alg. 2 lines 6-7: fit the GP to the utility samples, then (ΔC, ΔS) from eq. (7).

    ``gp``: "analytic" (``fit_gp_analytic``) or "gpytorch" (``fit_gp``, the reference); same fit."""
    return decide(fit_with(gp, c, s, y, scale, iters=iters, lr=lr), m_star, grid, T, t, brute=brute)


GP_FITS = ("analytic", "gpytorch")


def fit_with(gp: str, c: Any, s: Any, y: Any, scale: tuple[float, float], *, iters: int = 100,
             lr: float = 0.1) -> GPFit:
    """The GP of eqs. (4)-(5) fitted by ``fit_gp_analytic`` ("analytic") or ``fit_gp`` ("gpytorch")."""
    if gp not in GP_FITS:
        raise ValueError(f"gp must be one of {GP_FITS}, got {gp!r}")
    return (fit_gp_analytic if gp == "analytic" else fit_gp)(c, s, y, scale, iters=iters, lr=lr)


def decide(fit: GPFit, m_star: float, grid: StrategyGrid, T: int, t: int, *, brute: bool = False) -> Decision:
    """EI over the grid, Pareto front, eqs. (3) and (7) for an already fitted GP."""
    t0 = time.perf_counter()
    cc, ss, ei = grid_ei(fit, grid, m_star, brute=brute)
    if len(cc) == 0:
        raise ValueError("allocation: no feasible strategy (the grid is empty)")
    sol = solve_on_front(cc, ss, grid.cost(cc, ss), ei, T, t)
    return Decision(sol.c7 - grid.c0, sol.s7 - grid.s0, sol, float(m_star), fit.params(), len(cc), fit.fit_s,
                    time.perf_counter() - t0)


def decide_batch(fit: GPFit, m_star: Any, grids: Any, T: int, t: int, *,
                 max_points: int = 1 << 20) -> list[Decision]:
    """``decide`` for every member k of a batched fit on its own ``grids[k]`` against ``m_star[k]``.

    "Full or Weak annotations?", §3.3: the structured posterior of eqs. (4)-(5) and the EI of eq. (6) of
    many members at once, as one tensor program over a common grid rectangle (members padded, about
    ``max_points`` grid points per pass); the Pareto front and eqs. (3)/(7) per member, as ``decide``.
    Same decisions as ``decide`` on each member (tests)."""
    t0 = time.perf_counter()
    grids = list(grids)
    m_star = np.asarray(m_star, np.float64).reshape(len(grids))
    solved = _solve(fit)
    rows = [g.rows() for g in grids]
    if any(len(s) == 0 for s, _ in rows):
        raise ValueError("allocation: no feasible strategy (the grid is empty)")
    ns = np.array([len(s) for s, _ in rows])
    nc = np.array([int(hi.max()) - g.c0 + 1 for g, (_, hi) in zip(grids, rows)])
    eis: list[np.ndarray] = [np.zeros(0)] * len(grids)
    order = np.argsort(ns * nc, kind="stable")  # members of similar grid sizes pass together: little padding
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop + 1 - start) * ns[order[stop]] * nc[order[stop]] <= max_points:
            stop += 1
        part = order[start:stop]
        big_s, big_c = int(ns[part].max()), int(nc[part].max())
        c0 = np.array([grids[k].c0 for k in part], np.float64)
        sg = np.empty((len(part), big_s))
        hi = np.full((len(part), big_s), -1.0)  # each row's largest feasible C - c0; -1: a padding row
        for j, k in enumerate(part):
            s_rows, top = rows[k]
            sg[j, : len(s_rows)], sg[j, len(s_rows) :] = s_rows, s_rows[-1]
            hi[j, : len(s_rows)] = top - c0[j]
        feasible = torch.from_numpy(np.arange(big_c)[None, None, :] <= hi[:, :, None])  # (b, NS, NC)
        idx = torch.from_numpy(part)
        mean, var = _posterior_batch(fit.member(idx), _Solved(solved.chol[idx], solved.alpha[idx]),
                                     torch.from_numpy(c0[:, None] + np.arange(big_c)), nc[part], torch.from_numpy(sg),
                                     ns[part])
        counts = feasible.sum((1, 2)).numpy()
        m = torch.from_numpy(np.repeat(m_star[part], counts))
        ei = expected_improvement(mean[feasible], var[feasible], m).numpy()  # eq. (6) at every feasible point
        for k, e in zip(part, np.split(ei, np.cumsum(counts)[:-1])):
            eis[k] = e
        start = stop
    out = []
    for k, (g, ei) in enumerate(zip(grids, eis)):
        cc, ss = g.points()  # row by row, as the feasible mask: S ascending, then C
        sol = solve_on_front(cc, ss, g.cost(cc, ss), ei, T, t)
        out.append(Decision(sol.c7 - g.c0, sol.s7 - g.s0, sol, float(m_star[k]), fit.params(k), len(cc), fit.fit_s))
    ei_s = (time.perf_counter() - t0) / len(grids)
    for d in out:
        d.ei_s = ei_s
    return out


def log_surface(c: Any, s: Any, *, a_c: float = 0.08, b_c: float = 0.05, a_s: float = 0.12, b_s: float = 0.3,
                base: float = 0.1) -> np.ndarray:
    """A known logarithmic utility surface (tests, synthetic replays): base + a_c log(b_c C + 1) + a_s log(b_s S + 1)."""
    return base + a_c * np.log1p(b_c * np.asarray(c, float)) + a_s * np.log1p(b_s * np.asarray(s, float))


__all__ = ["LogMean", "AllocationGP", "GPFit", "fit_gp", "fit_gp_analytic", "fit_gp_warm", "posterior_brute", "posterior_grid", "prior_mean",
           "expected_improvement", "StrategyGrid", "pareto_front", "Solution", "solve_on_front", "solve_brute",
           "Decision", "grid_ei", "allocation_step", "decide", "decide_batch", "log_surface", "fit_with", "GP_FITS"]
