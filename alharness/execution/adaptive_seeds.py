"""Enough seeds, chosen adaptively: ``[benchmark] seeds = { min = 3, max = 20, until = "settled" }``.

Seeds run in *waves*. Wave 0 runs seeds ``0 .. min-1`` of every campaign.
After each wave, per group (dataset, pricing, budget: the leaderboard's
grouping), the strategies still in contention are compared on the ranking
metric (``rank_by``: each campaign's final mIoU, or its AUC) by a paired
percentile bootstrap over their common seeds (95 %, as
``alharness.results.stats.paired_bootstrap``; no interval is trusted below
``seeds_to_decide`` common seeds: ``stats.MIN_SEEDS``, and at least the
seeds the report's exact test needs to call a pair among the group's
strategies, so that a group never stops where its verdicts cannot be called):

- *successive elimination*: a strategy whose paired interval against the
  group's best (highest mean) lies wholly below 0 is out of contention and
  gets no more seeds (its results so far stay in the store and the report);
- the group is *settled* when at most one strategy is left in contention,
  or every pair still in contention has an interval that excludes 0;
- otherwise every strategy in contention gets the next ``per_wave`` seeds,
  up to ``max`` seeds in all.

The plan is a pure function of the finished campaigns: :func:`plan` replays
the waves from wave 0 on what the store holds, so rerunning on the same
results directory continues where a run stopped, and a settled benchmark
adds nothing. Caveat: the intervals are looked at after every wave and are
not corrected for it (nor for the number of pairs), so "settled" is a
stopping rule, not a significance claim; the report's verdicts are computed
separately on the final seeds.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Callable

import numpy as np

from alharness.campaign.spec import CampaignSpec
from alharness.results.stats import MIN_SEEDS, _interval, min_seeds_to_call

RANK_BY = ("final_miou", "auc")
LEVEL = 0.95
N_BOOT = 4000
#: written next to the results: group -> seeds per strategy, waves and why it stopped
SEEDING_FILE = "seeding.json"


@dataclass(frozen=True)
class SeedPolicy:
    """``seeds = { min, max, until, rank_by, per_wave }`` of a benchmark file."""

    min: int
    max: int
    until: str = "settled"
    rank_by: str = "final_miou"
    per_wave: int = 1


GroupKey = tuple[str, str, str, float]  # dataset, dataset params (JSON), pricing, budget


def group_key(spec: CampaignSpec) -> GroupKey:
    """The leaderboard's grouping of a campaign: dataset (with its parameters), pricing and budget."""
    return (spec.dataset, json.dumps(spec.dataset_params, sort_keys=True), spec.cost_label, spec.budget)


def group_name(key: GroupKey) -> str:
    dataset, params, pricing, budget = key
    return f"{dataset} {params} | {pricing} | budget {budget:g}"


def paired_interval(a: dict[int, float], b: dict[int, float], seed_text: str) -> tuple[int, float, float]:
    """(common seeds, lo, hi): percentile bootstrap interval of mean(a − b) over
    the common seeds, with a generator seeded by the pair and its seeds (so a
    decision never depends on what else was compared)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return 0, -np.inf, np.inf
    diff = np.array([a[s] - b[s] for s in seeds])
    rng = np.random.default_rng(zlib.crc32(f"{seed_text}|{seeds}".encode()))
    return len(seeds), *_interval(diff, rng, N_BOOT, LEVEL)  # the report's percentile bootstrap


def decide(values: dict[str, dict[int, float]], active: set[str], min_seeds: int) -> tuple[set[str], bool]:
    """One wave's decision for one group: (strategies still in contention, settled?).

    ``values``: strategy → seed → ranking metric. Successive elimination
    against the best mean among ``active``, then settled when one is left or
    every remaining pair's interval excludes 0 (intervals need ``min_seeds``
    common seeds)."""
    if len(active) <= 1:
        return set(active), True
    means = {s: float(np.mean(list(values[s].values()))) if values.get(s) else -np.inf for s in active}
    best = max(sorted(active), key=lambda s: means[s])
    keep = {best}
    for s in sorted(active - {best}):
        n, lo, _ = paired_interval(values.get(best, {}), values.get(s, {}), f"{best}|{s}")
        if not (n >= min_seeds and lo > 0):
            keep.add(s)
    if len(keep) == 1:
        return keep, True
    for a, b in combinations(sorted(keep), 2):
        n, lo, hi = paired_interval(values.get(a, {}), values.get(b, {}), f"{a}|{b}")
        if n < min_seeds or lo <= 0 <= hi:
            return keep, False
    return keep, True


def seeds_to_decide(n_strategies: int) -> int:
    """Common seeds a pair needs before the waves may eliminate or settle on it:
    ``MIN_SEEDS``, and at least as many as the report's exact test needs to call
    any of the group's pairs (``stats.min_seeds_to_call`` over its k = n(n−1)/2
    pairs). Stopping earlier would leave verdicts that cannot be called."""
    return max(MIN_SEEDS, min_seeds_to_call(max(1, n_strategies * (n_strategies - 1) // 2)))


@dataclass
class _Group:
    key: GroupKey
    specs: dict[str, dict[int, CampaignSpec]]  # strategy label -> seed -> spec
    active: set[str] = field(default_factory=set)
    seeds: dict[str, list[int]] = field(default_factory=dict)  # seeds given to each strategy
    wave_of: dict[tuple[str, int], int] = field(default_factory=dict)
    reason: str = ""
    waves: int = 0


@dataclass
class Plan:
    """The next wave to run (empty: finished) and the state the replay reached."""

    wave: int
    todo: list[CampaignSpec]
    waves: dict[str, int]  # campaign id -> wave, for every campaign given so far
    groups: list[_Group]

    def seeding(self) -> dict[str, Any]:
        """What ``seeding.json`` holds: per group, seeds per strategy and why it stopped."""
        out = {}
        for g in self.groups:
            out[group_name(g.key)] = {
                "dataset": g.key[0], "dataset_params": json.loads(g.key[1]), "pricing": g.key[2], "budget": g.key[3],
                "seeds": {s: len(v) for s, v in sorted(g.seeds.items())},
                "in_contention": sorted(g.active), "waves": g.waves,
                "reason": g.reason or "running",
            }
        return out


def _groups(specs: tuple[CampaignSpec, ...], policy: SeedPolicy) -> list[_Group]:
    by: dict[GroupKey, dict[str, dict[int, CampaignSpec]]] = {}
    for s in specs:
        if not s.is_reference and s.seed < policy.max:
            by.setdefault(group_key(s), {}).setdefault(s.strategy_label, {})[s.seed] = s
    return [_Group(k, v, active=set(v), seeds={st: [] for st in v}) for k, v in sorted(by.items(), key=lambda kv: str(kv[0]))]


def _give(g: _Group, seeds: list[int], wave: int) -> None:
    for st in sorted(g.active):
        for seed in seeds:
            if seed in g.specs[st] and seed not in g.seeds[st]:
                g.seeds[st].append(seed)
                g.wave_of[(st, seed)] = wave
    g.waves = wave + 1


def _step(g: _Group, values: dict[str, float], policy: SeedPolicy, wave: int) -> None:
    """Decide on ``g`` after ``wave``; give it the next seeds unless it stops."""
    vals = {st: {seed: values[g.specs[st][seed].campaign_id] for seed in given
                 if g.specs[st][seed].campaign_id in values} for st, given in g.seeds.items()}
    if len(g.specs) == 1:
        g.reason = "one strategy: nothing to compare"
        return
    g.active, settled = decide(vals, g.active, seeds_to_decide(len(g.specs)))
    n = max(len(g.seeds[st]) for st in g.active)
    if settled:
        g.reason = ("settled: one strategy left in contention" if len(g.active) == 1
                    else "settled: every pair's interval excludes 0")
    elif n >= policy.max:
        g.reason = f"maximum of {policy.max} seeds reached"
    else:
        _give(g, list(range(n, min(n + policy.per_wave, policy.max))), wave + 1)


def plan(specs: tuple[CampaignSpec, ...], policy: SeedPolicy, finished: set[str], values: dict[str, float],
         failed: set[str] = frozenset()) -> Plan:
    """Replay the waves on the finished campaigns; return the first wave with
    campaigns not yet finished (``todo`` empty: every group has stopped).

    ``finished``: ids of campaigns that finished ok; ``values``: their ranking
    metric; ``failed``: ids that failed in this run (a wave whose only missing
    campaigns failed is not run again; the groups go on without them)."""
    groups = _groups(specs, policy)
    by_id = {s.campaign_id: s for s in specs}
    refs = {s.campaign_id: by_id[r] for s in specs if not s.is_reference and (r := s.reference().campaign_id) in by_id}
    for g in groups:
        _give(g, list(range(min(policy.min, policy.max))), 0)
    wave = 0
    while True:
        waves = _waves(groups, refs)
        todo = [spec for cid, (spec, w) in waves.items() if w == wave and cid not in finished and cid not in failed]
        if todo:
            return Plan(wave, todo, {cid: w for cid, (_, w) in waves.items()}, groups)
        live = [g for g in groups if not g.reason]
        for g in live:
            _step(g, values, policy, wave)
        if not any(g.waves == wave + 2 for g in live):
            return Plan(wave, [], {cid: w for cid, (_, w) in waves.items()}, groups)
        wave += 1


def _waves(groups: list[_Group], refs: dict[str, CampaignSpec]) -> dict[str, tuple[CampaignSpec, int]]:
    """Campaign id -> (spec, wave it was given in), references (``refs``: campaign id -> its
    reference's spec) with the first wave that needed them."""
    out: dict[str, tuple[CampaignSpec, int]] = {}
    for g in groups:
        for (st, seed), w in g.wave_of.items():
            spec = g.specs[st][seed]
            out[spec.campaign_id] = (spec, w)
            ref = refs.get(spec.campaign_id)
            if ref is not None and (ref.campaign_id not in out or out[ref.campaign_id][1] > w):
                out[ref.campaign_id] = (ref, w)
    return out


def ranking_values(loc: Any, rank_by: str) -> dict[str, float]:
    """Campaign id -> ranking metric of every finished campaign in the store (empty before any)."""
    from alharness.errors import AlharnessError
    from alharness.results import store

    try:
        con, _ = store.connect(loc)
    except AlharnessError:
        return {}
    if rank_by == "final_miou":
        return {cid: float(v) for cid, v in con.execute(
            "SELECT campaign_id, arg_max(miou, round) FROM rounds GROUP BY campaign_id").fetchall() if v is not None}
    from alharness.results.leaderboard import per_campaign

    return {r["campaign_id"]: float(r[rank_by]) for r in per_campaign(con) if r.get(rank_by) is not None}


def run_waves(specs: tuple[CampaignSpec, ...], policy: SeedPolicy, loc: Any, finished: Callable[[], set[str]],
              run: Callable[[list[CampaignSpec], dict[str, int]], set[str]]) -> Plan:
    """Run waves until every group stops; write ``seeding.json``; return the last plan.

    ``finished()``: ids finished ok in the store now; ``run(todo, waves)``
    runs one wave and returns the ids that failed."""
    failed: set[str] = set()
    while True:
        p = plan(specs, policy, finished(), ranking_values(loc, policy.rank_by), failed)
        write_seeding(loc, p)
        if not p.todo:
            return p
        failed |= run(p.todo, p.waves)


def write_seeding(loc: Any, p: Plan) -> None:
    loc.write_bytes(SEEDING_FILE, (json.dumps(p.seeding(), indent=2, sort_keys=True) + "\n").encode())
