"""Mask encodings: Label Studio brush RLE, COCO RLE, and plain run lengths.

**Label Studio brush RLE** (``value.rle`` of a ``brushlabels`` result) is the
bit-packed run-length format of thi.ng's ``rle-pack``, applied to the mask
as a flat RGBA image (height × width × 4 bytes; Label Studio reads the
alpha channel). The stream, most significant bit first, padded with zero
bits to a whole byte:

- 32 bits: the number of values;
- 5 bits: the word size minus 1 (8 here: one byte per value);
- 4 × 4 bits: four run-length field sizes minus 1 (3, 4, 8 and 16 bits here);
- then chunks until every value is produced: 1 bit, 1 for a repeated run and
  0 for a run of literal values; 2 bits choosing one of the four field
  sizes; that many bits holding the run length minus 1; then one word (a
  repeated run) or run-length words (literals).

Any stream of that form decodes, so this encoder is free to choose its
chunks: a repeated run for every stretch of two or more equal values,
literals for the rest. The implementation is this module's own.

**COCO RLE** is pycocotools' (column-major runs, compressed to a string).

**Run lengths** (``encode_array``) store the answers recorded in a live run:
any integer or boolean array as its dtype, shape and (value, length) pairs.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

import numpy as np

_HEADER_SIZES = (3, 4, 8, 16)
_WORD = 8
_MAX_RUN = 1 << _HEADER_SIZES[-1]


class EncodingError(ValueError):
    """A mask encoding that cannot be decoded (truncated, wrong size, bad field)."""


# -- Label Studio brush RLE ---------------------------------------------------------------------------


def _size_code(count: int) -> int:
    """The smallest of the four run-length fields that holds ``count - 1``."""
    for code, bits in enumerate(_HEADER_SIZES):
        if count <= 1 << bits:
            return code
    raise AssertionError(count)  # callers split runs at _MAX_RUN


def _chunks(values: np.ndarray) -> Iterable[tuple[bool, int, np.ndarray]]:
    """(repeated?, start, values) chunks covering ``values``: equal stretches of
    two or more as repeated runs, the rest as literal runs, none over _MAX_RUN."""
    n = len(values)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if n else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, n])
    literal_from = None
    for start, length in zip(starts.tolist(), lengths.tolist()):
        if length == 1:
            literal_from = start if literal_from is None else literal_from
            continue
        if literal_from is not None:
            yield from _split(False, literal_from, values[literal_from:start])
            literal_from = None
        yield from _split(True, start, values[start:start + length])
    if literal_from is not None:
        yield from _split(False, literal_from, values[literal_from:])


def _split(repeated: bool, start: int, run: np.ndarray) -> Iterable[tuple[bool, int, np.ndarray]]:
    for k in range(0, len(run), _MAX_RUN):
        yield repeated, start + k, run[k:k + _MAX_RUN]


def _pack(fields: list[tuple[int, int]]) -> list[int]:
    """(value, width) fields, most significant bit first, as bytes (zero padded)."""
    values = np.array([v for v, _ in fields], np.int64)
    widths = np.array([w for _, w in fields], np.int64)
    owner = np.repeat(np.arange(len(fields)), widths)
    offset = np.arange(int(widths.sum())) - np.repeat(np.cumsum(widths) - widths, widths)
    bits = (values[owner] >> (widths[owner] - 1 - offset)) & 1
    return np.packbits(bits.astype(np.uint8)).tolist()


def brush_encode(values: np.ndarray) -> list[int]:
    """Bytes (as ints, the way Label Studio stores them) of the brush RLE of flat ``values`` (0..255)."""
    values = np.asarray(values).ravel()
    if values.size and (values.min() < 0 or values.max() > 255):
        raise EncodingError("brush RLE values must lie in 0..255")
    fields = [(len(values), 32), (_WORD - 1, 5)] + [(b - 1, 4) for b in _HEADER_SIZES]
    for repeated, _, run in _chunks(values.astype(np.int64)):
        code = _size_code(len(run))
        fields += [(int(repeated), 1), (code, 2), (len(run) - 1, _HEADER_SIZES[code])]
        fields += [(int(run[0]), _WORD)] if repeated else [(int(v), _WORD) for v in run]
    return _pack(fields)


class _Bits:
    """Reads big-endian fields from a byte string."""

    def __init__(self, data: Sequence[int]):
        try:
            raw = np.asarray(data, dtype=np.int64)
        except (TypeError, ValueError):
            raise EncodingError("brush RLE must be a list of byte values") from None
        if raw.ndim != 1 or (raw.size and (raw.min() < 0 or raw.max() > 255)):
            raise EncodingError("brush RLE must be a list of byte values 0..255")
        self.bits = np.unpackbits(raw.astype(np.uint8))
        self.pos = 0

    def read(self, width: int, count: int = 1) -> np.ndarray:
        end = self.pos + width * count
        if end > len(self.bits):
            raise EncodingError("brush RLE ends in the middle of a run (truncated?)")
        chunk = self.bits[self.pos:end].reshape(count, width).astype(np.int64)
        self.pos = end
        return chunk @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def brush_decode(data: Sequence[int]) -> np.ndarray:
    """Flat uint8 values of a Label Studio brush RLE byte list."""
    bits = _Bits(data)
    n = int(bits.read(32)[0])
    word = int(bits.read(5)[0]) + 1
    sizes = (bits.read(4, 4) + 1).tolist()
    if word > 8:
        raise EncodingError(f"brush RLE word size {word} bits; only 8-bit (RGBA) brushes are supported")
    out = np.empty(n, np.uint8)
    i = 0
    while i < n:
        repeated = int(bits.read(1)[0])
        count = 1 + int(bits.read(sizes[int(bits.read(2)[0])])[0])
        if i + count > n:
            raise EncodingError(f"brush RLE run of {count} values overruns its {n} values")
        out[i:i + count] = bits.read(word)[0] if repeated else bits.read(word, count)
        i += count
    return out


def mask_to_brush(mask: np.ndarray) -> list[int]:
    """Brush RLE of a boolean (H, W) mask: painted pixels opaque white, the rest transparent."""
    return brush_encode(np.repeat(np.asarray(mask, bool).ravel().astype(np.uint8) * 255, 4))


def brush_to_mask(data: Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of a brush RLE: the pixels whose alpha is at least half opaque."""
    flat = brush_decode(data)
    h, w = shape
    if flat.size != h * w * 4:
        raise EncodingError(f"brush RLE holds {flat.size} values, but a {w}x{h} RGBA image has {h * w * 4}")
    return flat.reshape(h, w, 4)[:, :, 3] >= 128


# -- COCO RLE (pycocotools) ---------------------------------------------------------------------------


def mask_to_coco(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a boolean (H, W) mask, JSON-ready (``counts`` as a string)."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_to_mask(segmentation: Any, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of a COCO segmentation: compressed or uncompressed RLE, or polygons."""
    from pycocotools import mask as coco_mask

    h, w = shape
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            raise EncodingError("RLE segmentation needs size: [height, width]")
        if list(size) != [h, w]:
            raise EncodingError(f"RLE segmentation is {size[1]}x{size[0]}, but the image is {w}x{h}")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w:
                raise EncodingError(f"uncompressed RLE counts must be non-negative ints summing to {h * w}")
            rle = coco_mask.frPyObjects({"size": size, "counts": counts}, h, w)
        elif isinstance(counts, str):
            rle = {"size": size, "counts": counts.encode("ascii", "replace")}
        else:
            raise EncodingError("RLE counts must be a string (compressed) or a list of ints")
    elif isinstance(segmentation, list) and segmentation and all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, (int, float)) for v in p)
            for p in segmentation):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, h, w))
    else:
        raise EncodingError("segmentation must be an RLE object or a list of polygons [x1, y1, x2, y2, ...]")
    try:
        with warnings.catch_warnings():  # pycocotools 2.0.11 warns about numpy 2's copy keyword on every decode
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = coco_mask.decode(rle)
    except Exception as exc:  # pycocotools raises plain errors for a corrupt string
        raise EncodingError(f"unreadable RLE ({type(exc).__name__})") from None
    if decoded.shape[:2] != (h, w) or int(coco_mask.area(rle)) != int(decoded.sum()):
        raise EncodingError("RLE counts do not cover the image exactly")
    return decoded.astype(bool)


# -- run lengths of recorded answers ------------------------------------------------------------------


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """An integer or boolean array as {dtype, shape, runs: [value, length, ...]} (row-major)."""
    a = np.asarray(a)
    flat = a.ravel().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]]) if flat.size else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, flat.size])
    runs = np.stack([flat[starts], lengths], axis=1).ravel().tolist()
    return {"dtype": a.dtype.str, "shape": list(a.shape), "runs": runs}


def decode_array(d: dict[str, Any]) -> np.ndarray:
    """Inverse of ``encode_array``."""
    pairs = np.asarray(d["runs"], np.int64).reshape(-1, 2)
    flat = np.repeat(pairs[:, 0], pairs[:, 1])
    return flat.astype(np.dtype(d["dtype"])).reshape(d["shape"])
