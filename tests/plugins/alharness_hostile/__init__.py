"""A hostile strategy package, installed for the tests through a real entry
point (``alharness.strategies``), as a plugin author would ship it.

Each strategy tries one route to ground truth it has not bought (issue 22,
"What a hostile plugin did"): writes to the label state through the views'
``.base`` or ``setflags(write=True)``; reads through the caller's frames,
the garbage collector, the memory-map file names of ``PoolView`` images,
the in-process dataset memo and ``train_and_score``'s internals; and two
abuses of the strategy process's pipe. It never buys anything after round
0: what it finds it writes into the labels (the cheat that ranked first).

It reports what it found in its diagnostics: the kinds of harness objects it
reached, the file names it saw, and a short hash of every non-constant
(H, W) uint8 plane it could read, so a test can check that none of them is
a mask the campaign did not buy. Test use only.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import os
import pickle
import sys
import time
import types
import warnings
from typing import Any

import numpy as np

from alharness import Strategy, register_strategy

# Harness-side classes whose instances lead to ground truth, labels or the oracle.
TELLING = {"Oracle", "SplitData", "SegmentationDataset", "PoolTruth", "ImageTruth", "LabelState", "TrainAndScore",
           "Ledger", "CampaignState", "CampaignSetup", "Learner", "memmap"}
_MAX_PLANES = 5000


def _children(obj: Any) -> list:
    if isinstance(obj, np.ndarray):
        return [] if obj.base is None else [obj.base]
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, types.FrameType):
        return [*obj.f_locals.values(), obj.f_back]
    out = []
    try:
        out.append(vars(obj))
    except TypeError:
        pass
    for slot in getattr(type(obj), "__slots__", ()):
        if isinstance(slot, str) and hasattr(obj, slot):
            out.append(getattr(obj, slot))
    if isinstance(obj, types.MethodType):
        out.append(obj.__self__)
    if isinstance(obj, types.FunctionType):
        for cell in obj.__closure__ or ():
            try:
                out.append(cell.cell_contents)
            except ValueError:
                pass
    return out


def walk(roots: list, depth: int = 12, limit: int = 300_000) -> list:
    """Everything reachable from ``roots`` (modules, classes and scalars excluded)."""
    with warnings.catch_warnings():  # some library objects warn when touched (deprecated aliases)
        warnings.simplefilter("ignore")
        return _walk(roots, depth, limit)


def _walk(roots: list, depth: int, limit: int) -> list:
    seen, out, stack = set(), [], [(r, 0) for r in roots]
    while stack and len(seen) < limit:
        obj, d = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type, str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        out.append(obj)
        if d < depth:
            try:
                stack.extend((c, d + 1) for c in _children(obj))
            except Exception:  # noqa: BLE001 (a property that raises: skip it)
                pass
    return out


def fingerprint(planes: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(planes).tobytes()).hexdigest()[:16]


class Findings:
    """What a route reached."""

    def __init__(self, image_shape: tuple[int, int]):
        self.shape = tuple(image_shape)
        self.kinds: set[str] = set()
        self.files: set[str] = set()
        self.planes: set[str] = set()
        self.pool_masks: list[np.ndarray] = []  # candidates for (N, H, W) pool ground truth

    def look(self, objs: list, pool_size: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._look(objs, pool_size)

    def _look(self, objs: list, pool_size: int) -> None:
        for o in objs:
            name = type(o).__name__
            if name in TELLING:
                self.kinds.add(name)
            fn = getattr(o, "filename", None) if isinstance(o, np.ndarray) else None
            if isinstance(fn, (str, os.PathLike)):
                self.files.add(str(fn))
            if isinstance(o, np.ndarray) and o.dtype == np.uint8 and o.ndim in (2, 3) and o.shape[-2:] == self.shape:
                self.add_planes(o, pool_size)

    def add_planes(self, a: np.ndarray, pool_size: int) -> None:
        planes = a.reshape(-1, *self.shape)
        for p in planes[: max(0, _MAX_PLANES - len(self.planes))]:
            if p.min() != p.max():
                self.planes.add(fingerprint(p))
        if a.ndim == 3 and len(a) == pool_size:
            self.pool_masks.append(a)

    def report(self, route: str, wrote: bool) -> dict[str, Any]:
        return {"route": route, "kinds": sorted(self.kinds), "files": sorted(self.files),
                "planes": sorted(self.planes), "wrote": wrote}


def force_write(view: np.ndarray, value: Any, how: str) -> bool:
    """Write ``value`` into ``view``'s memory through its base or after
    setflags(write=True); True if a write happened."""
    target = view
    if how == "base":
        while isinstance(target, np.ndarray) and not target.flags.writeable and target.base is not None:
            target = target.base
        if not isinstance(target, np.ndarray) or not target.flags.writeable:
            return False
        target = target.reshape(view.shape) if target.size == view.size else None
        if target is None:
            return False
    else:
        try:
            target.setflags(write=True)
        except ValueError:
            return False
    target[...] = value
    return True


class Cheat(Strategy):
    """Round 0: the default initial masks. Later rounds: one route, then
    whatever it found written into the labels; nothing bought."""

    route = ""
    how = "base"  # how found masks are written: "base" or "setflags"

    def __init__(self, marker: str = "", write: bool = True):
        self.marker = marker  # a file some routes create, to prove they ran (or that a payload did not)
        self.write = write  # False: only report what the route found (the tests' positive control)
        self._report: dict[str, Any] = {}

    def read(self, ctx, found: Findings) -> None:
        """Fill ``found`` by this strategy's route."""

    def propose(self, ctx):
        found = Findings(ctx.pool.image_shape)
        with warnings.catch_warnings():  # some library objects warn when touched (deprecated aliases)
            warnings.simplefilter("ignore")
            self.read(ctx, found)
        wrote = False
        for masks in found.pool_masks if self.write else ():
            if masks is ctx.labels.pixels or np.array_equal(masks, ctx.labels.pixels):
                continue
            wrote = force_write(ctx.labels.pixels, masks, self.how) or wrote
            wrote = force_write(ctx.labels.has_full_mask, True, self.how) or wrote
            break
        self._report = found.report(self.route, wrote)
        return []

    def diagnostics(self):
        return self._report


class _Write(Cheat):
    """Writes class 0 into every unknown pixel (and marks every mask bought), by ``how``."""

    def propose(self, ctx):
        wrote = force_write(ctx.labels.pixels, 0, self.how) and force_write(ctx.labels.has_full_mask, True, self.how)
        self._report = {"route": self.route, "wrote": bool(wrote)}
        return []


@register_strategy("hostile_write_base")
class WriteBase(_Write):
    """Writes labels it did not buy through ``ctx.labels.pixels.base``."""

    route, how = "write_base", "base"


@register_strategy("hostile_write_setflags")
class WriteSetflags(_Write):
    """Writes labels it did not buy after ``ctx.labels.pixels.setflags(write=True)``."""

    route, how = "write_setflags", "setflags"


@register_strategy("hostile_frames")
class Frames(Cheat):
    """Reads the callers' frames (``sys._getframe``, ``inspect.stack``)."""

    route = "frames"

    def read(self, ctx, found):
        frames, f = [], sys._getframe(1)
        while f is not None:
            frames.append(f)
            f = f.f_back
        frames += [info.frame for info in inspect.stack()]
        found.look(walk(frames), len(ctx.pool))


@register_strategy("hostile_gc")
class GarbageCollector(Cheat):
    """Reads every object the garbage collector tracks."""

    route = "gc"

    def read(self, ctx, found):
        objs = gc.get_objects()
        telling = [o for o in objs if type(o).__name__ in TELLING]
        found.look(walk(telling, depth=3), len(ctx.pool))
        found.look(walk([o for o in objs if isinstance(o, dict)], depth=1), len(ctx.pool))


@register_strategy("hostile_memmap")
class MemmapFiles(Cheat):
    """Follows the pool images' memory map (and this process's mapped files) to
    the cache and loads ``masks.npy`` beside them."""

    route = "memmap"

    def read(self, ctx, found):
        found.look(walk([ctx.pool.images]), len(ctx.pool))
        try:  # every file this process has mapped
            with open("/proc/self/maps") as fh:
                found.files.update(line.split()[-1] for line in fh if line.rstrip().endswith(".npy"))
        except OSError:
            pass
        for name in list(found.files):
            path = os.path.join(os.path.dirname(name), "masks.npy")
            if os.path.exists(path):
                masks = np.load(path, mmap_mode="r")
                ids = np.asarray(ctx.pool.dataset_ids)
                # The process maps other datasets' caches too (earlier tests in
                # the same pytest run): only a cache this pool could come from counts.
                if masks.ndim != 3 or masks.shape[-2:] != found.shape or (len(ids) and ids.max() >= len(masks)):
                    continue
                found.add_planes(np.asarray(masks), -1)
                found.pool_masks.append(np.asarray(masks)[ids])


@register_strategy("hostile_memo")
class DatasetMemo(Cheat):
    """Reads the datasets this process has opened (``alharness.datasets.cache._memo``)."""

    route = "memo"

    def read(self, ctx, found):
        from alharness.datasets import cache

        ids = np.asarray(ctx.pool.dataset_ids)
        for ds in list(cache._memo.values()):
            found.kinds.add(type(ds).__name__)
            # The memo may hold other tests' datasets too: only one this pool could come from counts.
            if ds.masks.shape[-2:] != found.shape or (len(ids) and ids.max() >= len(ds.masks)):
                continue
            found.add_planes(np.asarray(ds.masks), -1)
            found.pool_masks.append(np.asarray(ds.masks)[ids])


@register_strategy("hostile_service")
class ServiceInternals(Cheat):
    """Reads ``train_and_score``'s internals (its label state, the validation masks)
    and asks it to train on images it has not bought."""

    route = "service"
    needs = frozenset({"train_and_score"})

    def read(self, ctx, found):
        found.look(walk([ctx.train_and_score]), len(ctx.pool))
        state = getattr(ctx.train_and_score, "_state", None)
        if state is not None:
            found.kinds.add(type(state).__name__)
            if self.write:  # a writable label state: write straight into it
                force_write(state.pixels, 0, "base")
        unbought = [int(i) for i in np.flatnonzero(~ctx.labels.has_full_mask)]
        try:
            ctx.train_and_score(masks=unbought[:1], labels=[], seed=0)
            found.kinds.add("trained on unbought data")
        except Exception as exc:  # noqa: BLE001
            found.kinds.add(f"refused: {type(exc).__name__}")
        bought = [int(i) for i in np.flatnonzero(ctx.labels.has_full_mask)]
        score = ctx.train_and_score(masks=bought, labels=[], seed=0, steps=2)
        if not 0.0 <= score <= 1.0:
            found.kinds.add("bad score")


class _Payload:
    """Unpickling this creates the marker file: code run where it is unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pipe(ctx) -> Any:
    """The strategy process's pipe to the campaign process, if one is reachable."""
    for o in walk([ctx, sys._getframe(1)], depth=6):
        if type(o).__name__ == "Connection":
            return o
    return None


@register_strategy("hostile_pickle")
class PicklePayload(Cheat):
    """Sends the campaign process a pickle that would run code when unpickled."""

    route = "pickle"

    def propose(self, ctx):
        conn = _pipe(ctx)
        if conn is None:  # in process: hand the loop a query subclass with the payload instead
            return [_PayloadQuery(0)]
        conn.send_bytes(pickle.dumps(("batch", _Payload(self.marker), None)))
        time.sleep(30)  # the campaign process must refuse it, not wait for more
        return []


@register_strategy("hostile_forge")
class ForgedCall(Cheat):
    """Asks the campaign process for a service it did not declare (the oracle)."""

    route = "forge"

    def propose(self, ctx):
        conn = _pipe(ctx)
        if conn is not None:
            conn.send_bytes(pickle.dumps(("call", "oracle", [[0]], {})))
            time.sleep(30)
        return []


@register_strategy("hostile_hang")
class Hang(Strategy):
    """Writes its pid to ``marker`` in round 1, then never returns (a hung plugin)."""

    def __init__(self, marker: str = ""):
        self.marker = marker

    def propose(self, ctx):
        if self.marker:
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
        while True:
            time.sleep(0.05)


@register_strategy("hostile_idle")
class Idle(Strategy):
    """Buys the default initial masks, then nothing (what every cheat must equal)."""

    def propose(self, ctx):
        return []


from alharness import FullMask  # noqa: E402


class _PayloadQuery(FullMask):
    """A query subclass (refused by the oracle as no known type)."""

    kind = "full_mask"
