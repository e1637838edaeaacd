"""`alharness report`: one self-contained HTML page (plots embedded) and a
Markdown twin, built from a results directory.

Sections: first "What to buy" (per dataset, budget and pricing: the best
strategy by AUC, its query mix, its cost to 90/95 % of full supervision, its
verdict against the runner-up and a learner-adequacy warning), then what ran
(and under which fairness settings), learning curves per cost metric,
leaderboards with cost to reach 90/95 % of full supervision, paired bootstrap
intervals, win rates and computed verdicts between strategies (also written
to verdicts.md / verdicts.json beside the report), ranks as a cost
parameter changes, and per-strategy diagnostics (query-type mix and spend per
round, and thumbnails of queried images with their boxes / pixels drawn).
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from alharness.results import leaderboard as report, plots, stats, store
from alharness.results.claims import CLAIMS_HEAD, judge, write_claims
from alharness.errors import AlharnessError, ResultsError
from alharness.campaign.reference import REFERENCE_STRATEGY

REACHES = (0.9, 0.95)
_THUMBS_PER_STRATEGY = 4


@dataclass
class _Doc:
    """The report as a list of blocks, rendered once to HTML and once to Markdown."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def warn(self, text: str) -> None:
        """A warning the reader must not miss (a boxed paragraph; a quoted bold one in Markdown)."""
        self.blocks.append(("warn", text))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def table(self, headers: list[str], rows: list[list[str]], caption: str = "") -> None:
        self.blocks.append(("table", (headers, rows, caption)))

    def image(self, path: Path, alt: str) -> None:
        self.images.append(path)
        self.blocks.append(("img", (path, alt)))

    def figure(self, path: Path, alt: str, interactive: str) -> None:
        """A figure drawn twice: interactive (an HTML fragment from ``plots.*_interactive``) in
        the HTML page, the PNG at ``path`` in the Markdown twin."""
        self.images.append(path)
        self.blocks.append(("plot", (path, alt, interactive)))

    def to_markdown(self, out_dir: Path) -> str:
        lines = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "h":
                lines += ["#" * body[0] + " " + body[1], ""]
            elif kind == "p":
                lines += [body, ""]
            elif kind == "warn":
                lines += [f"> **{body}**", ""]
            elif kind == "code":
                lines += ["```", body, "```", ""]
            elif kind == "table":
                headers, rows, caption = body
                if caption:
                    lines += [f"*{caption}*", ""]
                lines.append("| " + " | ".join(headers) + " |")
                lines.append("|" + "|".join("---" for _ in headers) + "|")
                lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
                lines.append("")
            elif kind in ("img", "plot"):
                path, alt = body[:2]
                lines += [f"![{alt}]({path.relative_to(out_dir).as_posix()})", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, body in self.blocks:
            if kind == "h":
                parts.append(f"<h{body[0]}>{html.escape(body[1])}</h{body[0]}>")
            elif kind == "p":
                parts.append(f"<p>{html.escape(body)}</p>")
            elif kind == "warn":
                parts.append(f'<p class="warning">{html.escape(body)}</p>')
            elif kind == "code":
                parts.append(f"<pre>{html.escape(body)}</pre>")
            elif kind == "table":
                headers, rows, caption = body
                cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "img":
                path, alt = body
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                             f"<figcaption>{html.escape(alt)}</figcaption></figure>")
            elif kind == "plot":
                _, alt, interactive = body
                parts.append(f'<figure class="interactive">{interactive}<figcaption>{html.escape(alt)} '
                             "(interactive: hover for values, click a legend entry to hide it)</figcaption></figure>")
        # plotly.js inlined once, before the figures that call it: the page stays one offline file.
        library = f"<script>{plots.plotly_js()}</script>" if any(k == "plot" for k, _ in self.blocks) else ""
        return _PAGE.format(title=html.escape(self.title), library=library, body="\n".join(parts))


# The small script marks images that fail to decode (visible to the reader)
# and records "loaded/total" on <body>, which the browser test reads.
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
th {{ background: #f2f2f2; }}
caption {{ text-align: left; font-style: italic; padding-bottom: 0.3em; }}
img {{ max-width: 100%; }}
figure {{ margin: 0.5em 0 1.5em; }}
figcaption {{ font-size: 0.85em; color: #555; }}
pre {{ background: #f6f6f6; padding: 0.6em; overflow-x: auto; }}
.broken {{ outline: 3px solid #c00; }}
.warning {{ border: 2px solid #c60; background: #fff4e5; padding: 0.6em; font-weight: bold; }}
</style>{library}</head>
<body data-images-loaded="pending">
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (im) {{ return im.complete && im.naturalWidth > 0; }});
  imgs.forEach(function (im) {{ if (ok.indexOf(im) < 0) {{ im.className += " broken"; }} }});
  document.body.setAttribute("data-images-loaded", ok.length + "/" + imgs.length);
  var figs = Array.prototype.slice.call(document.querySelectorAll(".plotly-graph-div"));
  var drawn = figs.filter(function (f) {{ return f.querySelector("svg.main-svg") !== null; }});
  document.body.setAttribute("data-plots-drawn", drawn.length + "/" + figs.length);
}});
</script>
</body></html>
"""


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


def _recorded_metrics(con) -> list[str]:
    """Cost metrics to plot: the enforced ones first, then every other metric something was spent in."""
    cols = [r[0] for r in con.execute("DESCRIBE rounds").fetchall() if r[0].startswith("spent_")]
    enforced = [m for (m,) in con.execute("SELECT DISTINCT budget_metric FROM rounds ORDER BY 1").fetchall()]
    spent = []
    for c in cols:
        m = c[len("spent_"):]
        if m not in enforced and (con.execute(f"SELECT max({c}) FROM rounds").fetchone()[0] or 0) > 0:
            spent.append(m)
    return enforced + sorted(spent)


def _reach_cell(r: dict[str, Any]) -> str:
    """A leaderboard row's mean cost to reach its target, with how many seeds reached it."""
    return "never" if r["reached"] == 0 else f"{r['cost_to_reach_mean']:.4g} ({r['reached']}/{r['seeds']})"


Boards = Callable[[str | None, float], list[dict[str, Any]]]


def _leaderboards(con) -> Boards:
    """``report.leaderboard(con, metric, reach)``, each (metric, reach) queried
    once per report: "What to buy", the leaderboards and the cost table show
    the same boards."""
    return functools.lru_cache(maxsize=None)(functools.partial(report.leaderboard, con))


def _group_key(r: dict[str, Any]) -> tuple:
    """The group of a leaderboard or verdict row: (dataset, cost metric, pricing, budget)."""
    return r["dataset"], r["cost_metric"], r["pricing"], r["budget"]


def _groups(rows: list[dict[str, Any]]) -> dict[tuple, list[int]]:
    """Leaderboard rows' indices by group (``_group_key``), in row order (best AUC first within each)."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(_group_key(r), []).append(i)
    return groups


def _group_title(key: tuple) -> str:
    """A group as words: "dataset, budget 60 label_equivalents", plus its pricing where that is not the metric."""
    dataset, cost_metric, pricing, budget = key
    priced = "" if pricing == cost_metric else f", priced {pricing}"
    return f"{dataset}, budget {budget:g} {cost_metric}{priced}"


def _leaderboard_section(doc: _Doc, boards: Boards, metric: str | None) -> list[dict[str, Any]]:
    rows = boards(metric, REACHES[0])
    for (dataset, cost_metric, pricing, budget), idx in _groups(rows).items():
        first = rows[idx[0]]
        basis = (f"of full supervision (final mIoU {first['full_miou_mean']:.3f} with every mask)"
                 if first["reach_of"] == "full supervision" else "of the best strategy's final mIoU (no full-supervision reference in these results)")
        table = []
        for rank, i in enumerate(idx, 1):
            r = rows[i]
            reach_cells = [_reach_cell(boards(metric, reach)[i]) for reach in REACHES]
            table.append([str(rank), r["strategy"] + (" *" if r["beats_full"] else ""), str(r["seeds"]),
                          f"{r['final_miou_mean']:.3f} ± {r['final_miou_std']:.3f}", f"{r['auc_mean']:.3f} ± {r['auc_std']:.3f}",
                          *reach_cells, f"{r['final_cost_mean']:.4g}"])
        priced = "" if pricing == cost_metric else f", priced {pricing}"
        above = [rows[i]["strategy"] for i in idx if rows[i]["beats_full"]]
        if above:
            doc.warn(f"LEARNER INADEQUATE on {dataset}, budget {budget:g}: {', '.join(above)} (marked *) beat full "
                     "supervision by more than seed noise, so the learner, not the strategy, is the limit in this table.")
        doc.table(["rank", "strategy", "seeds", "final mIoU", "AUC (normalised)",
                   *(f"cost to {reach:.0%}" for reach in REACHES), "final cost"], table,
                  caption=f"{dataset}, cost in {cost_metric}{priced}, budget {budget:g}; AUC of mIoU over cost divided by "
                          f"{'the budget' if metric is None else 'the largest spend seen'}; cost to X % {basis}; "
                          f"mean ± std over seeds")
    return rows


def _cost_table_section(doc: _Doc, boards: Boards, metrics: list[str], enforced: list[str]) -> None:
    """Cost to reach 95 % in every recorded metric side by side (metabox-plus Table 1)."""
    if len(metrics) < 2:
        return
    reach = REACHES[-1]
    cells: dict[tuple, dict[str, str]] = {}
    basis = {}
    for metric in metrics:
        for r in boards(None if enforced == [metric] else metric, reach):
            key = (r["dataset"], r["budget"], r["strategy"])
            basis[(r["dataset"], r["budget"])] = r["reach_of"]
            cells.setdefault(key, {})[metric] = (
                "never" if r["reached"] == 0 else f"{r['cost_to_reach_mean']:.4g}" + ("" if r["reached"] == r["seeds"] else f" ({r['reached']}/{r['seeds']})"))
    doc.h(2, f"Cost to reach {reach:.0%} in every recorded metric")
    for dataset, budget in sorted(basis):
        rows = [[strategy, *(c.get(m, "–") for m in metrics)] for (d, b, strategy), c in sorted(cells.items()) if (d, b) == (dataset, budget)]
        doc.table(["strategy", *metrics], rows,
                  caption=f"{dataset}, budget {budget:g}: mean cost at the first round reaching {reach:.0%} of "
                          f"{basis[(dataset, budget)]} (metabox-plus Table 1 layout; seeds that never reached it are counted in brackets)")


def _comparison_section(doc: _Doc, rows: list[dict[str, Any]]) -> None:
    boot = [b for metric in ("auc", "final_miou") for b in stats.paired_bootstrap(rows, metric)]
    if boot:
        doc.h(3, "Paired bootstrap between strategies")
        doc.p("Mean difference A − B over the seeds both ran, with a 95 % percentile bootstrap interval "
              f"(10 000 resamples of the seeds, seeded). * marks intervals that exclude 0; with fewer than "
              f"{stats.MIN_SEEDS} common seeds no difference is called significant ('few seeds'), because an "
              "interval from so few values says little.")
        doc.table(["dataset", "budget", "metric", "A", "B", "seeds", "mean A − B", "95 % interval", ""],
                  [[b["dataset"], f"{b['budget']:g}", b["metric"], b["a"], b["b"], str(b["seeds"]), f"{b['mean_diff']:+.4f}",
                    f"[{b['lo']:+.4f}, {b['hi']:+.4f}]",
                    "few seeds" if b["significant"] is None else "*" if b["significant"] else ""] for b in boot])
    for (dataset, metric, pricing, budget), (names, w) in stats.win_rates(rows, "auc").items():
        if len(names) < 2:
            continue
        doc.table(["A \\ B", *names], [[a, *(_fmt(w[i, j], 2) for j in range(len(names)))] for i, a in enumerate(names)],
                  caption=f"Win rate by AUC, {dataset}, budget {budget:g} {pricing}: share of common seeds on which the row "
                          f"strategy beat the column strategy (ties count ½)")


def _sensitivity_section(doc: _Doc, con, rows: list[dict[str, Any]], out_dir: Path) -> None:
    """Rank of each strategy at each value of a cost parameter that varies between campaigns."""
    cols = [r[0] for r in con.execute("DESCRIBE rounds").fetchall() if r[0].startswith("p_cost_")]
    varying = [c for c in cols if con.execute(f"SELECT count(DISTINCT {c}) FROM rounds").fetchone()[0] > 1]
    if not varying:
        return
    rows = [dict(r) for r in rows]  # the parameter columns are added to copies
    doc.h(2, "Cost sensitivity")
    for col in varying:
        value = dict(con.execute(f"SELECT campaign_id, any_value({col}) FROM rounds GROUP BY 1").fetchall())
        for r in rows:
            r[col] = value.get(r["campaign_id"])
        ranks = stats.ranks_by_parameter(rows, col, "auc")
        for dataset, by_value in ranks.items():
            name, parameter = f"ranks_{_file_part(dataset)}_{col}", col.removeprefix("p_cost_")
            doc.figure(plots.rank_lines(by_value, parameter, out_dir / f"{name}.png"),
                       f"Rank of each strategy as {parameter} changes ({dataset})",
                       plots.rank_lines_interactive(by_value, parameter, div_id=name))


def _file_part(label: str) -> str:
    """A dataset label as part of a file name (its parameter values may hold '/')."""
    return "".join(c if c.isalnum() or c in "._=-" else "_" for c in label)


def _enforced_cost_sql(con) -> str:
    """SQL for a query's (``q``) cost in its campaign's (``c``) enforced budget metric."""
    qcols = {r[0] for r in con.execute("DESCRIBE queries").fetchall()}
    enforced = [m for (m,) in con.execute("SELECT DISTINCT budget_metric FROM rounds").fetchall()]
    return " + ".join(f"CASE WHEN c.budget_metric = '{m}' THEN q.cost_{m} ELSE 0 END" for m in enforced if f"cost_{m}" in qcols) or "0"


def _diagnostics_section(doc: _Doc, con, out_dir: Path) -> None:
    """Query-type mix and spend per round, per strategy (mean over seeds)."""
    if not {r[0] for r in con.execute("SHOW TABLES").fetchall()} >= {"queries"}:
        doc.p("No query log in these results.")
        return
    cost = _enforced_cost_sql(con)
    data = con.execute(f"""
        WITH c AS (SELECT DISTINCT campaign_id, {report.dataset_label_sql(con)} AS dataset, strategy, strategy_label, budget_metric FROM rounds
                   WHERE strategy <> '{REFERENCE_STRATEGY}'),
             seeds AS (SELECT dataset, strategy_label, count(*) AS n FROM c GROUP BY ALL)
        SELECT c.dataset, c.strategy_label, q.round, q.query_type, count(*) / any_value(s.n) AS n,
               sum({cost}) / any_value(s.n) AS spend
        FROM queries q JOIN c USING (campaign_id) JOIN seeds s USING (dataset, strategy_label)
        GROUP BY ALL ORDER BY 1, 2, 3, 4
    """).fetchall()
    by_dataset: dict[str, dict[str, dict[str, dict[int, tuple[float, float]]]]] = {}
    for dataset, label, rnd, qtype, n, spend in data:
        by_dataset.setdefault(dataset, {}).setdefault(label, {}).setdefault(qtype, {})[rnd] = (n, spend)
    for dataset, by_label in by_dataset.items():
        name = f"diagnostics_{_file_part(dataset)}"
        doc.figure(plots.query_mix(by_label, out_dir / f"{name}.png"),
                   f"{dataset}: query-type mix per round (top) and allocation of the budget across query types (bottom), mean over seeds",
                   plots.query_mix_interactive(by_label, div_id=name))


def _thumbnails_section(doc: _Doc, con, out_dir: Path) -> None:
    """For each strategy, the images it queried in its last buying round (lowest seed), with the queries drawn."""
    if not {r[0] for r in con.execute("SHOW TABLES").fetchall()} >= {"queries", "campaigns"}:
        return
    from alharness.registry import DATASETS
    from alharness.campaign.spec import CampaignSpec

    picks = con.execute(f"""
        WITH c AS (SELECT {report.dataset_label_sql(con)} AS dataset, strategy_label, arg_min(campaign_id, seed) AS campaign_id,
                          min(seed) AS seed
                   FROM rounds WHERE strategy <> '{REFERENCE_STRATEGY}' GROUP BY ALL)
        SELECT c.dataset, c.strategy_label, c.campaign_id, c.seed, k.spec,
               (SELECT max(round) FROM queries q WHERE q.campaign_id = c.campaign_id) AS last_round
        FROM c JOIN campaigns k USING (campaign_id) ORDER BY 1, 2
    """).fetchall()
    pools: dict[str, Any] = {}
    for dataset, label, cid, seed, spec_json, last_round in picks:
        if last_round is None:
            continue
        queries = con.execute("SELECT * FROM queries WHERE campaign_id = ? AND round = ? ORDER BY image",
                              [cid, last_round]).fetchall()
        names = [d[0] for d in con.description]
        queries = [dict(zip(names, q)) for q in queries]
        try:
            spec = CampaignSpec.from_json(spec_json)
            key = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True)
            if key not in pools:
                pools[key] = DATASETS.create(spec.dataset, **spec.dataset_params).split("train").images
            images = pools[key]
        except (AlharnessError, OSError, ValueError, KeyError, TypeError) as exc:
            doc.p(f"{label} on {dataset}: no thumbnails (dataset not available here: {exc})")
            continue
        shown = sorted({q["image"] for q in queries})[:_THUMBS_PER_STRATEGY]
        path = plots.query_thumbnails([(i, images[i], [q for q in queries if q["image"] == i]) for i in shown],
                                      f"{label} — round {last_round}, seed {seed}",
                                      out_dir / f"examples_{_file_part(dataset)}_{len(doc.images)}.png")
        doc.image(path, f"{dataset}, {label}: images queried in round {last_round} (seed {seed}); red boxes = regions, "
                        f"yellow dots = clicked pixels, green frame = full mask")


# --- "What to buy": the answer first -------------------------------------

#: the leaderboard ranks by AUC; the verdicts test it and final mIoU
RANK_BY = "auc"
VERDICT_METRICS = ("auc", "final_miou")
#: short names of the query types in the query mix
_QUERY_NAMES = {"full_mask": "masks", "image_labels": "labels", "class_presence": "yes/no", "labels_with_counts": "counts",
                "boxes": "boxes", "region": "regions", "pixels": "clicks/pixels"}
#: columns a learner-adequacy check may add to the rounds (issue 18, part 1): a value other than these is a warning
_ADEQUACY_COLUMNS = ("adequacy", "learner_adequacy")
_ADEQUATE = {None, "ok", "adequate", "converged", True}


def _query_shares(con, rows: list[dict[str, Any]]) -> dict[tuple, dict[str, float]]:
    """(dataset, budget metric, pricing, budget, strategy label) → query type → mean share of the budget
    spent on it, over the group's campaigns (``rows``: ``report.per_campaign``, so the groups are the
    leaderboard's), largest first."""
    if "queries" not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}:
        return {}
    spend: dict[str, dict[str, float]] = {}
    for cid, qtype, total in con.execute(f"""
        SELECT q.campaign_id, q.query_type, sum({_enforced_cost_sql(con)})
        FROM queries q JOIN (SELECT DISTINCT campaign_id, budget_metric FROM rounds) c USING (campaign_id) GROUP BY ALL
    """).fetchall():
        spend.setdefault(cid, {})[qtype] = total
    campaigns: dict[tuple, list[str]] = {}
    for r in rows:
        campaigns.setdefault((r["dataset"], r["metric"], r["pricing"], r["budget"], r["strategy_label"]), []).append(r["campaign_id"])
    out: dict[tuple, dict[str, float]] = {}
    for key, cids in campaigns.items():
        totals: dict[str, float] = {}
        for cid in cids:
            for qtype, total in spend.get(cid, {}).items():
                totals[qtype] = totals.get(qtype, 0.0) + total
        if totals:
            out[key] = dict(sorted(((q, t / len(cids) / key[3]) for q, t in totals.items()), key=lambda kv: -kv[1]))
    return out


def _mix_text(shares: dict[str, float]) -> str:
    if not shares:
        return "no queries logged"
    return ", ".join(f"{_QUERY_NAMES.get(q, q)} {v:.0%}" for q, v in shares.items() if v > 0) or "nothing spent"


def _adequacy_notes(con, results_dir: Path) -> list[str]:
    """Warnings of the learner-adequacy check (``bench --check-learner``: its learner_check.json beside
    the results), and any adequacy column it may stamp on the rounds."""
    notes = []
    path = results_dir / "learner_check.json"
    if path.is_file():
        try:
            groups = json.loads(path.read_text()).get("groups", [])
        except (OSError, ValueError, AttributeError) as exc:
            groups, notes = [], [f"learner_check.json unreadable: {exc}"]
        for g in groups:
            if isinstance(g, dict) and not g.get("adequate", True):
                gain = max(g.get("gain_2x", math.nan), g.get("gain_4x", math.nan))
                notes.append(f"LEARNER UNDER-TRAINED on {g.get('dataset', '?')} (steps {g.get('steps', '?')}): full "
                             f"supervision gains {gain:+.3f} mIoU from doubling the steps, so it is handicapped and costs "
                             "to X % of it mean little.")
    cols = {r[0] for r in con.execute("DESCRIBE rounds").fetchall()}
    for col in (c for c in _ADEQUACY_COLUMNS if c in cols):
        for dataset, value in con.execute(f"SELECT DISTINCT {report.dataset_label_sql(con)}, {col} FROM rounds ORDER BY 1").fetchall():
            if value not in _ADEQUATE:
                notes.append(f"LEARNER UNDER-TRAINED on {dataset}: the adequacy check recorded {value!r}.")
    return notes


def _seeding_notes(results_dir: Path) -> list[str]:
    """Why each group stopped adding seeds, where the run chose seeds adaptively (its seeding.json)."""
    path = results_dir / "seeding.json"
    if not path.is_file():
        return []
    try:
        groups = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"seeding.json unreadable: {exc}"]
    return [f"{name}: seeds {', '.join(f'{s} {n}' for s, n in g.get('seeds', {}).items())}; stopped: {g.get('reason', '?')}"
            for name, g in sorted(groups.items()) if isinstance(g, dict)]


def _how_sure(best: str, runner: str | None, found: list[dict[str, Any]]) -> tuple[str, str]:
    """(table cell, sentence) for the best strategy against the runner-up, from the verdicts on the ranking metric."""
    if runner is None:
        return "only one strategy ran", f"Only {best} ran: nothing to compare it with."
    v = next((v for v in found if {v["a"], v["b"]} == {best, runner} and v["metric"] == RANK_BY), None)
    if v is None:
        return "no common seeds", f"{best} and {runner} share no seeds: no verdict."
    if v["verdict"] == "beats" and v["a"] == best:
        return f"beats {runner} (Holm p = {v['p_holm']:.3g}, {v['seeds']} seeds)", v["sentence"] + "."
    return (f"cannot distinguish from {runner} at {v['seeds']} seeds",
            f"Cannot distinguish {best} from {runner} at {v['seeds']} seeds; the result does not answer the question yet. "
            f"{v['sentence']}.")


def _what_to_buy_section(doc: _Doc, con, boards: Boards, rows: list[dict[str, Any]], found: list[dict[str, Any]],
                         results_dir: Path) -> None:
    """Per dataset, budget and pricing: the best strategy by AUC, its query mix, its cost to 90/95 %
    of full supervision, and how sure the harness is (verdict against the runner-up, adequacy)."""
    doc.h(2, "What to buy")
    doc.p("Per dataset, budget and pricing: the best strategy by the ranking metric (AUC of mIoU over the budget, "
          "mean over seeds), the shares of the budget it spent on each query type, its mean cost to 90 % and 95 % "
          "of the target, and how sure the harness is: the verdict against the runner-up (exact paired sign-flip test, "
          "Holm-adjusted over the group's pairs; see verdicts.md) and whether the learner is adequate.")
    board = boards(None, REACHES[0])
    shares = _query_shares(con, rows)
    groups = _groups(board)
    table, notes, warnings = [], [], _adequacy_notes(con, results_dir)
    for key, idx in groups.items():
        best = board[idx[0]]
        runner = board[idx[1]]["strategy"] if len(idx) > 1 else None
        cell, sentence = _how_sure(best["strategy"], runner, [v for v in found if _group_key(v) == key])
        where = _group_title(key)
        table.append([where, best["strategy"], f"{best['auc_mean']:.3f}", _mix_text(shares.get((*key, best["strategy"]), {})),
                      *(_reach_cell(boards(None, reach)[idx[0]]) for reach in REACHES), cell])
        notes.append(f"{where}: {sentence}")
        above = sorted(board[i]["strategy"] for i in idx if board[i]["beats_full"])  # the leaderboard's one rule
        if above:
            warnings.append(f"LEARNER INADEQUATE on {where}: {', '.join(above)} beat full supervision by more than "
                         "seed noise, so the learner, not the labels, limits these scores; costs to X % of full supervision "
                         "mean little here.")
    if not table:
        doc.p("No finished strategy campaigns in these results.")
        return
    basis = "full supervision" if all(r["reach_of"] == "full supervision" for r in board) \
        else "full supervision where every campaign has its reference, else the best strategy's final mIoU"
    for warning in warnings:  # before the table: they say how far to trust it
        doc.warn(warning)
    doc.table(["dataset, budget", "best by AUC", "AUC", "query mix (share of budget)",
               *(f"cost to {reach:.0%}" for reach in REACHES), "how sure"], table, caption=f"Cost to X % of {basis}")
    for note in notes + _seeding_notes(results_dir):
        doc.p(note)


VERDICTS_HEAD = ("# Verdicts\n\nGenerated by `alharness report` from the per-seed results; exact paired sign-flip test "
                 f"(all 2^n sign flips up to {stats.EXACT_MAX_SEEDS} common seeds, else {stats.SIGN_FLIPS_MC} seeded ones), "
                 "Holm-adjusted over the pairs of each group; effects are mean differences with 95 % paired bootstrap "
                 f"intervals; fewer than {stats.MIN_SEEDS} common seeds get no verdict. Smallest detectable effect: "
                 "(t(1 − 0.05/(2k), n − 1) + t(0.8, n − 1)) × SD of the paired differences / √n (80 % power at Holm's "
                 "strictest step).\n")


def compute_verdicts(con) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-campaign rows, verdicts on AUC and final mIoU for every pair of every group, grouped)."""
    rows = report.per_campaign(con)
    found = sorted((v for m in VERDICT_METRICS for v in stats.verdicts(rows, m)),
                   key=_group_key)
    return rows, found


def write_verdicts(found: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Write ``verdicts.md`` and ``verdicts.json`` into ``out_dir``; return the Markdown body's lines."""
    lines, key = [], None
    for v in found:
        if _group_key(v) != key:
            key = _group_key(v)
            lines += ["", f"## {_group_title(key)}", ""]
        lines.append(f"- {v['sentence']}.")
    (out_dir / "verdicts.md").write_text(VERDICTS_HEAD + "\n".join(lines) + "\n")
    (out_dir / "verdicts.json").write_text(json.dumps(found, indent=1, default=float) + "\n")
    return lines


def _verdict_section(doc: _Doc, found: list[dict[str, Any]], out_dir: Path) -> None:
    """Every pair's verdict as a sentence, in the report and in verdicts.md / verdicts.json beside it."""
    doc.h(3, "Verdicts")
    _sidecar_section(doc, VERDICTS_HEAD, write_verdicts(found, out_dir), "verdicts", 4)


def _sidecar_section(doc: _Doc, head: str, lines: list[str], stem: str, level: int) -> None:
    """A section also written beside the report as ``<stem>.md`` / ``<stem>.json``: its head's
    explanation, then its Markdown lines (``## `` headings at ``level``, bullets as paragraphs)."""
    doc.p(head.split("\n\n", 1)[1].strip() + f" Also in {stem}.md and {stem}.json.")
    for line in lines:
        if line.startswith("## "):
            doc.h(level, line[3:])
        elif line:
            doc.p(line[2:] if line.startswith("- ") else line)


def _claims_section(doc: _Doc, con, claims: tuple, rows: list[dict[str, Any]], found: list[dict[str, Any]],
                    out_dir: Path) -> None:
    """The benchmark's headline claims, judged (``alharness.results.claims``), also in claims.md / claims.json."""
    judged = judge(claims, rows, found, report.learner_inadequate(rows),
                   rows_at=lambda cost, reach: report.per_campaign(con, cost, reach),
                   finals=lambda columns: report.final_scores(con, columns))
    doc.h(2, "Headline claims")
    _sidecar_section(doc, CLAIMS_HEAD, write_claims(judged, out_dir), "claims", 3)


def build_report(results_dir: str | Path, out_dir: str | Path | None = None, claims: tuple = ()) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ PNGs) for a results directory;
    with ``claims`` (a benchmark's ``[[claims]]``), the report leads with their judgement."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir else results_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    con, scanned = store.connect(results_dir)
    benches = [b for (b,) in con.execute("SELECT DISTINCT benchmark FROM rounds ORDER BY 1").fetchall()] \
        if "benchmark" in {r[0] for r in con.execute("DESCRIBE rounds").fetchall()} else []
    doc = _Doc(title=f"alharness report: {', '.join(benches) or results_dir.name}")

    status = dict(con.execute("SELECT status, count(*) FROM campaigns GROUP BY 1").fetchall()) \
        if "campaigns" in {r[0] for r in con.execute("SHOW TABLES").fetchall()} else {}
    n_ref = con.execute(f"SELECT count(DISTINCT campaign_id) FROM rounds WHERE strategy = '{REFERENCE_STRATEGY}'").fetchone()[0]
    rows, found = compute_verdicts(con)
    boards = _leaderboards(con)
    if claims:
        _claims_section(doc, con, claims, rows, found, out_dir)
    _what_to_buy_section(doc, con, boards, rows, found, results_dir)
    doc.h(2, "What ran")
    doc.p(f"Results: {results_dir}. Campaigns: {status.get('ok', 0)} finished, {status.get('failed', 0)} failed"
          f" ({n_ref} of the finished are full-supervision references).")
    cols = {r[0] for r in con.execute("DESCRIBE rounds").fetchall()}
    if "validation" in cols:
        modes = [m for (m,) in con.execute("SELECT DISTINCT validation FROM rounds ORDER BY 1").fetchall()]
        doc.p("Validation split (fairness rule 3): " + ", ".join(
            {"none": "none (no held-out scores)", "charged": "charged (its masks are bought in round 0)",
             "free": "FREE (held-out masks not charged: an idealised setting)"}.get(m, m) for m in modes) + ".")
    if "oracle_experiment" in cols:
        oracle = [s for (s,) in con.execute("SELECT DISTINCT strategy_label FROM rounds WHERE oracle_experiment ORDER BY 1").fetchall()]
        if oracle:
            doc.p("ORACLE EXPERIMENTS (these read ground truth they did not pay for; an upper bound, not a strategy "
                  "one can use): " + ", ".join(oracle) + ".")
    if scanned.problems:
        doc.p(f"{len(scanned.problems)} result file(s) were unreadable and left out:")
        doc.code("\n".join(scanned.problems))

    metrics = _recorded_metrics(con)
    enforced = [m for (m,) in con.execute("SELECT DISTINCT budget_metric FROM rounds").fetchall()]
    for metric in metrics:
        # In the one enforced metric, curves are scored against the budget; in
        # any other, against the largest spend seen (report.leaderboard).
        axis = None if enforced == [metric] else metric
        doc.h(2, f"Cost in {metric}" + ("" if metric in enforced else " (re-scored: the budget was enforced in another metric)"))
        panels = report.learning_curve_panels(con, axis)
        path = report.plot_learning_curves(con, out_dir / f"curves_{metric}.png", axis, panels)
        doc.figure(path, f"Test mIoU against cost in {metric}: mean over seeds, band ±1 std; dashed: full supervision",
                   plots.learning_curves_interactive(panels, axis, div_id=f"curves-{_file_part(metric)}"))
        _leaderboard_section(doc, boards, axis)
    _cost_table_section(doc, boards, metrics, enforced)
    doc.h(2, "Comparisons between strategies")
    _comparison_section(doc, rows)
    _verdict_section(doc, found, out_dir)
    _sensitivity_section(doc, con, rows, out_dir)
    doc.h(2, "Diagnostics per strategy")
    _diagnostics_section(doc, con, out_dir)
    _thumbnails_section(doc, con, out_dir)
    doc.h(2, "Regenerate")
    doc.code(f"alharness report {results_dir}" + (f" --out {out_dir}" if out_dir != results_dir / "report" else ""))

    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(doc.to_html())
    md_path.write_text(doc.to_markdown(out_dir))
    return html_path, md_path


learner_inadequate = report.learner_inadequate  # re-exported: the same rule over per-campaign rows

__all__ = ["build_report", "compute_verdicts", "write_verdicts", "learner_inadequate", "REACHES", "ResultsError"]
