"""Strategies in a process of their own: the strategy worker.

By default a campaign runs its strategy in a child process started for that
campaign (``[resources] strategy_process = true``). The child is forked from
a clean server (``_Zygote``): a fresh interpreter that has imported the
strategy plugins and nothing else, so the child inherits no memory of the
campaign process —
no oracle, no ground truth, no test or validation split, no dataset memo, no
learner. What it gets, by message and as copies:

* once: the strategy's name and parameters (it builds the strategy with the
  registry), the pool view's images, ids and class names, and a fresh
  instance of the enforced cost model prepared with the pool's public facts
  (``quote`` is a pure function of the query, its parameters and the pool's
  size, image shape and class count, so the child's copy prices exactly as
  the oracle's does; the oracle re-prices every batch anyway);
* each round: the label state as bought, the declared outputs, the round
  and budget figures, the round's generator and torch's global RNG state.
  A streaming strategy (``Strategy.score``) gets the label state and the
  model once per round, then the declared outputs one run at a time (the
  whole images of an eval batch that fit ``SCORE_CHUNK_BYTES``): the child
  calls ``score`` on each run and keeps the results, so at most one run of
  outputs is in flight; ``propose`` then reads them in ``ctx.scores``
  (the results never leave the strategy process).

Copies from 1 MiB on travel as sealed anonymous memory (memfds); the pool's
images and the pixel labels from ``ALHARNESS_LABELS_MMAP_BYTES`` on (default
256 MiB) as files on local scratch unlinked at birth (``Spilled``), which
the kernel can write back and reclaim: a memfd of a Cityscapes-sized pool
would hold gigabytes of RAM for the whole campaign. Neither has a name that
leads to the dataset cache.

It returns queries by value (kind and fields; a restricted unpickler in the
campaign process accepts nothing but plain values and numpy arrays, so
unpickling a reply runs no plugin code). Loop services (``train_and_score``)
answer by message: the child sends the request, the campaign process trains
and replies with the score. ``diagnostics()``, ``get_state()`` and
``set_state()`` travel by message too; the strategy's state stays an opaque
pickle on the campaign side (unpickled only where the strategy runs).

``InProcessStrategy`` runs the strategy in the campaign's own process
(``strategy_process = false``, for debugging: breakpoints work). Reads are
not guarded there; the loop's label-state digest still fails a campaign
whose strategy wrote to labels it did not buy.

docs/architecture.md ("Fairness and threat model") says what this stops
and what it does not.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import importlib.metadata
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import traceback
import weakref
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Protocol

import numpy as np

from alharness.campaign.memory import release_freed_memory
from alharness.contract.queries import QUERY_TYPES, Query
from alharness.contract.strategy import (LOOP_NEEDS, ScoreBatch, Strategy, StrategyContext, check_score_result,
                                         concat_scores)
from alharness.contract.views import LabelStateView, PoolView
from alharness.errors import PluginError
from alharness.registry import STRATEGIES

# Context fields that travel once (pool) or are rebuilt in the child (quote,
# labels, services, the model).
_LOCAL_FIELDS = ("pool", "labels", "quote", "model")
_REPR_LIMIT = 200


class StrategyHandle(Protocol):
    """What the campaign loop uses of a strategy, wherever it runs."""

    needs: frozenset[str]
    oracle_experiment: bool
    paces_itself: bool
    in_process: bool  # the strategy's code runs in the campaign's process (and can reach its arrays)
    streams: bool  # it overrides Strategy.score: the loop sends it the pool's outputs batch by batch

    def begin_scoring(self, pool: PoolView, rnd: int, labels: LabelStateView, model: Any = None) -> None: ...
    def score(self, start: int, stop: int, outputs: dict[str, np.ndarray], deadline: Any = None) -> None: ...
    def select(self, ctx: StrategyContext, deadline: Any = None) -> Any: ...
    def diagnostics(self) -> str: ...
    def get_state(self) -> Any: ...
    def set_state(self, state: Any) -> None: ...
    def close(self) -> None: ...


class StrategyError(PluginError):
    """The strategy raised something other than an alharness or builtin error,
    or its process died or broke the protocol."""


class RemoteTraceback(Exception):
    """The strategy process's traceback, chained as the cause of its error."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\nTraceback in the strategy process:\n{self.tb}"


def _flags(strategy: Any) -> dict[str, Any]:
    """What the loop reads of a built strategy (instance-level: MADBAL's needs depend on its parameters)."""
    return {"needs": sorted(str(n) for n in getattr(strategy, "needs", frozenset())),
            "oracle_experiment": bool(getattr(strategy, "oracle_experiment", False)),
            "paces_itself": bool(getattr(strategy, "paces_itself", False)),
            "streams": bool(getattr(strategy, "streams", False))}


def _take_flags(handle: Any, flags: dict[str, Any]) -> None:
    handle.needs = frozenset(flags["needs"])
    handle.oracle_experiment = flags.get("oracle_experiment") is True
    handle.paces_itself = flags.get("paces_itself") is True
    handle.streams = flags.get("streams") is True


class _Scoring:
    """A streaming strategy's round where it runs: what ``begin_scoring`` gave
    (pool, round, labels, model) and the results of the batches scored so far."""

    def __init__(self, pool: PoolView, rnd: int, labels: LabelStateView, model: Any):
        self.pool, self.round, self.labels, self.model = pool, rnd, labels, model
        self.parts: list[tuple[int, dict[str, Any]]] = []

    def score(self, strategy: Strategy, start: int, stop: int, outputs: dict[str, np.ndarray]) -> None:
        batch = ScoreBatch(pool=self.pool, labels=self.labels, round=self.round, start=start,
                           images=self.pool.images[start:stop], model=self.model, **outputs)
        n = stop - start
        self.parts.append((n, check_score_result(strategy.score(batch), n, _who(strategy))))


def _who(strategy: Any) -> str:
    return f"strategy {getattr(strategy, 'name', '') or type(strategy).__name__!r}"


def _select(strategy: Strategy, ctx: StrategyContext, scoring: _Scoring | None = None) -> Any:
    if ctx.round == 0:
        return strategy.initial(ctx)
    if scoring is not None and scoring.round == ctx.round:
        ctx = dataclasses.replace(ctx, scores=concat_scores(scoring.parts, _who(strategy)))
    return strategy.propose(ctx)


def _diagnostics_json(strategy: Strategy) -> str:
    return json.dumps(strategy.diagnostics(), sort_keys=True, default=str)


def _dump_state(strategy: Strategy) -> bytes:
    """The strategy's state as a checkpoint holds it: pickled where the strategy runs."""
    return pickle.dumps(strategy.get_state(), protocol=5)


def _load_state(strategy: Strategy, state: Any) -> None:
    # Checkpoints written before states were always pickled hold the state itself.
    strategy.set_state(pickle.loads(state) if isinstance(state, bytes) else state)


# -- in process ------------------------------------------------------------------
class InProcessStrategy:
    """The strategy in the campaign's own process (``strategy_process = false``)."""

    in_process = True

    def __init__(self, name: str, params: dict[str, Any]):
        self.strategy: Strategy = STRATEGIES.create(name, **params)
        _take_flags(self, _flags(self.strategy))
        self._scoring: _Scoring | None = None

    def begin_scoring(self, pool: PoolView, rnd: int, labels: LabelStateView, model: Any = None) -> None:
        self._scoring = _Scoring(pool, rnd, labels, model)

    def score(self, start: int, stop: int, outputs: dict[str, np.ndarray], deadline: Any = None) -> None:
        self._scoring.score(self.strategy, start, stop, outputs)

    def select(self, ctx: StrategyContext, deadline: Any = None) -> Any:
        scoring, self._scoring = self._scoring, None
        return _select(self.strategy, ctx, scoring)

    def diagnostics(self) -> str:
        return _diagnostics_json(self.strategy)

    def get_state(self) -> bytes:
        """The strategy's state pickled, as a strategy process sends it (either handle resumes from it)."""
        return _dump_state(self.strategy)

    def set_state(self, state: Any) -> None:
        _load_state(self.strategy, state)

    def close(self) -> None:
        pass


def open_strategy(name: str, params: dict[str, Any], *, in_process: bool, pool: PoolView, quote_model: Any,
                  deadline: Any = None) -> StrategyHandle:
    """The campaign's strategy: in a strategy process (default) or in this one."""
    if in_process:
        return InProcessStrategy(name, params)
    return StrategyWorker(name, params, pool, quote_model, deadline)


# -- what crosses the pipe -------------------------------------------------------
# The only globals a reply from a strategy process may name: numpy's array and
# scalar reconstructors. Everything else in a reply is a plain value.
_SAFE_GLOBALS = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
_SAFE_GLOBALS |= {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"a strategy process may send plain values only, not {module}.{name}")
        return super().find_class(module, name)


def _safe_loads(data: bytes) -> Any:
    return _SafeUnpickler(io.BytesIO(data)).load()


class _Foreign:
    """Stands in for what a strategy returned that is no query (the oracle refuses it by name)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _foreign(obj: Any) -> tuple:
    text = repr(obj)
    return ("foreign", type(obj).__name__, text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "...")


def _plain(v: Any) -> Any:
    """``v`` if it is a plain value (recursively), else a stand-in carrying its repr."""
    if v is None or isinstance(v, (bool, int, float, str, np.generic)):
        return v
    if isinstance(v, np.ndarray) and v.dtype != object:
        return np.array(v)  # an ndarray, never a subclass (a memmap would carry nothing anyway)
    if isinstance(v, tuple):
        return ("tuple", [_plain(x) for x in v])
    if isinstance(v, list):
        return ("list", [_plain(x) for x in v])
    return _foreign(v)


def _unplain(v: Any) -> Any:
    if isinstance(v, tuple) and v and v[0] in ("tuple", "list"):
        items = [_unplain(x) for x in v[1]]
        return tuple(items) if v[0] == "tuple" else items
    if isinstance(v, tuple) and v and v[0] == "foreign":
        return type(str(v[1]), (_Foreign,), {})(str(v[2]))
    return v


def encode_batch(batch: Any) -> Any:
    """A strategy's result as plain values: each query as (kind, fields); anything
    else (a None, a generator, a query subclass) as a stand-in the oracle refuses."""
    if not isinstance(batch, (list, tuple)):
        return _foreign(batch)
    out = []
    for q in batch:
        if isinstance(q, Query) and QUERY_TYPES.get(type(q).kind) is type(q):
            out.append(("query", type(q).kind, {f.name: _plain(getattr(q, f.name)) for f in dataclasses.fields(q)}))
        else:
            out.append(_foreign(q))
    return ("list" if isinstance(batch, list) else "tuple", out)


def decode_batch(wire: Any) -> Any:
    """The queries again, built from their kind and fields on the campaign side."""
    if not (isinstance(wire, tuple) and len(wire) == 2 and wire[0] in ("list", "tuple")):
        return _unplain(wire)
    out = []
    for item in wire[1]:
        if isinstance(item, tuple) and len(item) == 3 and item[0] == "query" and item[1] in QUERY_TYPES:
            cls = QUERY_TYPES[item[1]]
            names = {f.name for f in dataclasses.fields(cls)}
            fields = item[2] if isinstance(item[2], dict) and set(item[2]) == names else None
            out.append(cls(**{k: _unplain(v) for k, v in fields.items()}) if fields is not None
                       else _Foreign(f"<malformed {item[1]} query>"))
        else:
            out.append(_unplain(item))
    return out if wire[0] == "list" else tuple(out)


def _exception_wire(exc: BaseException) -> tuple[str, str, str, str]:
    return type(exc).__module__, type(exc).__qualname__, str(exc), traceback.format_exc()


def _rebuild_exception(module: str, qualname: str, message: str, *, may_import: bool = False) -> Exception | None:
    """An exception of the named class, if it is a builtin or an alharness error
    (built with Exception's own init: no plugin code runs). The campaign side
    never imports for this (``may_import``: the strategy process, rebuilding a
    service's error, may import the harness module that defines it)."""
    if module != "builtins" and not module.startswith("alharness."):
        return None
    if may_import and module not in sys.modules:
        try:
            importlib.import_module(module)
        except ImportError:
            return None
    cls: Any = sys.modules.get(module)
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


# -- in a strategy process ---------------------------------------------------------
class _Zygote:
    """A clean server that forks one strategy process per campaign.

    It is a fresh interpreter (``python -c``, the campaign process's
    ``sys.path``) that has imported the strategy plugins and nothing else, so
    its forks inherit no memory of the campaign process. Unlike
    multiprocessing's forkserver, a fork does not re-run the campaign
    process's ``__main__`` (a Ray worker's, pytest's). It starts once per
    campaign process (~3 s: torch, sklearn, the plugins); a fork then costs
    ~20 ms. It exits when the campaign process closes its socket (or dies)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config = {"fd": theirs.fileno(), "sys_path": list(sys.path), "preload": _preload_modules()}
        code = "from alharness.campaign.strategy_worker import zygote_main; zygote_main()"
        self._proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(config)], pass_fds=[theirs.fileno()],
                                      stdin=subprocess.DEVNULL)
        theirs.close()
        self._sock = ours
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Close the socket (the server exits on EOF) and reap it."""
        self._sock.close()
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def fork(self) -> tuple[Connection, int]:
        """A new strategy process: the campaign side of its pipe, and its pid."""
        with self._lock:
            mine, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                socket.send_fds(self._sock, [b"f"], [child.fileno()])
                pid = b""
                while len(pid) < 8:
                    chunk = self._sock.recv(8 - len(pid))
                    if not chunk:
                        raise StrategyError("the strategy processes' server exited")
                    pid += chunk
            finally:
                child.close()
        return Connection(mine.detach()), int.from_bytes(pid, "little")


_ZYGOTE: _Zygote | None = None
_ZYGOTE_LOCK = threading.Lock()


def _zygote() -> _Zygote:
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is None or not _ZYGOTE.alive():
            if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
                raise PluginError("strategy processes need os.fork (Linux, macOS); "
                                  "set [resources] strategy_process = false to run strategies in process")
            _ZYGOTE = _Zygote()
        return _ZYGOTE


# Imported lazily by torch on first use and costly (torch.optim imports
# torch._dynamo: ~1.4 s): the server imports them once, after its first fork,
# rather than every strategy process that trains something (full_or_weak_gp's GP).
_WARM_LATER = ("torch._dynamo",)


def _preload_modules() -> list[str]:
    """This module and the strategy plugins this process imported without error
    (a module that fails to import is left to the child that needs it)."""
    names = ["alharness.campaign.strategy_worker", "alharness.campaign.reference"]
    names += [ep.module for ep in importlib.metadata.entry_points(group=STRATEGIES.group)]
    return [n for n in dict.fromkeys(names) if n in sys.modules]


def warm_up() -> None:
    """Start the server now (it boots while the campaign loads its data)."""
    _zygote()


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent process exits (best effort), so that a
    killed campaign process leaves no strategy process behind."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def zygote_main() -> None:
    """The server's main loop (see ``_Zygote``): one fork per request."""
    config = json.loads(sys.argv[1])
    sys.path[:] = config["sys_path"]
    _die_with_parent()
    sock = socket.socket(fileno=config["fd"])
    for name in config["preload"]:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (the child that needs it reports the error)
            pass
    try:
        STRATEGIES.names()  # load the registry once here, not in every fork
    except Exception:  # noqa: BLE001
        pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks are reaped by the kernel
    warm = list(_WARM_LATER)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
        except OSError:
            return
        if not msg or not fds:
            return  # the campaign process closed its end: exit
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            _die_with_parent()
            code = 1
            try:
                serve(Connection(fds[0]))
                code = 0
            finally:
                os._exit(code)
        os.close(fds[0])
        sock.sendall(pid.to_bytes(8, "little"))
        while warm:  # after the first fork, so that it is not delayed
            try:
                importlib.import_module(warm.pop(0))
            except Exception:  # noqa: BLE001
                pass


def _send(conn: Any, msg: Any) -> None:
    """Strategy process -> campaign process: a pickle of plain values (read with ``_safe_loads``)."""
    conn.send_bytes(pickle.dumps(msg, protocol=5))


# Array buffers from this size on travel from the campaign process as sealed
# anonymous memory (a memfd: no file name, read-only in the strategy process)
# instead of through the socket: 46 MB of probabilities take ~0.06 s, not ~0.15 s,
# and a large pool's images are not copied into a pickle.
_SHARE_BYTES = 1 << 20
_SEALS = ("F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE")


def _memfd(raw: memoryview) -> int:
    import fcntl
    import mmap

    fd = os.memfd_create("alharness-context", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, raw.nbytes)
    with mmap.mmap(fd, raw.nbytes) as m:
        m[:] = raw
    seals = 0
    for name in _SEALS:
        seals |= getattr(fcntl, name, 0)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


class Spilled:
    """Marks an array that ``send_shared`` sends as a nameless file on local scratch instead of a memfd.

    A memfd is RAM until the other end drops it; a large pool's images (sent once) or pixel labels would
    pin their whole size there for the campaign's life. A file unlinked as it is created
    (``ALHARNESS_SCRATCH``, as the label state's) has no name to lead anywhere, and its pages are page cache
    that the kernel writes back and reclaims."""

    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array)


def spilled_if_large(a: np.ndarray) -> Any:
    """``a`` marked ``Spilled`` from the label state's memory-map threshold (``ALHARNESS_LABELS_MMAP_BYTES``) on."""
    from alharness.annotation.labels import mmap_threshold

    return Spilled(a) if a.nbytes and a.nbytes >= mmap_threshold() else a


def _spill_fd(a: np.ndarray) -> int:
    """A read-only fd of a nameless scratch file holding ``a``'s bytes."""
    import tempfile

    from alharness.annotation.labels import SCRATCH_ENV

    with tempfile.TemporaryFile(prefix="alharness-wire-", dir=os.environ.get(SCRATCH_ENV) or None) as fh:
        fh.write(memoryview(a.reshape(-1)).cast("B") if a.size else b"")
        fh.flush()
        # Reopened read-only through /proc: the strategy process gets no writable descriptor.
        return os.open(f"/proc/self/fd/{fh.fileno()}", os.O_RDONLY | os.O_CLOEXEC)


class _SharingPickler(pickle.Pickler):
    """Protocol 5; a ``Spilled`` array becomes (file k, dtype, shape) and an fd of its nameless file."""

    def __init__(self, file: Any, buffer_callback: Callable, files: list[int]):
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self.files = files

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not Spilled:
            return None
        self.files.append(_spill_fd(obj.array))
        return ("spilled", len(self.files) - 1, obj.array.dtype.str, tuple(obj.array.shape))


def send_shared(conn: Connection, obj: Any) -> None:
    """Campaign process -> strategy process: ``obj`` pickled, its large array buffers as memfds, and its
    ``Spilled`` arrays as read-only fds of nameless scratch files."""
    big: list[pickle.PickleBuffer] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        if hasattr(os, "memfd_create") and buf.raw().nbytes >= _SHARE_BYTES:
            big.append(buf)
            return False
        return True

    files: list[int] = []
    memfds: list[int] = []  # closed below however far this gets
    out = io.BytesIO()
    try:
        _SharingPickler(out, out_of_band, files).dump(obj)
        for b in big:
            memfds.append(_memfd(b.raw()))
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            conn.send_bytes(out.getbuffer())
            head = len(big).to_bytes(4, "little") + len(files).to_bytes(4, "little")
            socket.send_fds(sock, [head], memfds + files)
        finally:
            sock.close()
    finally:
        for fd in memfds + files:
            os.close(fd)


def _map_file(fd: int, dtype: str, shape: tuple) -> np.ndarray:
    """The read-only array a ``Spilled`` one arrives as: a read-only (shared) map of its file."""
    import mmap

    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.empty(shape, np.dtype(dtype))
    return np.ndarray(shape, dtype=np.dtype(dtype), buffer=memoryview(mmap.mmap(fd, 0, prot=mmap.PROT_READ)))


class _SharingUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, buffers: list, files: list[int]):
        super().__init__(file, buffers=buffers)
        self.files = files

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "spilled" and 0 <= pid[1] < len(self.files)):
            raise pickle.UnpicklingError("a message named a shared file it did not carry")
        return _map_file(self.files[pid[1]], str(pid[2]), tuple(pid[3]))


class WireError(Exception):
    """A message arrived but could not be read (lost buffers, a bad shared file): not the peer's end."""


def recv_shared(conn: Connection) -> Any:
    """The other end of ``send_shared``: arrays on large buffers are read-only maps of them."""
    import mmap

    data = conn.recv_bytes()
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        head, fds, _, _ = socket.recv_fds(sock, 8, 1024)
        while 0 < len(head) < 8:
            head += sock.recv(8 - len(head))
    finally:
        sock.close()
    try:
        if not head:
            raise EOFError
        n_buffers, n_files = int.from_bytes(head[:4], "little"), int.from_bytes(head[4:], "little")
        if len(fds) != n_buffers + n_files:
            raise WireError(f"a message lost its shared buffers ({len(fds)} of {n_buffers + n_files} arrived)")
        buffers = [memoryview(mmap.mmap(fd, 0, prot=mmap.PROT_READ)) for fd in fds[:n_buffers]]
        return _SharingUnpickler(io.BytesIO(data), buffers, fds[n_buffers:]).load()
    finally:
        for fd in fds:  # the maps keep what they need
            os.close(fd)


class _Service:
    """A loop service inside the strategy process: each call is a request to
    the campaign process, which computes the answer and replies."""

    def __init__(self, conn: Any, name: str):
        self._conn, self._name = conn, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        def wire(v: Any) -> Any:
            if isinstance(v, (np.ndarray, str, bytes)) or not hasattr(v, "__iter__"):
                return _plain(v)
            return _plain(list(v))  # ranges, sets, generators: as lists

        _send(self._conn, ("call", self._name, [wire(a) for a in args], {str(k): wire(v) for k, v in kwargs.items()}))
        reply = recv_shared(self._conn)
        if reply[0] == "raise":
            module, qualname, message = reply[1]
            exc = _rebuild_exception(module, qualname, message, may_import=True) or RuntimeError(f"{qualname}: {message}")
            raise exc
        return reply[1]


def _readonly(v: Any) -> Any:
    """``v`` with every array in it (itself, or a dict's values) made read-only."""
    if isinstance(v, np.ndarray):
        v.setflags(write=False)
    elif isinstance(v, dict):
        for a in v.values():
            _readonly(a)
    return v


def _child_labels(wire: dict[str, Any]) -> LabelStateView:
    return LabelStateView(**{k: _readonly(v) for k, v in wire.items()})


def _child_model(wire: bytes | None) -> Any:
    if wire is None:
        return None
    import torch

    return torch.load(io.BytesIO(wire), weights_only=False)


def _child_context(msg: dict[str, Any], pool: PoolView, quote: Callable, conn: Any,
                   scoring: _Scoring | None = None) -> StrategyContext:
    """The round's StrategyContext, rebuilt from the message (every array read-only);
    a streaming round's label state and model are those its scoring received."""
    import torch

    reuse = msg.get("reuse") and scoring is not None
    labels = scoring.labels if reuse else _child_labels(msg["labels"])
    fields = {k: _readonly(v) for k, v in msg["fields"].items()}
    fields.update({name: _Service(conn, name) for name in msg["services"]})
    model = scoring.model if reuse else _child_model(msg["model"])
    if model is not None:
        fields["model"] = model
    torch.set_rng_state(torch.from_numpy(msg["torch_rng"]))
    return StrategyContext(pool=pool, labels=labels, quote=quote, **fields)


def _build_in_child(init: dict[str, Any]) -> tuple[Strategy, PoolView, Callable]:
    import torch

    torch.set_num_threads(init["threads"])
    if init["module"] not in sys.modules:  # registered at run time (not an entry point): import its module
        if init["module"] == "__main__":
            raise PluginError(f"strategy {init['name']!r} is defined in the main script, which a strategy process "
                              "does not run: move it into an importable module, or set [resources] "
                              "strategy_process = false")
        sys.path[:] = init["sys_path"]
        importlib.import_module(init["module"])
    strategy = STRATEGIES.create(init["name"], **init["params"])
    p = init["pool"]
    pool = PoolView(images=_readonly(p["images"]), dataset_ids=_readonly(p["dataset_ids"]),
                    class_names=tuple(p["class_names"]), ignore_index=p["ignore_index"])
    quote_model = pickle.loads(init["quote_model"])
    return strategy, pool, quote_model.quote


def _handle(op: str, msg: Any, strategy: Strategy, pool: PoolView, quote: Callable, conn: Any,
            session: dict[str, Any]) -> tuple:
    import torch

    if op == "score_begin":
        session["scoring"] = _Scoring(pool, int(msg["round"]), _child_labels(msg["labels"]), _child_model(msg["model"]))
        return ("ok",)
    if op == "score":
        session["scoring"].score(strategy, int(msg["start"]), int(msg["stop"]), _readonly(msg["outputs"]))
        return ("scored",)
    if op == "select":
        scoring = session.pop("scoring", None)
        batch = _select(strategy, _child_context(msg, pool, quote, conn, scoring), scoring)
        return ("batch", encode_batch(batch), torch.get_rng_state().numpy())
    if op == "diagnostics":
        return ("diagnostics", _diagnostics_json(strategy))
    if op == "get_state":
        return ("state", _dump_state(strategy))
    if op == "set_state":
        _load_state(strategy, msg)
        return ("ok",)
    raise PluginError(f"strategy process: unknown request {op!r}")


def serve(conn: Any) -> None:
    """The strategy process's main loop: build the strategy, then answer requests until told to stop."""
    try:
        _, init = recv_shared(conn)
        strategy, pool, quote = _build_in_child(init)
        _send(conn, ("ready", _flags(strategy)))
    except EOFError:
        return
    except Exception as exc:
        _send(conn, ("error", _exception_wire(exc)))
        return
    session: dict[str, Any] = {}  # a streaming round's scoring, between its batches and the proposal
    while True:
        try:
            op, msg = recv_shared(conn)
        except EOFError:  # the campaign process is gone
            return
        except Exception as exc:  # a message that cannot be read: say why, rather than dying mute
            _send(conn, ("error", _exception_wire(WireError(f"the strategy process could not read a request: "
                                                            f"{type(exc).__name__}: {exc}"))))
            continue
        if op == "close":
            return
        try:
            reply = _handle(op, msg, strategy, pool, quote, conn, session)
        except Exception as exc:
            reply = ("error", _exception_wire(exc))
        _send(conn, reply)
        if op == "select":  # the round's context and the selection's temporaries are gone: give their pages back
            del reply, msg
            release_freed_memory()


# -- the campaign side of a strategy process -------------------------------------
class _Child:
    """The campaign side's handle on one strategy process: its pipe, and a way to kill it
    (a pidfd where the OS has one, so a recycled pid is never signalled)."""

    def __init__(self, conn: Connection, pid: int):
        self.conn, self.pid = conn, pid
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def stop(self, kill: bool) -> None:
        """Close the pipe (the process exits on EOF); ``kill``: SIGKILL it first."""
        if kill:
            try:
                if self.pidfd is not None:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                else:
                    os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, OSError):
                pass
        for close in (self.conn.close, (lambda: os.close(self.pidfd)) if self.pidfd is not None else None):
            try:
                if close is not None:
                    close()
            except OSError:
                pass
        self.pidfd = None


class StrategyWorker:
    """A strategy in a process of its own (see the module docstring)."""

    in_process = False

    def __init__(self, name: str, params: dict[str, Any], pool: PoolView, quote_model: Any, deadline: Any = None):
        import torch

        self.name = name
        self._conn, pid = _zygote().fork()
        self._child = _Child(self._conn, pid)
        # Dropped without close() (a caller of setup_campaign that forgot): killed, never left running.
        self._finalizer = weakref.finalize(self, self._child.stop, True)
        factory = STRATEGIES.get(name).factory
        init = {"name": name, "params": params, "module": factory.__module__, "sys_path": list(sys.path),
                "threads": torch.get_num_threads(),
                "pool": {"images": spilled_if_large(np.asarray(pool.images).view(np.ndarray)), "dataset_ids": np.asarray(pool.dataset_ids),
                         "class_names": list(pool.class_names), "ignore_index": int(pool.ignore_index)},
                "quote_model": pickle.dumps(quote_model)}
        try:
            self._request("init", init)
            (flags,) = self._reply("ready", deadline)
        except BaseException:
            self._finalizer()
            raise
        if not (isinstance(flags, dict) and isinstance(flags.get("needs"), list)
                and all(isinstance(n, str) for n in flags["needs"])):
            self._finalizer()
            raise StrategyError(f"strategy {name!r}: its process sent a malformed description")
        _take_flags(self, flags)

    # -- the loop's calls ------------------------------------------------------------
    _scored_round: int | None = None  # the round whose label state and model the child holds for scoring

    def begin_scoring(self, pool: PoolView, rnd: int, labels: LabelStateView, model: Any = None) -> None:
        """A streaming round: the label state and the model, once (the pool is the child's already)."""
        self._request("score_begin", {"round": int(rnd), "labels": _label_wire(labels), "model": _model_bytes(model)})
        self._reply("ok")
        self._scored_round = int(rnd)

    def score(self, start: int, stop: int, outputs: dict[str, np.ndarray], deadline: Any = None) -> None:
        """One batch's outputs to the child, which scores it and keeps the result."""
        self._request("score", {"start": int(start), "stop": int(stop),
                                "outputs": {k: np.asarray(v).view(np.ndarray) for k, v in outputs.items()}})
        self._reply("scored", deadline)

    def select(self, ctx: StrategyContext, deadline: Any = None) -> Any:
        """Send the round's context, serve its service calls, return its batch."""
        import torch

        fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx) if f.name not in _LOCAL_FIELDS}
        services = {n: fields.pop(n) for n in list(fields) if n in LOOP_NEEDS and fields[n] is not None}
        # A streaming round's child holds this round's labels and model since begin_scoring.
        reuse, self._scored_round = self._scored_round == ctx.round, None
        msg = {"fields": fields, "services": sorted(services), "reuse": reuse,
               "labels": None if reuse else _label_wire(ctx.labels),
               "model": None if reuse else _model_bytes(ctx.model), "torch_rng": torch.get_rng_state().numpy()}
        self._request("select", msg)
        wire, rng_state = self._reply("batch", deadline, services)
        # The strategy's draws from torch's global generator count as if it ran here.
        torch.set_rng_state(torch.from_numpy(np.asarray(rng_state, np.uint8).copy()))
        return decode_batch(wire)

    def diagnostics(self) -> str:
        """The strategy's diagnostics as JSON text (serialised in its process)."""
        return self._ask("diagnostics", "diagnostics", str)

    def get_state(self) -> bytes:
        """The strategy's state, pickled in its process (opaque here)."""
        return self._ask("get_state", "state", bytes)

    def _ask(self, op: str, reply: str, kind: type) -> Any:
        self._request(op, None)
        (value,) = self._reply(reply)
        if not isinstance(value, kind):
            raise StrategyError(f"strategy {self.name!r}: its process answered {op!r} with a {type(value).__name__}")
        return value

    def set_state(self, state: Any) -> None:
        self._request("set_state", state)
        self._reply("ok")

    def close(self) -> None:
        """Stop the process (idempotent): it is told to exit, then its pipe closed."""
        if self._finalizer.alive:
            try:
                send_shared(self._conn, ("close", None))
            except (OSError, ValueError):
                pass
            self._finalizer.detach()
            # Killed too where a pidfd makes that safe: a strategy still busy
            # (it broke the protocol, or the campaign failed meanwhile) must not linger.
            self._child.stop(kill=self._child.pidfd is not None)

    # -- the protocol ------------------------------------------------------------------
    def _request(self, op: str, msg: Any) -> None:
        try:
            send_shared(self._conn, (op, msg))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise self._died() from None

    def _died(self) -> StrategyError:
        self._finalizer()
        return StrategyError(f"strategy {self.name!r}: its process died (the strategy exited or was killed)")

    def _reply(self, expected: str, deadline: Any = None, services: dict[str, Callable] | None = None) -> tuple:
        """Wait for the reply ``expected``, answering calls of ``services`` meanwhile (a proposal's)."""
        while True:
            left = deadline.left() if deadline is not None else None
            if not self._conn.poll(0) and not wait([self._conn], left):
                self._finalizer()  # the time limit: the process is killed, the campaign fails
                raise deadline.error()
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                raise self._died() from None
            try:
                msg = _safe_loads(data)
            except Exception as exc:
                self._finalizer()
                raise StrategyError(f"strategy {self.name!r}: its process sent something other than plain values "
                                    f"({type(exc).__name__}: {exc})") from None
            if not isinstance(msg, tuple) or not msg:
                raise StrategyError(f"strategy {self.name!r}: its process broke the protocol")
            if msg[0] == "error":
                raise self._error(msg[1])
            if msg[0] == "call" and services is not None:
                self._serve_call(msg, services)
                continue
            if msg[0] == expected:
                return msg[1:]
            self._finalizer()
            raise StrategyError(f"strategy {self.name!r}: its process sent {msg[0]!r} where {expected!r} was due")

    def _serve_call(self, msg: tuple, services: dict[str, Callable]) -> None:
        _, name, args, kwargs = (msg + (None,) * 4)[:4]
        service = services.get(name) if isinstance(name, str) else None
        if service is None or not isinstance(args, list) or not isinstance(kwargs, dict):
            raise StrategyError(f"strategy {self.name!r} called {name!r}, which it did not declare in needs")
        try:
            reply: tuple = ("return", service(*[_unplain(a) for a in args],
                                              **{str(k): _unplain(v) for k, v in kwargs.items()}))
        except Exception as exc:  # e.g. UnboughtDataError: the strategy may catch it, as in process
            reply = ("raise", _exception_wire(exc)[:3])
        try:
            send_shared(self._conn, reply)
        except (BrokenPipeError, ConnectionResetError):
            raise self._died() from None

    def _error(self, wire: Any) -> Exception:
        """The strategy's exception, raised here: the same class for builtin and
        alharness errors, else a StrategyError naming it; its traceback is the cause."""
        module, qualname, message, tb = (tuple(wire) + ("",) * 4)[:4] if isinstance(wire, (tuple, list)) else ("", "", "", "")
        module, qualname, message, tb = str(module), str(qualname), str(message), str(tb)
        exc = _rebuild_exception(module, qualname, message)
        if exc is None:
            exc = StrategyError(f"strategy {self.name!r} raised {qualname}: {message}")
        exc.__cause__ = RemoteTraceback(tb)
        return exc


def _label_wire(labels: LabelStateView) -> dict[str, Any]:
    """The label view's fields, as the message to a strategy process carries them (large pixel labels
    through a nameless scratch file, as the label state itself keeps them)."""
    wire = {f.name: getattr(labels, f.name) for f in dataclasses.fields(labels)}
    wire["pixels"] = spilled_if_large(wire["pixels"])
    return wire


def _model_bytes(model: Any) -> bytes | None:
    """The trained network the strategy declared (``needs = {"model"}``), as a copy."""
    if model is None:
        return None
    import torch

    buf = io.BytesIO()
    torch.save(model, buf)
    return buf.getvalue()


__all__ = ["InProcessStrategy", "RemoteTraceback", "StrategyError", "StrategyHandle", "StrategyWorker",
           "decode_batch", "encode_batch", "open_strategy", "serve", "warm_up"]
