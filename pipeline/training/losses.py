"""The training loss of region-based segmentation: soft Dice plus binary cross-entropy, one sigmoid per region.

MONAI 1.6.1's ``DiceCELoss(sigmoid=True)`` takes a softmax cross-entropy across the channels, wrong for regions that
overlap (`pipeline.monai_workarounds`); nnU-Net's region training uses Dice + BCE, which this is. A network with
deep supervision (DynUNet's heads) is scored on every head, weighted as nnU-Net weighs them (`DeepSupervised`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.core.errors import UserError


class IgnoreMasked(torch.nn.Module):
    """``loss`` with nnU-Net's ``ignore`` voxels left out: where a target exceeds 1
    (`pipeline.data.labels.IGNORE_TARGET`), the logit is set to -20 and the target to 0, so that such a voxel adds
    nothing to a Dice and nothing to a BCE, and no gradient. Targets in [0, 1] pass unchanged."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ignored = target > 1
        if bool(ignored.any()):
            logits = torch.where(ignored, torch.full_like(logits, -20.0), logits)
            target = torch.where(ignored, torch.zeros_like(target), target)
        return self.loss(logits, target)


class DiceBCELoss(torch.nn.Module):
    """``dice_weight * (1 - soft Dice) + bce_weight * BCE`` of logits ``(B, R, H, W, D)`` against targets in [0, 1]
    of the same shape (soft targets, as after a resampling, are fine).

    The Dice is computed per region over the whole batch (nnU-Net's batch Dice: a patch without a region does not
    reward an empty prediction by itself) and averaged over the regions.

    ``fn_weight`` other than 0.5 replaces the Dice by the Tversky index ``TP / (TP + (1 - w) FP + w FN)`` (soft
    counts; Salehi et al. 2017): above 0.5 a missed voxel costs more than a false one, which trades precision for
    recall (0.5 is the Dice itself).
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, smooth: float = 1e-5,
                 fn_weight: float = 0.5) -> None:
        super().__init__()
        self.dice_weight, self.bce_weight, self.smooth = float(dice_weight), float(bce_weight), float(smooth)
        try:
            self.fn_weight = float(fn_weight)
        except (TypeError, ValueError):
            self.fn_weight = math.nan
        if not 0.0 < self.fn_weight < 1.0:
            raise UserError(f"train#loss#fn_weight must be a number between 0 and 1 (0.5: the Dice; 0.7 weights a "
                            f"missed voxel above a false one), got {fn_weight!r}")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.float()
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        prob = torch.sigmoid(logits)
        dims = (0, *range(2, logits.ndim))
        intersection = (prob * target).sum(dims)
        if self.fn_weight == 0.5:
            total = prob.sum(dims) + target.sum(dims)
            dice = (2 * intersection + self.smooth) / (total + self.smooth)
        else:  # Tversky: false positives and negatives weighted apart
            fp, fn = prob.sum(dims) - intersection, target.sum(dims) - intersection
            dice = (intersection + self.smooth) / (
                intersection + (1 - self.fn_weight) * fp + self.fn_weight * fn + self.smooth)
        loss = self.dice_weight * (1 - dice.mean())
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(logits, target)
        return loss


def deep_supervision_weights(heads: int) -> list[float]:
    """nnU-Net's weights of ``heads`` outputs, full resolution first: ``1 / 2**i``, summing to 1."""
    if heads < 1:
        raise ValueError(f"deep supervision needs at least one output, not {heads}")
    raw = [0.5**i for i in range(heads)]
    return [w / sum(raw) for w in raw]


class DeepSupervised(torch.nn.Module):
    """``loss`` over a network's deep-supervision outputs: logits ``(B, K, R, H, W, D)``, the full-resolution
    output first and ``K - 1`` coarser heads brought to its size (MONAI's DynUNet in training mode, with
    ``deep_supervision``), against targets ``(B, R, H, W, D)``; the heads' losses are weighted by
    `deep_supervision_weights`. Logits of the target's shape (any network in evaluation mode, a network without
    heads) pass to ``loss`` unchanged."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != target.ndim + 1:
            return self.loss(logits, target)
        heads = torch.unbind(logits, dim=1)
        weights = deep_supervision_weights(len(heads))
        return sum(w * self.loss(head, target) for w, head in zip(weights, heads, strict=True))
