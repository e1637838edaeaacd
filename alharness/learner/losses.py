"""Loss functions, one per kind of label a campaign can buy (pure functions).

Conventions: ``logits`` (B, C, H, W); pixel targets (B, H, W) int64 with
``ignore_index`` for unknown pixels; image-level targets (B, C) with
1 = present, 0 = absent, -1 = unknown (``alharness.annotation.labels``). Every loss is
a mean over what is known and is exactly 0, with zero gradient, where
nothing is known, so batches that mix label kinds need no special cases.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from alharness.toolkit.model_outputs import boundary_mask, predicted_boundary  # noqa: F401  (re-exported for the learner)

PIXEL_LOSSES = ("ce", "dice_ce")


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; 0 if none is labelled (PyTorch's mean would be NaN)."""
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp_min(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, smooth: float = 1.0) -> torch.Tensor:
    """1 − mean over classes of the soft Dice coefficient, over labelled pixels of the batch.

    Unlabelled pixels are removed from both the prediction and the target
    sums, so they receive no gradient. A class absent from target and
    prediction scores Dice 1 (no loss) thanks to ``smooth``.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)
    probs = torch.softmax(logits, dim=1) * valid
    onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0), num_classes).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2.0 * inter + smooth) / (denom + smooth)).mean()


def pixel_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, ignore_index: int) -> torch.Tensor:
    """Segmentation loss on full or partial masks (unknown pixels ignored).

    ``"ce"``: cross-entropy. ``"dice_ce"``: the average of the Dice loss and
    the cross-entropy, as in the full-or-weak paper (§4.3, "the average of
    the Dice loss and the cross-Entropy loss for segmentation").
    """
    logits = logits.float()
    ce = cross_entropy(logits, target, ignore_index)
    if kind == "ce":
        return ce
    if kind == "dice_ce":
        return 0.5 * (ce + dice_loss(logits, target, ignore_index))
    raise ValueError(f"unknown pixel loss {kind!r}; valid choices: {', '.join(PIXEL_LOSSES)}")


def lse_pool(scores: torch.Tensor, r: float) -> torch.Tensor:
    """Log-Sum-Exp pooling over pixels, (B, C, H, W) → (B, C).

    Pinheiro & Collobert (CVPR 2015), the aggregation layer from pixel to
    image scores: (1/r)·log(mean exp(r·s)). Large r approaches max pooling,
    small r average pooling.
    """
    flat = scores.flatten(2)
    return (torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r


def pooled_image_label_loss(logits: torch.Tensor, targets: torch.Tensor, r: float = 5.0) -> torch.Tensor:
    """Image-level labels and yes/no answers through the segmentation output.

    * positive (class present): the class's LSE-pooled per-pixel log
      probability is pushed up. Pooling log p_c with LSE gives the log of the
      power mean (mean_x p_c(x)^r)^(1/r), so the loss −LSE_r(log p_c) asks for
      *some* pixels of class c without saying which (multiple-instance
      learning, Pinheiro & Collobert's LSE aggregation).
    * negative (class absent, or a "no" answer): no pixel may be class c, so
      the loss mean_x −log(1 − p_c(x)) suppresses the class at every pixel
      of the image (the binary-feedback paper's model update, §4.4, after
      Pinheiro & Collobert).
    * unknown: no loss.

    The mean is over known (image, class) pairs.
    """
    known = targets >= 0
    logp = torch.log_softmax(logits.float(), dim=1)
    pos = -lse_pool(logp, r)
    neg = -torch.log1p(-logp.exp().clamp(max=1.0 - 1e-6)).flatten(2).mean(dim=2)
    per_pair = torch.where(targets == 1, pos, torch.where(targets == 0, neg, torch.zeros_like(pos)))
    return per_pair.sum() / known.sum().clamp_min(1)


def head_image_label_loss(class_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multi-label binary cross-entropy of a classification head on known (image, class) pairs.

    The full-or-weak paper (§4.3) trains its classification head with
    cross-entropy; with several classes per image that is one binary
    cross-entropy per class.
    """
    known = targets >= 0
    bce = F.binary_cross_entropy_with_logits(class_logits.float(), targets.clamp_min(0).float(), reduction="none")
    return (bce * known).sum() / known.sum().clamp_min(1)


def pooled_class_scores(probs: torch.Tensor, r: float) -> torch.Tensor:
    """Image-level class scores in [0, 1] from pixel probabilities: exp(LSE_r(log p)) (the power mean)."""
    return lse_pool(torch.log(probs.clamp_min(1e-12)), r).exp()


def iou_regression_loss(pred_iou: torch.Tensor, true_iou: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 between √IoU predicted and √IoU measured (mask-guided §5 and Table 2), mean over the
    entries (the IoU head's objects) with weight 1."""
    err = (pred_iou.clamp_min(1e-12).sqrt() - true_iou.sqrt()).abs()
    return (err * weight).sum() / weight.sum().clamp_min(1)


def class_mean_loss(pixel_ce: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums and counts of per-pixel losses over labelled pixels (for MADBAL's τ_c)."""
    valid = target != ignore_index
    cls = target[valid]
    sums = torch.zeros(num_classes, dtype=torch.float64, device=target.device).index_add_(0, cls, pixel_ce[valid].double())
    counts = torch.bincount(cls, minlength=num_classes).double()
    return sums, counts


#: MADBAL Eq. (3): λ₀, λ₁ (loss prediction, centre and boundary) and λ₂..λ₄
#: (the shallow-, semi- and almost-mature heads' cross-entropy), §4.
MADBAL_LAMBDAS = (1.0, 1.0, 0.05, 0.1, 0.15)


def maturity_lambdas(k: int) -> tuple[float, ...]:
    """Eq. (3)'s λ for ``k`` maturity heads, shallow to deep (fewer than three
    heads take the λ of the depths they stand for, as ``maturity_taps`` spreads them)."""
    lam = MADBAL_LAMBDAS[2:]
    if k >= len(lam) or k <= 1:
        return lam[:k]
    return tuple(lam[round(i * (len(lam) - 1) / (k - 1))] for i in range(k))


def loss_prediction_loss(lp_logits: torch.Tensor, pixel_ce: torch.Tensor, target: torch.Tensor, tau: torch.Tensor,
                         ignore_index: int, boundary: torch.Tensor | None = None) -> torch.Tensor:
    """MADBAL Eqs. 1–2: loss labels Y_L = [ℓ_i ≥ τ_{y_i}] and one BCE per channel (0 centre, 1 boundary),

    each averaged over its own pixels; the two are summed (λ₀ = λ₁ = 1 in Eq. 3).
    ``boundary`` (B, H, W) bool says which pixels are boundary pixels; by
    default those of ``target`` (a labelled pixel with a differently labelled
    neighbour)."""
    valid = target != ignore_index
    y_loss = (pixel_ce >= tau[torch.where(valid, target, 0)]).float()
    if boundary is None:
        boundary = boundary_mask(target, ignore_index)
    total = lp_logits.new_zeros(())
    for channel, region in ((0, valid & ~boundary), (1, valid & boundary)):
        bce = F.binary_cross_entropy_with_logits(lp_logits[:, channel].float(), y_loss, reduction="none")
        total = total + (bce * region).sum() / region.sum().clamp_min(1)
    return total


def js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int, eps: float = 1e-12) -> torch.Tensor:
    """Jensen–Shannon divergence (natural log) between distributions along ``dim``."""
    m = 0.5 * (p + q)
    lm = torch.log(m.clamp_min(eps))
    kl_p = (p * (torch.log(p.clamp_min(eps)) - lm)).sum(dim)
    kl_q = (q * (torch.log(q.clamp_min(eps)) - lm)).sum(dim)
    return 0.5 * (kl_p + kl_q)
