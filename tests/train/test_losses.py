"""Each loss: its value on a hand-checkable case, and a gradient that is finite, non-zero,
zero on ignored pixels, and points downhill."""
from __future__ import annotations

import math

import pytest
import torch

from rtseg.train.losses import (LOSSES, CrossEntropyDice, CrossEntropyLovasz, DiceLoss, FocalLoss, JaccardLoss,
                                LovaszSoftmax, OhemCrossEntropy, WithAux, build_loss, enet_weights)

IGNORE = 255


def _logits_for_probs(p_true: list[float], target: list[int]) -> torch.Tensor:
    """(1, 2, 1, N) logits whose softmax gives p_true to each pixel's target class (2 classes)."""
    logits = torch.zeros(1, 2, 1, len(p_true))
    for i, (p, t) in enumerate(zip(p_true, target)):
        logits[0, t, 0, i] = math.log(p / (1 - p))  # other class stays at 0
    return logits


def test_cross_entropy_of_uniform_logits_is_log_c_and_ignores_255():
    target = torch.tensor([[[0, 2, 1, IGNORE]]])
    loss = build_loss("ce", aux_weight=0)(torch.zeros(1, 3, 1, 4), target)
    assert loss.item() == pytest.approx(math.log(3))


def test_focal_by_hand():
    # p_t = 0.5 everywhere: ce = ln 2, focal = (1 - 0.5)^2 ln 2
    loss = FocalLoss(gamma=2.0)(torch.zeros(1, 2, 1, 3), torch.tensor([[[0, 1, IGNORE]]]))
    assert loss.item() == pytest.approx(0.25 * math.log(2))


def test_ohem_keeps_the_hard_pixels():
    target = [0, 1, 0, 1]
    p = [0.9, 0.8, 0.6, 0.2]  # losses -ln p; the hard ones (p < 0.7) are 0.6 and 0.2
    logits = _logits_for_probs(p, target)
    t = torch.tensor([[target]])
    loss = OhemCrossEntropy(thresh=0.7, min_kept=1)(logits, t)
    assert loss.item() == pytest.approx((-math.log(0.6) - math.log(0.2)) / 2, rel=1e-5)
    # min_kept = 3 tops the two up with the next hardest (0.8)
    loss3 = OhemCrossEntropy(thresh=0.7, min_kept=3)(logits, t)
    assert loss3.item() == pytest.approx((-math.log(0.8) - math.log(0.6) - math.log(0.2)) / 3, rel=1e-5)


def test_dice_and_jaccard_by_hand():
    # two pixels, two classes, probabilities 0.5/0.5, targets [0, 1]:
    # per class |P.T| = 0.5, |P| = 1, |T| = 1 -> Dice 2*0.5/2 = 0.5, IoU 0.5/1.5 = 1/3
    logits, target = torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]])
    assert DiceLoss(smooth=0)(logits, target).item() == pytest.approx(0.5)
    assert JaccardLoss(smooth=0)(logits, target).item() == pytest.approx(2 / 3)
    assert DiceLoss(smooth=1)(logits, target).item() == pytest.approx(1 - 2 / 3)  # (1 + 1) / (2 + 1)


def test_dice_averages_only_classes_present_in_the_target():
    # target all class 0: |P0.T0| = 1, |P0| = 1, |T0| = 2 -> Dice 2/3; class 1 absent, left out
    logits, target = torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 0]]])
    assert DiceLoss(smooth=0)(logits, target).item() == pytest.approx(1 / 3)


def test_ce_dice_is_the_sum():
    logits, target = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    expected = torch.nn.functional.cross_entropy(logits, target) + DiceLoss()(logits, target)
    assert CrossEntropyDice()(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_lovasz_of_hard_predictions_is_one_minus_iou_of_the_classes_present():
    # At 0/1 probabilities the Lovasz extension equals the set function: mean over the classes in
    # the target of 1 - IoU. Target 0 0 1 1 2, prediction 0 1 1 1 0 (class 3 absent, 255 ignored):
    # IoU0 = 1/3 (pixels {0,1} vs {0,4}), IoU1 = 2/3, IoU2 = 0 -> loss = (2/3 + 1/3 + 1) / 3
    target = torch.tensor([[[0, 0, 1, 1, 2, IGNORE]]])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    logits = torch.full((1, 4, 1, 6), -50.0)
    logits[0, pred, 0, torch.arange(6)] = 50.0
    assert LovaszSoftmax()(logits, target).item() == pytest.approx((2 / 3 + 1 / 3 + 1) / 3, abs=1e-6)
    perfect = torch.full((1, 4, 1, 6), -50.0)
    perfect[0, torch.tensor([0, 0, 1, 1, 2, 3]), 0, torch.arange(6)] = 50.0
    assert LovaszSoftmax()(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_lovasz_stride_scores_every_other_pixel():
    logits, target = torch.randn(2, 3, 8, 10), torch.randint(0, 3, (2, 8, 10))
    strided = LovaszSoftmax(stride=2)(logits, target)
    assert strided.item() == pytest.approx(LovaszSoftmax()(logits[:, :, ::2, ::2], target[:, ::2, ::2]).item())
    expected = torch.nn.functional.cross_entropy(logits, target) + strided
    assert CrossEntropyLovasz()(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_aux_outputs_are_weighted():
    ce = torch.nn.CrossEntropyLoss()
    main, a1, a2 = torch.randn(3, 1, 3, 4, 4).unbind(0)
    target = torch.randint(0, 3, (1, 4, 4))
    got = WithAux(ce, 0.4)((main, [a1, a2]), target)
    assert got.item() == pytest.approx((ce(main, target) + 0.4 * (ce(a1, target) + ce(a2, target))).item(), rel=1e-5)
    assert WithAux(ce, 0.4)(main, target).item() == pytest.approx(ce(main, target).item())


def test_with_aux_takes_one_weight_per_head():
    """A network's paper weights, one per head (e.g. BiSeNetV2's boosters: 1 each)."""
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 4, 5))
    main, a1, a2 = (torch.randn(2, 3, 4, 5) for _ in range(3))
    ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    got = WithAux(ce, (1.0, 0.25))((main, [a1, a2]), target)
    want = ce(main, target) + ce(a1, target) + 0.25 * ce(a2, target)
    assert got.item() == pytest.approx(want.item())
    with pytest.raises(ValueError, match="2 auxiliary outputs but 1 weights"):
        WithAux(ce, (1.0,))((main, [a1, a2]), target)


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_is_finite_nonzero_zero_on_ignored_and_descends(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8))
    target[:, :2] = IGNORE
    loss_fn = build_loss(name, aux_weight=0)
    if name == "ohem":
        loss_fn = OhemCrossEntropy(min_kept=16)
    loss = loss_fn(logits, target)
    loss.backward()
    g = logits.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    if name in ("ce", "ohem", "focal"):  # per-pixel losses: ignored pixels get no gradient at all
        assert g[:, :, :2].abs().max() == 0
    with torch.no_grad():
        stepped = loss_fn(logits - 0.5 * g / g.norm(), target)
    assert stepped.item() < loss.item()


def test_enet_weights_formula():
    w = enet_weights([80, 20, 0])  # shares p = 0.8, 0.2, 0.0
    expected = [1 / math.log(1.02 + 0.8), 1 / math.log(1.02 + 0.2), 1 / math.log(1.02)]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert w[2] > w[1] > w[0]  # rarer classes weigh more; an absent one gets the cap 1/ln 1.02


def test_class_weights_change_ce():
    logits, target = torch.randn(1, 2, 4, 4), torch.tensor([[[0, 0, 0, 1]] * 4])
    plain = build_loss("ce", aux_weight=0)(logits, target)
    weighted = build_loss("ce", aux_weight=0, class_weights=torch.tensor([1.0, 10.0]))(logits, target)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor([1.0, 10.0]))
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-6) and weighted.item() != pytest.approx(plain.item())


def test_unknown_loss_names_the_choices():
    from rtseg.errors import RtsegError

    with pytest.raises(RtsegError, match="ce, ohem, focal, dice, jaccard, ce_dice"):
        build_loss("hinge")
