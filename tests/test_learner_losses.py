"""Loss kernels against straightforward references, and their gradients where nothing is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from alharness.learner import losses

IGNORE = 255


def _partial_target(b=2, c=3, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g, requires_grad=True)
    target = torch.randint(0, c, (b, h, w), generator=g)
    unknown = torch.rand(b, h, w, generator=g) < 0.5
    target[unknown] = IGNORE
    return logits, target, unknown


@pytest.mark.parametrize("kind", losses.PIXEL_LOSSES)
def test_unknown_pixels_get_exactly_zero_gradient(kind):
    logits, target, unknown = _partial_target()
    losses.pixel_loss(logits, target, kind, IGNORE).backward()
    grad = logits.grad.abs().sum(1)  # (B, H, W)
    assert torch.all(grad[unknown] == 0)
    assert torch.all(grad[~unknown] > 0)


def test_image_loss_adds_no_pixel_gradient_where_nothing_is_known():
    logits, target, unknown = _partial_target()
    nothing = torch.full((2, 3), -1)
    loss = losses.pixel_loss(logits, target, "ce", IGNORE) + losses.pooled_image_label_loss(logits, nothing)
    loss.backward()
    assert torch.all(logits.grad.abs().sum(1)[unknown] == 0)


def test_no_known_pixel_gives_zero_loss_and_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE)
    for kind in losses.PIXEL_LOSSES:
        loss = losses.pixel_loss(logits, target, kind, IGNORE)
        loss.backward()
        assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_cross_entropy_matches_torch_mean():
    logits, target, _ = _partial_target(seed=3)
    ref = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert losses.cross_entropy(logits, target, IGNORE).item() == pytest.approx(ref.item(), rel=1e-6)


def test_dice_matches_reference_and_dice_ce_is_the_average():
    logits, target, unknown = _partial_target(seed=4)
    p = torch.softmax(logits, 1).detach().numpy()
    t = target.numpy()
    dices = []
    for c in range(3):
        valid = t != IGNORE
        pc = p[:, c][valid]
        tc = (t[valid] == c).astype(float)
        dices.append((2 * (pc * tc).sum() + 1) / (pc.sum() + tc.sum() + 1))
    ref = 1 - np.mean(dices)
    assert losses.dice_loss(logits, target, IGNORE).item() == pytest.approx(ref, rel=1e-5)
    both = losses.pixel_loss(logits, target, "dice_ce", IGNORE).item()
    assert both == pytest.approx(0.5 * (ref + losses.cross_entropy(logits, target, IGNORE).item()), rel=1e-5)
    with pytest.raises(ValueError, match="valid choices"):
        losses.pixel_loss(logits, target, "focal", IGNORE)


def test_lse_pool_lies_between_mean_and_max():
    s = torch.randn(2, 3, 5, 5)
    for r in (0.5, 5.0, 50.0):
        p = losses.lse_pool(s, r)
        assert torch.all(p >= s.mean(dim=(2, 3)) - 1e-5) and torch.all(p <= s.amax(dim=(2, 3)) + 1e-5)
    assert torch.allclose(losses.lse_pool(s, 1e4), s.amax(dim=(2, 3)), atol=1e-3)


def test_yes_no_losses_push_the_right_way():
    def grad(targets):
        g = torch.Generator().manual_seed(0)
        logits = (0.1 * torch.randn(1, 3, 4, 4, generator=g)).requires_grad_()
        loss = losses.pooled_image_label_loss(logits, torch.tensor([targets]))
        loss.backward()
        return loss.item(), logits.grad[0]

    # Gradient descent moves logits by -grad.
    _, g = grad([-1, 1, -1])  # "class 1: yes" raises class 1's pooled score
    assert g[1].sum() < 0 and torch.all(g[1] <= 0)
    _, g = grad([-1, -1, 0])  # "class 2: no" lowers class 2 at every pixel
    assert torch.all(g[2] > 0)
    loss, g = grad([-1, -1, -1])  # nothing known, nothing learnt
    assert loss == 0.0 and torch.all(g == 0)


def test_negative_loss_is_the_mean_log_of_absence():
    logits = torch.randn(1, 3, 4, 4)
    p = torch.softmax(logits, 1)
    ref = -torch.log(1 - p[0, 2]).mean()
    assert losses.pooled_image_label_loss(logits, torch.tensor([[-1, -1, 0]])).item() == pytest.approx(ref.item(), rel=1e-5)


def test_head_loss_counts_only_known_pairs():
    logits = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    loss = losses.head_image_label_loss(logits, torch.tensor([[1, -1, 0]]))
    ref = (F.softplus(torch.tensor(-2.0)) + F.softplus(torch.tensor(0.5))) / 2
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[0, 1] == 0


def test_boundary_mask_matches_a_loop():
    t = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 1], [2, 2, 2, 2]]])
    got = losses.boundary_mask(t, IGNORE)[0].numpy()
    a = t[0].numpy()
    ref = np.zeros_like(got)
    for y in range(4):
        for x in range(4):
            if a[y, x] == IGNORE:
                continue
            nb = a[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            ref[y, x] = np.any((nb != a[y, x]) & (nb != IGNORE))
    np.testing.assert_array_equal(got, ref)


def test_loss_prediction_labels_follow_the_class_mean_threshold():
    target = torch.tensor([[[0, 0, 0, 0]]])
    pixel_ce = torch.tensor([[[0.1, 0.2, 0.9, 1.0]]])
    sums, counts = losses.class_mean_loss(pixel_ce, target, 2, IGNORE)
    tau = (sums / counts.clamp_min(1)).float()
    assert tau[0].item() == pytest.approx(0.55)
    # Logits that agree with Y_L = [0, 0, 1, 1] on the centre channel score lower than ones that disagree.
    good = torch.tensor([-5.0, -5.0, 5.0, 5.0]).view(1, 1, 1, 4).repeat(1, 2, 1, 1)
    bad = -good
    lp_good = losses.loss_prediction_loss(good, pixel_ce, target, tau, IGNORE)
    lp_bad = losses.loss_prediction_loss(bad, pixel_ce, target, tau, IGNORE)
    assert lp_good < 0.05 < 5 < lp_bad


def test_js_divergence_properties():
    p = torch.softmax(torch.randn(4, 5), 1)
    q = torch.softmax(torch.randn(4, 5), 1)
    assert torch.allclose(losses.js_divergence(p, p, 1), torch.zeros(4), atol=1e-6)
    assert torch.allclose(losses.js_divergence(p, q, 1), losses.js_divergence(q, p, 1))
    one_hot = torch.eye(2)
    assert losses.js_divergence(one_hot[:1], one_hot[1:], 1).item() == pytest.approx(math.log(2), rel=1e-5)
