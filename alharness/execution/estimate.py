"""What a benchmark would need, per campaign, before anything runs (``alharness bench FILE --dry-run``).

Rough, upper-bound figures from the dataset's shapes and the learner's
configuration; nothing is trained, scheduled or written:

- **processes**: the interpreters' own memory (``PROCESS_BYTES`` each: the
  campaign process, and the strategy server with its strategy process);
- **label state**: what ``LabelState`` holds for the pool, N×H×W bytes of
  pixel labels plus the per-class image labels and counts (in a file on
  local scratch from ``ALHARNESS_LABELS_MMAP_BYTES`` on, see
  ``alharness.annotation.labels``: then the pixels count as scratch, not
  memory), and its copy in the strategy process (on scratch from the same
  threshold on);
- **selection state**: the pool outputs the strategy declares in ``needs``
  (probabilities C×H×W×4 bytes an image, features, head outputs, oracle
  statistics) and their copy in the strategy process: one ``eval_batch_size``
  batch at a time for a strategy that streams (``Strategy.score``; its own
  per-image results are not counted), of which the strategy process's copy
  (and, on a GPU, the host's) is one run of at most ``SCORE_CHUNK_BYTES``;
  the whole pool for one that does not,
  which fails before round 0 over ``[resources] dense_outputs_cap_gib``;
- **model**: parameters, gradients and AdamW's two moments (4 × the
  parameters), plus the larger of the activations of one training batch
  (every leaf module's output at ``batch_size``, which backward keeps) and
  the peak of one inference pass at ``eval_batch_size`` with the heads the
  strategy reads (the round's prediction: tensors counted while referenced),
  both measured by forward passes on PyTorch's ``meta`` device, which
  allocates nothing;
- **training tensors**: the labelled pool images and their pixel labels,
  which ``Learner.fit`` moves to the device as they are bought (uint8, 4
  bytes a pixel; each batch is converted to float32 and int64 when drawn),
  plus one batch converted; the bound is the whole pool labelled (what the
  full-supervision reference trains on);
- **dataset cache**: the memory-mapped arrays of each dataset, held once per
  node in the page cache however many campaigns read them.

A campaign fits when its private memory (everything but the dataset cache)
is at most its share of this node's memory: the ``memory_per_campaign``
given, else (node memory − the dataset caches) / the campaigns that run at
once on the node (its CPUs / ``num_cpus``, its GPUs / ``num_gpus``,
``workers``). With ``num_gpus`` > 0 the model and the training tensors live
on the GPU and are compared with the campaign's share of one GPU's memory,
where this node has one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from alharness.annotation.labels import mmap_threshold
from alharness.annotation.oracle_experiments import oracle_bytes_per_image
from alharness.campaign.spec import CampaignSpec
from alharness.contract.strategy import SCORE_CHUNK_BYTES
from alharness.errors import AlharnessError
from alharness.registry import DATASETS, STRATEGIES

GIB = 2**30


@dataclass(frozen=True)
class DatasetShape:
    """What the estimate needs of a dataset: sizes, not arrays."""

    pool: int  # images in the train split (the annotation pool)
    height: int
    width: int
    num_classes: int
    cache_bytes: int  # images, masks and instances in the dataset cache


@dataclass(frozen=True)
class ModelFootprint:
    parameters: int  # count
    state_bytes: int  # parameters + gradients + AdamW moments
    activation_bytes: int  # one training batch
    output_bytes_per_image: dict[str, int]  # declared need -> bytes of its array per pool image
    eval_peak_bytes: int = 0  # the most one eval batch's forward pass holds at once (the round's prediction)

    @property
    def working_bytes(self) -> int:
        """Weights and optimiser state, plus the larger of a training batch's and an eval batch's activations
        (a round trains, then predicts: never both at once)."""
        return self.state_bytes + max(self.activation_bytes, self.eval_peak_bytes)


@dataclass
class CampaignEstimate:
    spec: CampaignSpec
    dataset_label: str
    ram: dict[str, int] = field(default_factory=dict)  # private host memory, by term
    device: dict[str, int] = field(default_factory=dict)  # on the GPU (num_gpus > 0), by term
    cache_bytes: int = 0  # the dataset cache (shared by the node's campaigns)
    scratch_bytes: int = 0  # pixel labels (and the strategy process's pool images) on local scratch, not in RAM
    note: str = ""  # why a term is missing (dataset not opened, model not built)
    fits: bool | None = None
    over_cap: bool = False  # a dense strategy whose whole-pool outputs exceed dense_outputs_cap_gib

    @property
    def ram_total(self) -> int:
        return sum(self.ram.values())

    @property
    def device_total(self) -> int:
        return sum(self.device.values())


@dataclass
class Budget:
    """What the campaigns are compared against, and how it was derived."""

    ram_per_campaign: int | None
    gpu_bytes: int | None  # one GPU of this node
    concurrent: int
    basis: str  # one line: what the per-campaign figures are compared against


@dataclass
class BenchmarkEstimate:
    campaigns: list[CampaignEstimate]
    budget: Budget
    datasets: dict[str, DatasetShape | None]  # dataset label -> shape (None: not opened)


def dataset_labels(specs: Iterable[CampaignSpec]) -> dict[str, str]:
    """campaign id -> dataset label: the name, plus the parameters whose value
    differs between this benchmark's campaigns of that name (as the
    leaderboard labels datasets, ``results.leaderboard.dataset_label_sql``)."""
    specs = list(specs)
    varying: dict[str, list[str]] = {}
    for name in {s.dataset for s in specs}:
        params = [s.dataset_params for s in specs if s.dataset == name]
        keys = sorted({k for p in params for k in p})
        varying[name] = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
    out = {}
    for s in specs:
        keys = varying[s.dataset]
        args = ",".join(f"{k}={json.dumps(s.dataset_params.get(k))}" for k in keys)
        out[s.campaign_id] = f"{s.dataset}({args})" if keys else s.dataset
    return out


def dataset_shape(name: str, params: dict[str, Any]) -> DatasetShape:
    """Open the dataset (from the disk cache after the first time: memory maps, nothing read) for its sizes."""
    ds = DATASETS.create(name, **params)
    h, w = ds.image_shape
    cache = sum(a.nbytes for a in (ds.images, ds.masks, ds.instances) if a is not None)
    return DatasetShape(pool=len(ds.splits["train"]), height=h, width=w, num_classes=ds.num_classes, cache_bytes=cache)


def model_footprint(learner: Any, num_classes: int, height: int, width: int, needs: Iterable[str]) -> ModelFootprint:
    """Parameters, optimiser state, one training batch's activations and one eval batch's peak of the
    configured network, and the per-image size of each declared output,
    from forward passes on the ``meta`` device (shapes only, no memory)."""
    import torch

    from alharness.learner.services import forward_heads, meta_network, output_bytes_per_image

    net = meta_network(learner, num_classes)
    params = sum(p.numel() for p in net.parameters())
    state = 4 * sum(p.numel() * p.element_size() for p in net.parameters())  # weights, grads, AdamW exp_avg(_sq)
    state += sum(b.numel() * b.element_size() for b in net.buffers())
    kept: dict[int, Any] = {}  # the outputs themselves (meta tensors: free), so that no id is reused

    def hook(module: Any, inputs: Any, out: Any) -> None:
        for t in out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                kept.setdefault(id(t), t)  # an in-place op's output counts once

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        net.train()
        with torch.no_grad():
            keep = net(torch.empty(learner.batch_size, 3, height, width, device="meta"), heads=())
            activations = sum(t.numel() * t.element_size() for t in kept.values())
            del keep
            kept.clear()
    finally:
        for h in handles:
            h.remove()
    return ModelFootprint(params, state, activations, output_bytes_per_image(learner, num_classes, (height, width), needs),
                          eval_peak_bytes=eval_forward_peak(net, learner.eval_batch_size, height, width,
                                                            forward_heads(learner, needs)))


def eval_forward_peak(net: Any, batch: int, height: int, width: int, heads: tuple[str, ...]) -> int:
    """The most bytes of tensors alive at once during one inference forward pass of ``net`` (on the ``meta``
    device) at ``batch`` images of height × width with ``heads``, the input included: each tensor an
    operator returns is counted from its creation until the last Python reference to its storage goes.
    Full-resolution heads dominate it (MADBAL's with a tiny U-Net, batch 8 of 512×1024: 4.8 GiB of maxrss
    measured, 6.6 GiB estimated: an upper bound, as torch's decompositions on ``meta`` allocate more than
    its CPU kernels do).
    The IoU head is left out: it labels objects on the CPU (its outputs are small)."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.storages: dict[int, list[int]] = {}  # storage -> [live tensors on it, its bytes]
            self.tensors: set[int] = set()
            self.live = self.peak = 0

        def track(self, t: torch.Tensor) -> None:
            if id(t) in self.tensors:  # an in-place operator returns its input
                return
            key = t.untyped_storage()._cdata
            entry = self.storages.get(key)
            if entry is None:
                entry = self.storages[key] = [0, t.untyped_storage().nbytes()]
                self.live += entry[1]
                self.peak = max(self.peak, self.live)
            entry[0] += 1
            self.tensors.add(id(t))
            weakref.finalize(t, self.release, id(t), key)

        def release(self, tensor: int, key: int) -> None:
            self.tensors.discard(tensor)
            entry = self.storages[key]
            entry[0] -= 1
            if entry[0] == 0:
                self.live -= entry[1]
                del self.storages[key]

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.track(t)
            return out

    was_training = net.training
    net.eval()
    mode = LiveBytes()
    try:
        with torch.no_grad(), mode:
            x = torch.empty(batch, 3, height, width, device="meta")
            out = net(x, heads=tuple(h for h in heads if h != "iou"))
            del out, x
    finally:
        net.train(was_training)
    return mode.peak


def label_state_bytes(shape: DatasetShape) -> int:
    """``LabelState`` of the pool: pixels (uint8), image labels (int8), full-mask flags, counts (int16)."""
    n, c = shape.pool, shape.num_classes
    return n * shape.height * shape.width + n * c + n + 2 * n * c


def node_budget(specs: list[CampaignSpec], caches: int, *, memory_per_campaign: int | None = None,
                node_memory: int | None = None, node_cpus: int | None = None, node_gpus: int | None = None,
                gpu_bytes: int | None = None, workers: int | None = None) -> Budget:
    """Each campaign's share of this node (see the module docstring); the
    ``node_*`` / ``gpu_bytes`` defaults are this machine's."""
    cpus = node_cpus or os.cpu_count() or 1
    if node_gpus is None or (node_gpus and gpu_bytes is None):
        node_gpus, gpu_bytes = _this_node_gpus()
    need_cpu = max(s.num_cpus for s in specs)
    need_gpu = max(s.num_gpus for s in specs)
    limits = {"CPU": math.floor(cpus / need_cpu + 1e-9)}
    if need_gpu > 0:
        limits["GPU"] = math.floor(node_gpus / need_gpu + 1e-9) if node_gpus else 0
    if workers:
        limits["workers"] = workers
    concurrent = max(1, min(min(limits.values()), len(specs)))
    why = ", ".join(f"{k} {v}" for k, v in limits.items())
    if memory_per_campaign is not None:
        return Budget(memory_per_campaign, gpu_bytes, concurrent,
                      f"the memory per campaign given, {_size(memory_per_campaign)}")
    mem = node_memory or _this_node_memory()
    share = max(0, mem - caches) // concurrent
    return Budget(share, gpu_bytes, concurrent,
                  f"this node's memory {_size(mem)} minus the dataset caches {_size(caches)}, "
                  f"shared by {concurrent} campaign(s) at once (at most: {why}) = {_size(share)} each")


def _this_node_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _this_node_gpus() -> tuple[int, int | None]:
    import torch

    try:
        n = torch.cuda.device_count()
        return n, (torch.cuda.get_device_properties(0).total_memory if n else None)
    except Exception:  # no driver: no GPU here
        return 0, None


def estimate(specs: Iterable[CampaignSpec], *, open_datasets: bool = True,
             shapes: dict[str, DatasetShape] | None = None, **budget: Any) -> BenchmarkEstimate:
    """Per-campaign memory of ``specs`` and whether each fits its share of the
    node (``budget``: ``node_budget``'s keywords). ``open_datasets`` false: the
    datasets are not opened here (their files exist only on the cluster), so
    the shape-dependent terms are missing. ``shapes``: dataset label -> its
    shape, used instead of opening that dataset (an estimate at sizes whose
    data is elsewhere, as benchmarks/paper_estimates.py makes)."""
    specs = list(specs)
    labels = dataset_labels(specs)
    known: dict[str, DatasetShape | None] = {}
    models: dict[str, ModelFootprint | str] = {}
    strategies: dict[str, tuple[frozenset[str], bool]] = {}  # (needs, streams)
    out: list[CampaignEstimate] = []
    for spec in specs:
        label = labels[spec.campaign_id]
        key = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True)
        if key not in known:
            given = (shapes or {}).get(label)
            known[key] = given if given is not None else \
                dataset_shape(spec.dataset, spec.dataset_params) if open_datasets else None
        shape = known[key]
        est = CampaignEstimate(spec, label)
        out.append(est)
        if shape is None:
            est.note = "dataset not opened (--no-data-check)"
            continue
        est.cache_bytes = shape.cache_bytes
        skey = json.dumps([spec.strategy, spec.strategy_params], sort_keys=True, default=str)
        if skey not in strategies:  # one object per strategy and parameters, not per campaign (seeds, budgets)
            made = STRATEGIES.create(spec.strategy, **spec.strategy_params)
            strategies[skey] = frozenset(made.needs), bool(getattr(made, "streams", False))
        needs, streams = strategies[skey]
        mkey = json.dumps([spec.learner.to_dict(), shape.num_classes, shape.height, shape.width, sorted(needs)],
                          sort_keys=True, default=str)
        if mkey not in models:
            try:
                models[mkey] = model_footprint(spec.learner, shape.num_classes, shape.height, shape.width, needs)
            except Exception as exc:  # a model that cannot be built on the meta device
                models[mkey] = f"model not estimated ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        _fill(est, shape, needs, streams, models[mkey])
    caches = sum(s.cache_bytes for s in known.values() if s is not None)
    node = node_budget(specs, caches, **budget) if specs else Budget(None, None, 0, "no campaigns")
    for est in out:
        if est.ram:
            ok = node.ram_per_campaign is None or est.ram_total <= node.ram_per_campaign
            if est.device:
                share = None if node.gpu_bytes is None else int(node.gpu_bytes * min(1.0, est.spec.num_gpus))
                ok = ok and (share is None or est.device_total <= share)
            est.fits = ok and not est.over_cap
    by_label = {labels[s.campaign_id]: known[json.dumps([s.dataset, s.dataset_params], sort_keys=True)] for s in specs}
    return BenchmarkEstimate(out, node, by_label)


# Each interpreter's own anonymous memory before any pool-sized array: the campaign process (torch, the
# learner, the dataset's maps) and, with strategy_process, the strategy server with the strategy process
# it forks (they share pages copy-on-write: about one interpreter's worth together). benchmarks/perf_memory.py
# prints it ("RAM before round 1"; `import torch` alone is about 0.27 GiB of anonymous memory).
PROCESS_BYTES = 450 * 2**20


def _fill(est: CampaignEstimate, shape: DatasetShape, needs: frozenset[str], streams: bool,
          model: ModelFootprint | str) -> None:
    spec, n, hw = est.spec, shape.pool, shape.height * shape.width
    copies = 2 if spec.strategy_process else 1  # the strategy process gets its own copy of what it is sent
    est.ram["processes"] = copies * PROCESS_BYTES
    labels, pixels = label_state_bytes(shape), n * hw
    if pixels >= mmap_threshold():  # on scratch in the campaign process, and so is the strategy process's copy
        est.scratch_bytes = copies * pixels
        est.ram["labels"] = copies * (labels - pixels)
    else:
        est.ram["labels"] = copies * labels
    if spec.strategy_process:  # the pool's images go to the strategy process once, spilled like the labels
        images = n * hw * 3
        if images >= mmap_threshold():
            est.scratch_bytes += images
        else:
            est.ram["labels"] += images
    oracle = oracle_bytes_per_image(needs, (shape.height, shape.width))
    # uint8 images + uint8 labels, the whole pool labelled; one batch as float32 images + int64 targets
    training = n * hw * (3 + 1) + min(n, spec.learner.batch_size) * hw * (3 * 4 + 8)
    where = est.device if spec.num_gpus > 0 else est.ram
    where["training"] = training
    if isinstance(model, str):
        est.note = model
        est.ram["outputs"] = copies * n * oracle
        return
    per_image = sum(model.output_bytes_per_image.values()) + oracle  # bytes an image
    if streams:  # one eval batch of outputs at a time, sent in runs (the strategy's own results not counted)
        batch = min(n, spec.learner.eval_batch_size) * per_image
        run = min(batch, max(1, SCORE_CHUNK_BYTES // per_image) * per_image) if per_image else 0
        # On a GPU the batch stays on the device and one run at a time comes to the host.
        est.ram["outputs"] = (run if spec.num_gpus > 0 else batch) + (copies - 1) * run
        return _model(est, where, needs, model)
    dense = n * per_image
    est.ram["outputs"] = copies * dense
    if dense > spec.dense_outputs_cap_gib * GIB:
        est.note = (f"dense outputs {_size(dense)} over dense_outputs_cap_gib = {spec.dense_outputs_cap_gib:g}: "
                    "fails before round 0 (the strategy does not stream)")
        est.over_cap = True
    _model(est, where, needs, model)


def _model(est: CampaignEstimate, where: dict[str, int], needs: frozenset[str], model: ModelFootprint) -> None:
    where["model"] = model.working_bytes
    if "train_and_score" in needs:  # trains a second model of the same configuration on a subset
        where["model"] *= 2


def _size(b: int | None) -> str:
    if b is None:
        return "?"
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.1f} {unit}"
    return f"{b} B"


def _resources(spec: CampaignSpec) -> str:
    gpu = f", {spec.num_gpus:g} GPU" if spec.num_gpus else ""
    return f"{spec.num_cpus:g} CPU{gpu}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]


def format_estimate(result: BenchmarkEstimate) -> str:
    """The campaigns, then each one's memory estimate and whether it fits, then what it was compared against."""
    lines = _table(["campaign", "strategy", "dataset", "budget", "seed", "resources"],
                   [[e.spec.campaign_id, e.spec.strategy_label, e.dataset_label, f"{e.spec.budget:g}", str(e.spec.seed),
                     _resources(e.spec)] for e in result.campaigns])
    lines += ["", "memory per campaign (estimate; labels and outputs count the strategy process's copy):"]
    rows = []
    for e in result.campaigns:
        fits = {True: "yes", False: "NO", None: "?"}[e.fits]
        rows.append([e.spec.campaign_id, _size(e.ram.get("processes")), _size(e.ram.get("labels")),
                     _size(e.ram.get("outputs")),
                     _size(e.ram.get("model", e.device.get("model"))), _size(e.ram.get("training", e.device.get("training"))),
                     _size(e.ram_total) if e.ram else "?", _size(e.device_total) if e.device else "-",
                     _size(e.scratch_bytes) if e.scratch_bytes else "-", fits, e.note])
    lines += _table(["campaign", "processes", "labels", "outputs", "model", "training", "RAM", "GPU", "scratch", "fits",
                     ""], rows)
    lines += ["", "datasets (cache memory-mapped, once per node):"]
    for label, shape in result.datasets.items():
        lines.append(f"  {label}: " + ("not opened" if shape is None else
                     f"pool {shape.pool} x {shape.height}x{shape.width}, {shape.num_classes} classes, "
                     f"cache {_size(shape.cache_bytes)}"))
    b = result.budget
    lines.append(f"RAM compared against: {b.basis}")
    if any(e.device for e in result.campaigns):
        lines.append("GPU compared against: " + (f"num_gpus x one GPU of this node ({_size(b.gpu_bytes)})"
                                                 if b.gpu_bytes else "nothing: no GPU on this node"))
    misfits = sum(e.fits is False for e in result.campaigns)
    lines.append(f"{misfits} of {len(result.campaigns)} campaign(s) do not fit" if misfits
                 else "every campaign estimated fits" if all(e.fits for e in result.campaigns) else
                 "some campaigns could not be estimated")
    return "\n".join(lines)


def dry_run(bench: Any, *, open_datasets: bool = True, memory_per_campaign_gib: float | None = None,
            workers: int | None = None, node_cpus: int | None = None) -> str:
    """The ``--dry-run`` report of a loaded benchmark: nothing scheduled, nothing written."""
    if memory_per_campaign_gib is not None and not memory_per_campaign_gib > 0:
        raise AlharnessError(f"--memory-per-campaign must be > 0 GiB, got {memory_per_campaign_gib:g}")
    mem = None if memory_per_campaign_gib is None else int(memory_per_campaign_gib * GIB)
    result = estimate(bench.specs, open_datasets=open_datasets, memory_per_campaign=mem, workers=workers,
                      node_cpus=node_cpus)
    upto = "up to " if bench.seeding is not None else ""
    head = f"benchmark {bench.name!r}: {upto}{len(bench.specs)} campaigns (dry run: nothing scheduled, nothing written)"
    return head + "\n" + format_estimate(result)
