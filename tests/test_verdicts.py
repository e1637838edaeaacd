"""Verdicts computed from seeds: the exact sign-flip test holds its level,
Holm controls the family, and the sentences say what the numbers say."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from alharness.results import stats


def _rows(values: dict[str, list[float]], group: int = 0) -> list[dict]:
    return [{"dataset": "d", "metric": "m", "pricing": "m", "budget": float(group), "strategy_label": label,
             "seed": s, "auc": v} for label, vs in values.items() for s, v in enumerate(vs)]


def _group(rng, n: int, gap: float, seed_sd: float = 0.05, noise: float = 0.01) -> dict[str, list[float]]:
    """Two strategies on n seeds: a shared seed effect (same initial batch, same init) plus each one's own noise."""
    seed_effect = 0.6 + seed_sd * rng.standard_normal(n)
    return {"A": list(seed_effect + gap + noise * rng.standard_normal(n)),
            "B": list(seed_effect + noise * rng.standard_normal(n))}


def test_exact_sign_flip_matches_brute_force_and_monte_carlo_is_close():
    diff = np.array([0.03, -0.01, 0.02, 0.04, 0.005, -0.002, 0.01])
    brute = np.mean([abs(np.mean(diff * s)) >= abs(diff.mean()) - 1e-12
                     for s in itertools.product([-1, 1], repeat=len(diff))])
    assert stats.sign_flip_p(diff) == pytest.approx(brute)
    assert stats.sign_flip_p(np.full(5, 0.1)) == pytest.approx(1 / 16)  # the floor at 5 seeds
    long = np.random.default_rng(4).normal(0.3, 1, size=24)  # Monte-Carlo path: close to the t-test's p
    from scipy.stats import ttest_1samp
    assert stats.sign_flip_p(long) == pytest.approx(ttest_1samp(long, 0).pvalue, abs=0.03)
    assert stats.sign_flip_p(long) == stats.sign_flip_p(long)  # seeded


def test_holm_on_known_numbers():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5]) == [0.5] and stats.holm([]) == []


def test_identical_strategies_rarely_beat_each_other():
    """The issue's acceptance: at most 5 % 'beats' over 200 groups of two identical strategies."""
    rng = np.random.default_rng(18)
    rows = [r for g in range(200) for r in _rows(_group(rng, n=10, gap=0.0), group=g)]
    found = stats.verdicts(rows, n_boot=500)
    assert len(found) == 200
    rate = sum(v["verdict"] == "beats" for v in found) / len(found)
    print(f"false-positive rate of 'beats' on identical strategies: {rate:.3f}")
    assert rate <= 0.05


def test_holm_keeps_the_family_at_its_level_with_three_identical_strategies():
    rng = np.random.default_rng(7)
    rows = []
    for g in range(200):
        values = _group(rng, n=10, gap=0.0)
        values["C"] = list(np.array(values["B"]) + 0.01 * rng.standard_normal(10))
        rows += _rows(values, group=g)
    found = stats.verdicts(rows, n_boot=200)
    groups_with_a_call = {v["budget"] for v in found if v["verdict"] == "beats"}
    assert len(groups_with_a_call) / 200 <= 0.05 and {v["k"] for v in found} == {3}


@pytest.mark.parametrize("n", [6, 8, 12, 20])
def test_a_clearly_separated_pair_is_called(n):
    v, = stats.verdicts(_rows(_group(np.random.default_rng(n), n=n, gap=-0.05)))
    assert v["verdict"] == "beats" and (v["a"], v["b"]) == ("B", "A")  # winner first
    assert 0 < v["lo"] <= v["mean_diff"] <= v["hi"] and v["mean_diff"] == pytest.approx(0.05, abs=0.02)
    assert v["sentence"].startswith("B beats A on AUC by ") and f"{n} seeds" in v["sentence"]
    assert "Holm-adjusted" in v["sentence"] and "over 1 pair" in v["sentence"]


def test_five_seeds_can_never_be_called_and_four_are_too_few():
    """2^(1-5) = 1/16 > 5 %: the sentence says why nothing is called, however clear the gap."""
    v, = stats.verdicts(_rows(_group(np.random.default_rng(0), n=5, gap=0.2)))
    assert v["verdict"] == "no difference" and "cannot reach p < 0.05 over 1 pair below 6 seeds" in v["sentence"]
    assert "smallest detectable effect about" in v["sentence"]
    v, = stats.verdicts(_rows(_group(np.random.default_rng(0), n=4, gap=0.2)))
    assert v["verdict"] == "too few seeds" and "too few seeds (4" in v["sentence"] and "p" not in v
    assert stats.min_seeds_to_call(1) == 6 and stats.min_seeds_to_call(3) == 7


def test_detectable_effect_formula():
    from scipy.stats import t
    d = stats.detectable_effect(0.02, 10, 3)
    assert d == pytest.approx((t.ppf(1 - 0.05 / 6, 9) + t.ppf(0.8, 9)) * 0.02 / np.sqrt(10))
    assert stats.detectable_effect(0.02, 20, 3) < d < stats.detectable_effect(0.02, 10, 6)


def test_a_strategy_above_full_supervision_flags_the_learner():
    from alharness.results.report_page import learner_inadequate
    rows = [{"dataset": "d", "metric": "m", "pricing": "m", "budget": 1.0, "strategy_label": label, "seed": s,
             "final_miou": full + gap + 0.005 * (-1) ** s, "full_miou": full}
            for s, full in enumerate([0.62, 0.64, 0.66]) for label, gap in (("pixels", 0.19), ("masks", -0.1), ("tie", 0.0))]
    assert learner_inadequate(rows) == {("d", "m", "m", 1.0): ["pixels"]}
    assert learner_inadequate([{**r, "full_miou": None} for r in rows]) == {}


def test_how_sure_says_plainly_when_the_runner_up_cannot_be_told_apart():
    from alharness.results.report_page import _how_sure
    rng = np.random.default_rng(3)
    close = stats.verdicts(_rows(_group(rng, n=8, gap=0.0)))
    cell, sentence = _how_sure("A", "B", close)
    assert cell == "cannot distinguish from B at 8 seeds" and "does not answer the question yet" in sentence
    far = stats.verdicts(_rows(_group(rng, n=8, gap=0.1)))
    cell, sentence = _how_sure("A", "B", far)
    assert cell.startswith("beats B (Holm p = ") and sentence.startswith("A beats B on AUC by ")
    assert _how_sure("A", None, far)[0] == "only one strategy ran"


# --- Reference READMEs quote generated numbers only ----------------------------

_REFERENCES = Path(__file__).resolve().parent.parent / "results" / "reference"
#: a reading's number: one with a decimal point, or a percentage (counts like "3 seeds" or "32×32" are setup, not readings)
_READING = re.compile(r"(?<![\w.])\d+\.\d+|(?<![\w.])\d+(?:\.\d+)?\s?%")
_GENERATED = ("verdicts.md", "verdicts.json", "report.md", "claims.md", "claims.json")


def _readings(readme: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", readme.read_text(), flags=re.S)  # commands are not readings
    return [m.group(0).replace(" ", "") for m in _READING.finditer(text)]


def _unquoted_readings(folder: Path) -> list[str]:
    """Why ``folder/README.md`` fails the rule, or [] when it passes: a README that types no reading has
    nothing to check; one that does needs a generated verdicts.md in the folder or a subfolder, and every
    reading in one of the generated files there (a summary README quotes its subfolders' claims.json)."""
    readings = _readings(folder / "README.md")
    if not readings:
        return []
    files = sorted(f for name in _GENERATED for f in folder.rglob(name))
    if not any(f.name == "verdicts.md" for f in files):
        return [f"no generated verdicts.md beside the README, yet it types {readings[:5]}"]
    generated = " ".join(f.read_text() for f in files).replace(" %", "%")
    return [f"in none of {', '.join(_GENERATED)}: {n}" for n in sorted(set(readings) - {n for n in readings if n in generated})]


@pytest.mark.parametrize("name", sorted(p.name for p in _REFERENCES.iterdir() if (p / "README.md").is_file()))
def test_every_number_in_a_reference_readme_is_in_its_generated_files(name):
    problems = _unquoted_readings(_REFERENCES / name)
    assert not problems, f"{name}: numbers typed in README.md but not generated: {problems[:20]}"


def test_the_number_check_can_pass_and_fail(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("Title 2026-11-23\n\nA beats B by 0.031 (85 %), 3 seeds.\n\n```\nbench --reach 0.9\n```\n")
    assert _readings(readme) == ["0.031", "85%"]
    assert _unquoted_readings(tmp_path) and "no generated verdicts.md" in _unquoted_readings(tmp_path)[0]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "verdicts.md").write_text("A beats B by 0.031 on AUC (85 % of full supervision)\n")
    assert _unquoted_readings(tmp_path) == []
    readme.write_text("Title\n\nThe readings were withdrawn; rerun the commands below.\n")
    (tmp_path / "run" / "verdicts.md").unlink()
    assert _unquoted_readings(tmp_path) == []
