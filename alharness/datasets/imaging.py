"""Decoding image and label files and fitting them to one resolution.

Every image of a dataset must have the same shape (the arrays are
(N, H, W, ...)), so real layouts are resized ("resize": stretch to H×W),
scaled to cover H×W and centre-cropped ("crop": keeps the aspect ratio), or
padded ("pad": kept at their own resolution, scaled down only where a side
exceeds H×W, keeping the aspect ratio, then padded at the bottom and right
with black pixels whose labels are void, so the padding is never trained
on, scored or charged). ``size = "native"`` keeps the source resolution:
every image of the layout must have the same one (Cityscapes: 1024×2048).
Images are resampled bilinearly; labels by nearest neighbour (done here with
index arithmetic, so it works for any integer dtype and never invents a
class); polygon vertices get the same affine map. An image already at the
output resolution is not resampled at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from alharness.errors import ConfigError

RESIZE_MODES = ("resize", "crop", "pad")
MAX_SIDE = 8192
NATIVE = "native"

# Parameter types of the loaders: an output side, [height, width], or "native".
Side = Annotated[int, Field(ge=8, le=MAX_SIDE)]
Size = Side | Annotated[list[Side], Field(min_length=2, max_length=2)] | Literal["native"]
ResizeMode = Literal[RESIZE_MODES]


def parse_size(size: Any, where: str) -> tuple[int, int] | None:
    """``size`` as (H, W): an int means a square; ``"native"`` gives None (the source resolution)."""
    if size == NATIVE:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, (int, np.integer)) for v in size)):
        raise ConfigError(f"{where}: size must be an integer, [height, width] or {NATIVE!r}, got {size!r}")
    if min(size) < 8:
        raise ConfigError(f"{where}: size must be at least 8 pixels, got {list(size)}")
    return int(size[0]), int(size[1])


def check_resize_mode(mode: str, where: str) -> None:
    if mode not in RESIZE_MODES:
        raise ConfigError(f"{where}: resize must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")


@dataclass(frozen=True)
class Fit:
    """Affine map from a source image (h, w) to the output (H, W):
    ``out = src * scale - offset``, then the output window [0, H) × [0, W).
    ``content``: with ``pad``, the (h, w) of the output that holds the image
    (the rest is padding); else the whole output."""

    scale_y: float
    scale_x: float
    top: float
    left: float
    out: tuple[int, int]
    content: tuple[int, int] | None = None

    @classmethod
    def plan(cls, src: tuple[int, int], out: tuple[int, int] | None, mode: str) -> "Fit":
        h, w = src
        H, W = out or src
        if (H, W) == (h, w) and mode != "pad" or mode == "resize":
            return cls(H / h, W / w, 0.0, 0.0, (H, W))
        if mode == "pad":  # own resolution, scaled down only to fit; padded bottom and right
            s = min(1.0, H / h, W / w)
            content = (min(H, max(1, round(h * s))), min(W, max(1, round(w * s))))
            return cls(content[0] / h, content[1] / w, 0.0, 0.0, (H, W), content)
        s = max(H / h, W / w)  # cover the window, then centre it
        return cls(s, s, (h * s - H) / 2, (w * s - W) / 2, (H, W))

    @property
    def _identity(self) -> bool:
        return self.scale_y == self.scale_x == 1.0 and self.top == self.left == 0.0

    def labels(self, a: np.ndarray, fill: int = 0) -> np.ndarray:
        """Nearest-neighbour resampling of a label array (any integer dtype);
        padding (``pad``) gets ``fill``."""
        H, W = self.content or self.out
        if self._identity and a.shape[:2] == (H, W):
            out = a
        else:
            ys = np.clip(((np.arange(H) + 0.5 + self.top) / self.scale_y).astype(np.int64), 0, a.shape[0] - 1)
            xs = np.clip(((np.arange(W) + 0.5 + self.left) / self.scale_x).astype(np.int64), 0, a.shape[1] - 1)
            out = a[ys[:, None], xs[None, :]]
        return out if (H, W) == self.out else _padded(out, self.out, fill)

    def image(self, img: "Any") -> np.ndarray:
        """Bilinear resampling of a PIL image to (H, W, 3) uint8 (padding: black)."""
        from PIL import Image

        H, W = self.content or self.out
        img = img.convert("RGB")
        if not (self._identity and (img.height, img.width) == (H, W)):
            box = (self.left / self.scale_x, self.top / self.scale_y,
                   (self.left + W) / self.scale_x, (self.top + H) / self.scale_y)
            img = img.resize((W, H), Image.Resampling.BILINEAR, box=box)
        out = np.asarray(img, dtype=np.uint8)
        return out if (H, W) == self.out else _padded(out, self.out, 0)

    def points(self, xy: np.ndarray) -> np.ndarray:
        """(x, y) vertices in source pixels → output pixels (not clipped:
        a click outside the crop was still a click)."""
        xy = np.asarray(xy, np.float32).reshape(-1, 2)
        return np.stack([xy[:, 0] * self.scale_x - self.left, xy[:, 1] * self.scale_y - self.top], axis=1)


def _padded(a: np.ndarray, out: tuple[int, int], fill: int) -> np.ndarray:
    """``a`` in the top-left corner of an ``out``-sized array of ``fill``."""
    full = np.full((*out, *a.shape[2:]), fill, a.dtype)
    full[: a.shape[0], : a.shape[1]] = a
    return full


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (no pixels decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise ConfigError(f"missing file {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot decode {path}: {exc}") from None


def open_image(path: Path) -> "Any":
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise ConfigError(f"missing file {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot decode {path}: {exc}") from None
    return img


def read_labels(path: Path) -> np.ndarray:
    """A label PNG as integers: palette indices for 'P' images (VOC), the
    values for grey 8/16-bit images; colour label images are refused because
    their colour → class mapping is not known here."""
    img = open_image(path)
    if img.mode in ("RGB", "RGBA"):
        raise ConfigError(f"{path}: label image is {img.mode}; expected class ids as a palette ('P') or grey PNG")
    return np.asarray(img)
