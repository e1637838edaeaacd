"""Yes/no class-presence queries chosen by linear programming
(paper: binary-user-feedback, "Active learning for image segmentation with
binary user feedback").

Per round the strategy poses B binary queries "is class j in image i?",
at most C_max per image, over the images without a full mask:

* ``binary_rr``  random images, random classes (the paper's RR baseline);
* ``binary_ee``  images by entropy, then their highest-entropy classes (EE);
* ``binary_lp``  the paper's method: confidence G (eq. 1–2), redundancy R
  (eq. 3), the LP relaxation of eq. (8) (closed form where a dual
  certificate proves it optimal, else HiGHS), then rounding
  ("the B highest entries in M ... observing the constraints");
* ``binary_ilp`` the same problem solved exactly as a MIP (for comparison).

Where the relaxation is loose (stated in the README too): with v_i ≤ ½ every
pair constraint v_i + v_j ≤ 1 + 2 z_ij holds with z_ij = 0, so at the LP
optimum the redundancy term usually vanishes (M = ½ on the 2B cheapest
entries). Rounding "the B largest entries" then ties many entries at ½, and
the tie-break (here: lower confidence first, then a seeded shuffle) decides
the batch; the rounded batch can be far from the integer optimum, which
``binary_ilp`` reports.

Solving the literal LP (N² pair variables) is slow at paper scale (N =
1200: 1.46 M columns). The fast solver first takes the LP restricted to
v ≤ ½, which needs no pair rows and has a closed form (½ on the 2B cheapest
allowed entries, at most 2·C_max per image), and checks a dual certificate,
a sum per image, that it is the optimum of the full LP (``_restricted`` and
``_certified``); that settles the usual case without a solver. Otherwise,
because R ≥ 0 and z_ij appears only in its own pair constraint (optimum
z_ij = max(0, (v_i + v_j − 1) / 2)), HiGHS adds pair constraints lazily
(solve, add the violated ones, re-solve), with z_ij merged with z_ji (R is
symmetric). Every HiGHS model is rescaled first (``_scaling``): G's picked
entries can be ~1e-8 after the min–max map, below HiGHS's absolute 1e-7
tolerances, and unscaled solves stopped at ~4× the optimum. All reach the
literal LP's optimum; tests compare them on small instances.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from typing import Annotated

import highspy
import numpy as np
from pydantic import Field

from alharness.contract import UNKNOWN, ClassPresence, Query, ScoreBatch, Strategy, StrategyContext
from alharness.errors import ConfigError
from alharness.registry import register_strategy

_INF = highspy.kHighsInf


# -- eq. (1)-(3) -------------------------------------------------------------

def presence_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """p_ij: mean predicted probability of class j over the pixels of image i. (N, C)."""
    return probabilities.mean(axis=(2, 3))


def confidence_matrix(p: np.ndarray, alpha: float = 1.0, eps: float = 1e-6) -> np.ndarray:
    """G (as an N×C array): eq. (2) G = α / H_ij with H the binary entropy of eq. (1),
    min–max mapped into [0, 1] as the paper maps G and R."""
    p = np.clip(p, eps, 1 - eps)
    h = -p * np.log(p) - (1 - p) * np.log(1 - p)
    g = alpha / np.maximum(h, eps)
    if g.size == 0:  # every pair already asked: nothing to map
        return g
    lo, hi = g.min(), g.max()
    return (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)


def redundancy_matrix(features: np.ndarray) -> np.ndarray:
    """R: eq. (3) cosine similarity of image features, mapped from [-1, 1] into [0, 1]
    (non-negative, as the paper's LP argument needs)."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return np.clip((f @ f.T + 1.0) / 2.0, 0.0, 1.0)


# -- the LP / MIP of eq. (8) ---------------------------------------------------

@dataclass
class Solution:
    M: np.ndarray           # (N, C) values in [0, 1]
    v: np.ndarray           # (N,)
    objective: float        # of the solved problem (relaxed or integer)
    seconds: float
    rounds: int = 1         # HiGHS solves (lazy constraint generation); 0: closed form
    mip_gap: float | None = None
    certified: bool = False  # the v ≤ ½ optimum, proven optimal by the dual certificate


def _highs(time_limit: float | None = None) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    # Dual simplex: interior point and PDLP were 20-60x slower on this model (measured in the prototype).
    h.setOptionValue("solver", "simplex")
    h.setOptionValue("simplex_strategy", 1)
    h.setOptionValue("random_seed", 0)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    return h


def _base_model(G: np.ndarray, allowed: np.ndarray, B: int, c_max: int, integer: bool) -> highspy.HighsLp:
    """Columns: M (N*C, row-major) then v (N). Rows: Σ M = B; Σ_j M_ij ≤ C_max; M_ij − v_i ≤ 0."""
    n, c = G.shape
    nm = n * c
    lp = highspy.HighsLp()
    lp.num_col_ = nm + n
    lp.col_cost_ = np.concatenate([G.ravel(), np.zeros(n)])
    lp.col_lower_ = np.zeros(nm + n)
    lp.col_upper_ = np.concatenate([allowed.ravel().astype(float), np.ones(n)])
    m_idx = np.arange(nm, dtype=np.int32)
    v_of = (m_idx // c + nm).astype(np.int32)
    index = [m_idx]                                       # budget row
    value = [np.ones(nm)]
    index.append(m_idx)                                   # C_max rows (one per image)
    value.append(np.ones(nm))
    pairs = np.stack([m_idx, v_of], axis=1).ravel()       # M_ij - v_i <= 0
    index.append(pairs)
    value.append(np.tile([1.0, -1.0], nm))
    lens = np.concatenate([[nm], np.full(n, c), np.full(nm, 2)])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int32)
    lp.num_row_ = 1 + n + nm
    lp.row_lower_ = np.concatenate([[B], np.full(n, -_INF), np.full(nm, -_INF)])
    lp.row_upper_ = np.concatenate([[B], np.full(n, float(c_max)), np.zeros(nm)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = nm + n
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.a_matrix_.start_ = np.concatenate([starts, [lens.sum()]]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate(index).astype(np.int32)
    lp.a_matrix_.value_ = np.concatenate(value)
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * (nm + n)
    return lp


def _add_pairs(h: highspy.Highs, pairs: np.ndarray, R: np.ndarray, lam: float, v_offset: int, integer: bool) -> None:
    """Add z columns and rows v_i + v_j − 2 z ≤ 1 for pairs (i ≤ j); z_ij merged with z_ji."""
    k = len(pairs)
    if k == 0:
        return
    i, j = pairs[:, 0], pairs[:, 1]
    diag = i == j
    cost = lam * np.where(diag, R[i, i], R[i, j] + R[j, i])
    first = h.getNumCol()
    h.addCols(k, cost, np.zeros(k), np.ones(k), 0, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
    if integer:
        h.changeColsIntegrality(k, np.arange(first, first + k, dtype=np.int32),
                                np.array([highspy.HighsVarType.kInteger] * k))
    z = np.arange(first, first + k)
    # Off-diagonal: v_i + v_j − 2 z_ij ≤ 1; diagonal: 2 v_i − 2 z_ii ≤ 1. Written as
    # three entries per row, the diagonal's second v entry with coefficient 0.
    idx = np.stack([i + v_offset, np.where(diag, i + v_offset, j + v_offset), z], axis=1)
    val = np.stack([np.where(diag, 2.0, 1.0), np.where(diag, 0.0, 1.0), np.full(k, -2.0)], axis=1)
    keep = val != 0
    lens = keep.sum(1)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int32)
    h.addRows(k, np.full(k, -_INF), np.ones(k), int(lens.sum()), starts, idx[keep].astype(np.int32), val[keep])


def _violated(v: np.ndarray, known: set, tol: float = 1e-9) -> np.ndarray:
    """Pairs (i ≤ j) with v_i + v_j > 1 that have no constraint yet."""
    cand = np.flatnonzero(v > tol)
    if len(cand) == 0:
        return np.zeros((0, 2), np.int64)
    a, b = np.triu_indices(len(cand))
    hit = v[cand[a]] + v[cand[b]] > 1 + tol
    pairs = np.stack([cand[a[hit]], cand[b[hit]]], axis=1)
    if known:
        pairs = pairs[[tuple(p) not in known for p in pairs.tolist()]]
    return pairs


# -- the restricted LP (v ≤ ½) in closed form, and its certificate -------------

def _restricted(G: np.ndarray, allowed: np.ndarray, B: int, c_max: int):
    """Optimum of the LP relaxation of eq. (8) ("Active learning for image
    segmentation with binary user feedback") restricted to v ≤ ½: (rows, cols)
    of the 2B entries set to ½, or None where v ≤ ½ cannot place B.

    With v ≤ ½ every pair row v_i + v_j ≤ 1 + 2 z_ij holds at z = 0, which
    leaves min Σ G M over 0 ≤ M_ij ≤ ½ (allowed only), Σ_j M_ij ≤ C_max,
    Σ M = B: in halves, a partition matroid, so greedy is optimal: each image's
    2·C_max cheapest allowed entries, then the 2B cheapest of those (ties by
    flat index)."""
    n, c = G.shape
    cols = np.argsort(np.where(allowed, G, np.inf), axis=1, kind="stable")[:, : min(2 * c_max, c)]
    ok = np.take_along_axis(allowed, cols, axis=1)
    if ok.sum() < 2 * B:
        return None
    rows = np.broadcast_to(np.arange(n)[:, None], cols.shape)[ok]
    cols = cols[ok]
    pick = np.argsort(G[rows, cols], kind="stable")[: 2 * B]
    return rows[pick], cols[pick]


def _certified(G: np.ndarray, r_diag: np.ndarray, lam: float, rows: np.ndarray, cols: np.ndarray, c_max: int) -> bool:
    """Whether the v ≤ ½ optimum (rows, cols at ½) is optimal for the full LP
    relaxation of eq. (8) ("Active learning for image segmentation with binary
    user feedback").

    Price the budget row at t and image i's C_max row at a_i ≥ 0, and drop
    the off-diagonal z (their costs λ(R_ij + R_ji) ≥ 0, so this only lowers
    the bound). Image i then contributes min over v ∈ [0, 1] of
    −v·σ_i + λ R_ii (v − ½)⁺ (the diagonal row 2 v_i − 2 z_ii ≤ 1), with
    σ_i = Σ_j max(0, t − a_i − G_ij) over its allowed j; the minimum sits at
    v = ½ iff σ_i ≤ λ R_ii, and the bound then equals ½ Σ G over the picked
    entries, the restricted optimum, which is feasible for the full LP. Each
    σ_i is smallest at t = the largest G picked and, for an image with
    2·C_max picked (its C_max row tight), a_i = t − its largest G picked;
    then only picked entries count."""
    g = G[rows, cols]
    if g.size == 0:
        return True
    n = len(r_diag)
    top = np.full(n, -np.inf)
    np.maximum.at(top, rows, g)
    level = np.where(np.bincount(rows, minlength=n) == 2 * c_max, top, g.max())
    sigma = np.bincount(rows, weights=level[rows] - g, minlength=n)
    bound = lam * r_diag
    return bool((sigma <= bound + 1e-12 * np.abs(bound)).all())


def _closed_form(G, R, allowed, B, c_max, lam) -> Solution | None:
    """The certified v ≤ ½ optimum, or None (then HiGHS decides)."""
    picked = _restricted(G, allowed, B, c_max)
    if picked is None or not _certified(G, np.diag(R), lam, *picked, c_max):
        return None
    n, c = G.shape
    M = np.zeros((n, c))
    M[picked] = 0.5
    return Solution(M=M, v=M.max(axis=1) if c else np.zeros(n), objective=0.5 * float(G[picked].sum()),
                    seconds=0.0, rounds=0, certified=True)


def _scaling(G: np.ndarray, allowed: np.ndarray, B: int, pair_cost: float) -> tuple[float, float]:
    """(shift, scale): HiGHS solves with cost (G − shift) / scale and λ / scale.

    After the min–max map of eq. (2) the entries the LP picks can be ~1e-8,
    below HiGHS's absolute 1e-7 optimality tolerances (unscaled solves stopped
    at ~4× the optimum). Shift to the smallest allowed G (exact: Σ M = B) and
    divide by the spread up to the 2B-th smallest, so that the choice between
    the cheap entries is O(1); but not below 1e-7 of the largest cost
    (``pair_cost`` is the largest z cost), as HiGHS failed ("Solve error") on
    cost ranges of 2e9."""
    g = G[allowed]
    if g.size == 0:
        return 0.0, 1.0
    lo = float(g.min())
    k = min(max(2 * B, 1), g.size) - 1
    scale = max(float(np.partition(g, k)[k]) - lo, 1e-7 * max(float(g.max()) - lo, pair_cost))
    return lo, scale if scale > 0 else 1.0


# -- HiGHS: the literal model, lazy pair rows, the MIP -------------------------

def _highs_certified(h: highspy.Highs, n: int, c: int, lam: float, r_diag: np.ndarray) -> Solution | None:
    """The v ≤ ½ LP solved by HiGHS, certified from its duals (the path before
    ``_closed_form``, kept for comparison): optimal for eq. (8) when each bound's
    multiplier μ_i is at most λ R_ii (the diagonal pair row with dual μ_i / 2
    reproduces the bound, all other pair rows get dual 0)."""
    v_off = n * c
    v_cols = np.arange(v_off, v_off + n, dtype=np.int32)
    h.changeColsBounds(n, v_cols, np.zeros(n), np.full(n, 0.5))
    h.run()
    if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
        sol = h.getSolution()
        mu = -np.array(sol.col_dual)[v_off: v_off + n]
        if (mu <= lam * r_diag + 1e-9).all():
            M = np.array(sol.col_value)[:v_off].reshape(n, c)
            return Solution(M=M, v=M.max(axis=1), objective=float(h.getInfo().objective_function_value),
                            seconds=0.0, rounds=1, certified=True)
    h.changeColsBounds(n, v_cols, np.zeros(n), np.ones(n))
    return None


def _highs_solve(G, R, allowed, B, c_max, lam, integer: bool, time_limit: float | None, lazy: bool,
                 certify: bool) -> Solution:
    """Eq. (8) by HiGHS on the model as given (rescaling is the caller's)."""
    n, c = G.shape
    h = _highs(time_limit)
    h.passModel(_base_model(G, allowed, B, c_max, integer))
    v_off = n * c
    known: set = set()
    if not lazy:  # the literal model: a pair constraint for every (i, j), i ≤ j
        allp = np.array([(a, b) for a in range(n) for b in range(a, n)], np.int64).reshape(-1, 2)
        _add_pairs(h, allp, R, lam, v_off, integer)
    elif certify:
        sol = _highs_certified(h, n, c, lam, np.diag(R))
        if sol is not None:
            return sol
    rounds = 0
    while True:
        rounds += 1
        h.run()
        status = h.getModelStatus()
        if status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit):
            raise RuntimeError(f"HiGHS: {h.modelStatusToString(status)}")
        x = np.array(h.getSolution().col_value)
        # v has no cost of its own until its pairs are constrained, so the
        # solver may leave it anywhere above max_j M_ij; the smallest value is
        # as good and is the one the full problem wants (it minimises z).
        v = x[: n * c].reshape(n, c).max(axis=1) if n * c else np.zeros(n)
        if not lazy:
            break
        new = _violated(v, known)
        if len(new) == 0 or status == highspy.HighsModelStatus.kTimeLimit:
            break
        known.update(map(tuple, new))
        _add_pairs(h, new, R, lam, v_off, integer)
    info = h.getInfo()
    return Solution(M=x[: n * c].reshape(n, c), v=v, objective=float(info.objective_function_value),
                    seconds=0.0, rounds=rounds, mip_gap=float(info.mip_gap) if integer else None)


def _solve(G, R, allowed, B, c_max, lam, integer: bool, time_limit: float | None, lazy: bool,
           closed_form: bool = True, rescale: bool = True) -> Solution:
    n, c = G.shape
    # At most C_max per image, and only allowed entries: more would be infeasible.
    B = int(min(B, np.minimum(allowed.sum(axis=1), c_max).sum()))
    t0 = time.perf_counter()
    if lazy and R.size and R.min() < 0:
        raise ValueError("the lazy and closed-form solvers need R >= 0 (eq. 3 mapped into [0, 1])")
    sol = _closed_form(G, R, allowed, B, c_max, lam) if lazy and closed_form and not integer else None
    if sol is None:
        pair_cost = 2 * lam * float(np.abs(R).max()) if R.size else 0.0
        shift, scale = _scaling(G, allowed, B, pair_cost) if rescale else (0.0, 1.0)
        Gs = np.where(allowed, (G - shift) / scale, 0.0) if rescale else G
        sol = _highs_solve(Gs, R, allowed, B, c_max, lam / scale, integer, time_limit, lazy,
                           certify=lazy and not closed_form and not integer)
        # Back to G's units: Σ G M = scale · Σ Gs M + shift · Σ M on the allowed entries.
        sol.objective = scale * sol.objective + shift * float(sol.M.sum())
    sol.seconds = time.perf_counter() - t0
    return sol


def solve_lp(G, R, allowed, B, c_max=5, lam=1.0, *, lazy=True, closed_form=True, rescale=True) -> Solution:
    """LP relaxation of eq. (8). ``lazy=False`` builds the literal model (HiGHS).
    ``closed_form=False`` and ``rescale=False`` give the earlier HiGHS-only,
    unscaled path (for comparison). The fast paths need R ≥ 0."""
    return _solve(G, R, allowed, B, c_max, lam, integer=False, time_limit=None, lazy=lazy,
                  closed_form=closed_form, rescale=rescale)


def solve_ilp(G, R, allowed, B, c_max=5, lam=1.0, *, time_limit=10.0) -> Solution:
    """Eq. (8) as a MIP (HiGHS branch and bound, rescaled), pair constraints generated lazily."""
    return _solve(G, R, allowed, B, c_max, lam, integer=True, time_limit=time_limit, lazy=True)


def integer_objective(M: np.ndarray, G: np.ndarray, R: np.ndarray, lam: float) -> float:
    """Eq. (4) objective of a 0/1 selection: Tr(MG) + λ vᵀRv."""
    M = np.asarray(M) > 0.5
    v = M.any(axis=1).astype(float)
    return float((G * M).sum() + lam * v @ R @ v)


def round_selection(M: np.ndarray, B: int, c_max: int, allowed: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """The paper's rounding: the B highest entries of M become 1, respecting
    C_max per image and never an entry that is not allowed. Ties (frequent at
    ½) are broken by ``tie_break`` (lower first)."""
    n, c = M.shape
    order = np.lexsort((tie_break.ravel(), -np.round(M.ravel(), 9)))
    order = order[allowed.ravel()[order]]
    # Greedy down this order takes an entry iff fewer than C_max of its image
    # came before it: its rank within its image, computed without the loop.
    img = order // c if c else order
    by_img = np.argsort(img, kind="stable")
    sorted_img = img[by_img]
    rank = np.empty(len(order), np.int64)
    rank[by_img] = np.arange(len(order)) - np.searchsorted(sorted_img, sorted_img)
    out = np.zeros((n, c), bool)
    out.flat[order[rank < c_max][:B]] = True
    return out


# -- strategies ------------------------------------------------------------------

class _BinaryBase(Strategy):
    """Shared parameters and candidate set for yes/no strategies."""

    def __init__(self, queries_per_round: Annotated[int, Field(ge=1)] = 200, c_max: Annotated[int, Field(ge=1)] = 5,
                 query_background: bool = False):
        if queries_per_round < 1 or c_max < 1:
            raise ConfigError(f"{type(self).__name__}: queries_per_round and c_max must be >= 1")
        self.queries_per_round = queries_per_round
        self.c_max = c_max
        self.query_background = query_background
        self._diag: dict = {}

    def _allowed(self, ctx: StrategyContext) -> np.ndarray:
        """(N, C): unlabelled images × classes not yet answered."""
        allowed = (ctx.labels.image_labels == UNKNOWN) & ~ctx.labels.has_full_mask[:, None]
        if not self.query_background:
            allowed[:, 0] = False
        return allowed

    def _budget(self, ctx: StrategyContext, allowed: np.ndarray) -> int:
        if not allowed.any():
            return 0
        i, j = np.argwhere(allowed)[0]
        price = ctx.quote(ClassPresence(int(i), int(j)))
        affordable = int(ctx.budget_left_this_round // price + 1e-9) if price > 0 else self.queries_per_round
        return int(min(self.queries_per_round, affordable, allowed.sum()))

    def _queries(self, sel: np.ndarray) -> list[Query]:
        return [ClassPresence(int(i), int(j)) for i, j in np.argwhere(sel)]

    def diagnostics(self) -> dict:
        return dict(self._diag)


@register_strategy("binary_rr")
class BinaryRR(_BinaryBase):
    """Yes/no queries: random images, random classes (binary-feedback RR baseline)."""

    def propose(self, ctx: StrategyContext) -> list[Query]:
        allowed = self._allowed(ctx)
        b = self._budget(ctx, allowed)
        sel = np.zeros_like(allowed)
        for i in ctx.rng.permutation(np.flatnonzero(allowed.any(axis=1))):
            if sel.sum() >= b:
                break
            classes = ctx.rng.permutation(np.flatnonzero(allowed[i]))[: min(self.c_max, b - int(sel.sum()))]
            sel[i, classes] = True
        return self._queries(sel)


@register_strategy("binary_ee")
class BinaryEE(_BinaryBase):
    """Yes/no queries: images by mean pixel entropy, then their highest presence-entropy classes (EE baseline)."""

    needs = frozenset({"probabilities"})

    def score(self, batch: ScoreBatch) -> dict:
        """Streams: p_ij and the mean pixel entropy of each image."""
        from alharness.toolkit import pixel_entropy

        return {"presence": presence_probabilities(batch.probabilities),
                "entropy": pixel_entropy(batch.probabilities).mean(axis=(1, 2))}

    def propose(self, ctx: StrategyContext) -> list[Query]:
        allowed = self._allowed(ctx)
        b = self._budget(ctx, allowed)
        scores = self.pool_scores(ctx)
        p = np.clip(scores["presence"], 1e-6, 1 - 1e-6)
        h = -p * np.log(p) - (1 - p) * np.log(1 - p)
        image_score = scores["entropy"]
        images = ctx.rng.permutation(np.flatnonzero(allowed.any(axis=1)))
        images = images[np.argsort(-image_score[images], kind="stable")]
        sel = np.zeros_like(allowed)
        for i in images:
            if sel.sum() >= b:
                break
            cand = np.flatnonzero(allowed[i])
            cand = cand[np.argsort(-h[i, cand], kind="stable")][: min(self.c_max, b - int(sel.sum()))]
            sel[i, cand] = True
        return self._queries(sel)


class _Optimised(_BinaryBase):
    needs = frozenset({"probabilities", "features"})

    def __init__(self, queries_per_round: Annotated[int, Field(ge=1)] = 200, c_max: Annotated[int, Field(ge=1)] = 5,
                 query_background: bool = False, alpha: Annotated[float, Field(gt=0)] = 1.0,
                 lam: Annotated[float, Field(ge=0)] = 1.0):
        super().__init__(queries_per_round, c_max, query_background)
        if alpha <= 0 or lam < 0:
            raise ConfigError(f"{type(self).__name__}: alpha must be > 0 and lam >= 0")
        self.alpha = alpha
        self.lam = lam

    def score(self, batch: ScoreBatch) -> dict:
        """Streams: p_ij and the feature vector of each image (all eq. 2-3 read)."""
        return {"presence": presence_probabilities(batch.probabilities), "features": batch.features}

    def _problem(self, ctx: StrategyContext):
        """(rows, allowed, G, R, B) over the unlabelled set U, or None when nothing is left to ask or pay for."""
        allowed_all = self._allowed(ctx)
        b = self._budget(ctx, allowed_all)
        if b == 0:  # e.g. every pair already asked: U is empty, and so would G and R be
            return None
        rows = np.flatnonzero(allowed_all.any(axis=1))  # the unlabelled set U
        scores = self.pool_scores(ctx)
        G = confidence_matrix(scores["presence"][rows], self.alpha)
        R = redundancy_matrix(scores["features"][rows])
        return rows, allowed_all[rows], G, R, b

    def _emit(self, rows: np.ndarray, sel: np.ndarray) -> list[Query]:
        return [ClassPresence(int(rows[i]), int(j)) for i, j in np.argwhere(sel)]


@register_strategy("binary_lp")
class BinaryLP(_Optimised):
    """Yes/no queries by the LP relaxation of eq. (8) (closed form or HiGHS) and rounding: the binary-feedback paper's method."""

    def propose(self, ctx: StrategyContext) -> list[Query]:
        problem = self._problem(ctx)
        if problem is None:
            return []
        rows, allowed, G, R, b = problem
        sol = solve_lp(G, R, allowed, b, self.c_max, self.lam)
        # Ties: lower confidence (more uncertain) first, then a seeded shuffle.
        tie = G + 1e-9 * ctx.rng.random(G.shape)
        sel = round_selection(sol.M, b, self.c_max, allowed, tie)
        self._diag = {"lp_objective": sol.objective, "lp_seconds": sol.seconds, "lp_solves": sol.rounds,
                      "rounded_objective": integer_objective(sel, G, R, self.lam),
                      "fractional_entries": int(((sol.M > 1e-6) & (sol.M < 1 - 1e-6)).sum())}
        return self._emit(rows, sel)


@register_strategy("binary_ilp")
class BinaryILP(_Optimised):
    """Yes/no queries by eq. (8) solved exactly as a MIP (HiGHS, time limit); reports the gap reached."""

    def __init__(self, queries_per_round: Annotated[int, Field(ge=1)] = 200, c_max: Annotated[int, Field(ge=1)] = 5,
                 query_background: bool = False, alpha: Annotated[float, Field(gt=0)] = 1.0,
                 lam: Annotated[float, Field(ge=0)] = 1.0, time_limit: Annotated[float, Field(gt=0)] = 10.0):
        super().__init__(queries_per_round, c_max, query_background, alpha, lam)
        self.time_limit = time_limit

    def propose(self, ctx: StrategyContext) -> list[Query]:
        problem = self._problem(ctx)
        if problem is None:
            return []
        rows, allowed, G, R, b = problem
        sol = solve_ilp(G, R, allowed, b, self.c_max, self.lam, time_limit=self.time_limit)
        sel = round_selection(sol.M, b, self.c_max, allowed, G)  # integral already; rounding only guards tolerances
        if sel.sum() < b:
            # No integer solution within the time limit: fall back to the rounded LP, and say so.
            lp = solve_lp(G, R, allowed, b, self.c_max, self.lam)
            sel = round_selection(lp.M, b, self.c_max, allowed, G + 1e-9 * ctx.rng.random(G.shape))
            sol.mip_gap = None
        self._diag = {"mip_objective": sol.objective, "mip_gap": sol.mip_gap, "mip_seconds": sol.seconds,
                      "integer_objective": integer_objective(sel, G, R, self.lam), "solves": sol.rounds}
        return self._emit(rows, sel)
