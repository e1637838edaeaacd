"""Starting a live campaign: the benchmark's campaign for one strategy, on the user's images.

The benchmark file says everything a simulated campaign of the strategy
had: its parameters, the learner, the cost models, the enforced metric,
the budget, the rounds, round 0's initial masks and the seed. The dataset
becomes the user's folder of images (at the benchmark dataset's ``size``
unless ``--size`` says otherwise), with their class names.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from alharness.campaign.spec import CampaignSpec
from alharness.campaign.strategy_worker import InProcessStrategy
from alharness.errors import ConfigError
from alharness.live import campaign as live
from alharness.live.formats import FORMATS, write_configs, write_json
from alharness.live.images import list_images, load_images, read_classes
from alharness.live.label_studio import RESERVED
from alharness.live.tasks import LiveError

DEFAULT_SIZE = 256


def _pick(specs: list[CampaignSpec], what: str, value: Any, attr: str, where: str) -> tuple[list[CampaignSpec], str]:
    """The specs whose ``attr`` equals ``value`` (the first one's when not given), and a note."""
    offered = sorted({getattr(s, attr) for s in specs})
    if value is None:
        value = getattr(specs[0], attr)
        note = f"{what} {value:g} (of {', '.join(f'{v:g}' for v in offered)}; --{what} to choose)" if len(offered) > 1 else ""
    else:
        note = ""
    kept = [s for s in specs if getattr(s, attr) == value]
    if not kept:
        raise ConfigError(f"{where}: no campaign with {what} {value:g}; the benchmark has {', '.join(f'{v:g}' for v in offered)}")
    return kept, note


def choose_spec(bench_file: str | Path, strategy: str, budget: float | None, seed: int | None) -> tuple[CampaignSpec, list[str]]:
    """The benchmark's campaign of ``strategy`` (its name or its label) at ``budget`` and ``seed``."""
    from alharness.execution.benchmark import load_benchmark

    bench = load_benchmark(bench_file, open_datasets=False)
    where = str(bench_file)
    specs = [s for s in bench.specs if not s.is_reference]
    found = [s for s in specs if strategy in (s.strategy, s.strategy_label)]
    if not found:
        raise ConfigError(f"{where}: no strategy {strategy!r}; the benchmark has "
                          f"{', '.join(sorted({s.strategy_label for s in specs}))}")
    labels = sorted({s.strategy_label for s in found})
    if len(labels) > 1:
        raise ConfigError(f"{where}: {strategy!r} stands for {len(labels)} strategies of a grid: "
                          f"{', '.join(labels)}; name one of them with --strategy")
    found, budget_note = _pick(found, "budget", budget, "budget", where)
    found, seed_note = _pick(found, "seed", seed, "seed", where)
    chosen = found[0]
    if chosen.learner.patience > 0:
        raise ConfigError(f"{where}: [learner] patience needs a validation split, which a live campaign does not have; "
                          f"set patience = 0")
    notes = [n for n in (budget_note, seed_note) if n]
    if chosen.noise.active:
        notes.append("[noise] simulates annotators; a live campaign has real ones, so it is left out")
    return chosen, notes


def _size(chosen: CampaignSpec, size: list[int] | None) -> tuple[int, int]:
    s = size if size is not None else chosen.dataset_params.get("size", DEFAULT_SIZE)
    s = [s, s] if isinstance(s, int) else list(s)
    if not (len(s) == 2 and all(isinstance(v, int) and v >= 8 for v in s)):
        raise ConfigError(f"size must be one or two integers >= 8, got {s!r}")
    return int(s[0]), int(s[1])


def live_spec(chosen: CampaignSpec, images: Path, classes: tuple[str, ...], size: tuple[int, int], resize: str) -> CampaignSpec:
    """The chosen campaign on the user's images: dataset ``folder`` at ``images``, no validation split, no simulated noise."""
    return CampaignSpec(
        dataset="folder", dataset_params={"root": str(images), "classes": list(classes), "size": list(size), "resize": resize},
        strategy=chosen.strategy, strategy_params=chosen.strategy_params, costs=chosen.costs,
        budget_metric=chosen.budget_metric, budget=chosen.budget, rounds=chosen.rounds, seed=chosen.seed,
        initial_masks=chosen.initial_masks, learner=chosen.learner, validation="none", benchmark=chosen.benchmark,
        num_cpus=chosen.num_cpus, num_gpus=chosen.num_gpus)


def _config(args: dict[str, Any], out: Path) -> tuple[dict[str, Any], list[str], dict[str, Path]]:
    """live.json's content for these start arguments (no run id or time yet), notes, and the image files."""
    images_dir = Path(args["images"]).resolve()
    found = list_images(images_dir)
    test = Path(args["test"]).resolve() if args.get("test") else None
    classes = read_classes(args.get("classes"), images_dir, images_dir.parent, test)
    clash = [c for c in classes if c in RESERVED]
    if clash:
        raise ConfigError(f"class name {clash[0]!r} is reserved by the annotation configs ({', '.join(RESERVED)}); rename it")
    fmt = args.get("format") or "label-studio"
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    chosen, notes = choose_spec(args["file"], args["strategy"], args.get("budget"), args.get("seed"))
    size = _size(chosen, args.get("size"))
    resize = args.get("resize") or chosen.dataset_params.get("resize", "crop")
    spec = live_spec(chosen, images_dir, classes, size, resize)
    live.check_live_needs(spec, InProcessStrategy(spec.strategy, spec.strategy_params))
    url = args.get("image_url") or f"/data/local-files/?d={(out.resolve() / 'images').relative_to('/')}/"
    config = {"format_version": live.FORMAT_VERSION, "spec": spec.to_json(), "benchmark_file": str(Path(args["file"]).resolve()),
              "images": str(images_dir), "masks": str(Path(args["masks"]).resolve()) if args.get("masks") else None,
              "test": str(test) if test else None, "format": fmt, "image_url": url, "classes": list(classes),
              "size": list(size), "resize": resize, "stems": list(found)}
    return config, notes, found


def start(args: dict[str, Any]) -> tuple[live.LiveRun, list[str]]:
    """Start (or, with the same arguments, resume) a live campaign in ``args['out']``.

    ``args``: file, strategy, images, out; optional masks, test, format,
    classes, size, resize, budget, seed, image_url."""
    out = Path(args["out"])
    config, notes, found = _config(args, out)
    existing = out / live.LIVE_FILE
    if existing.is_file():
        old = json.loads(existing.read_text())
        if {k: old.get(k) for k in config} != config:
            raise LiveError(f"{out} holds a live campaign started with other settings; continue it with "
                            f"'alharness live next {out}', or start in another --out")
        run = live.open_run(out)
        if run.open_round is None and not run.finished:
            live.begin(run)
        return run, notes + ["resumed: this campaign was already started"]
    if out.exists() and any(out.iterdir()):
        raise LiveError(f"{out} exists and is not empty; choose another --out")
    images, sources = load_images(list(found.values()), tuple(config["size"]), config["resize"])
    _write_pool(out, list(found), images)
    write_configs(out / "label-studio", live.pool_facts(config))
    config.update(run=uuid.uuid4().hex[:8], started=live._now(), sources=[list(s) for s in sources])
    write_json(existing, config)  # the commit of "started"
    run = live.open_run(out)
    live.begin(run)
    return run, notes


def _write_pool(out: Path, stems: list[str], images) -> None:
    """The pool at the campaign's resolution, as PNG (lossless: the campaign reads back exactly these pixels)."""
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    for stem, img in zip(stems, images):
        Image.fromarray(img).save(out / "images" / f"{stem}.png")
