"""Test-time augmentation, post-processing of the region masks, and fold ensembles.

Everything here works on the network's region channels (TC, WT, ET for the BraTS schemes;
:attr:`pipeline.labels.Description.regions`): logits ``(B, R, H, W, D)`` for the inferers and the ensemble,
binary masks ``(R, H, W, D)`` for the post-processing transforms. Probabilities are averaged, never logits,
and handed back as logits (``logit(mean p)``) so that the bundle's ``Activationsd(sigmoid=True)`` recovers the
mean probability exactly.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.inferers import Inferer
from monai.transforms import MapTransform

from pipeline.labels import REGIONS

logger = logging.getLogger(__name__)

_EPS = 1e-6


def probabilities_to_logits(p: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 - p))`` with ``p`` clamped to ``[1e-6, 1 - 1e-6]``: the inverse of the sigmoid."""
    return torch.logit(p.clamp(_EPS, 1 - _EPS))


class MirrorInferer(Inferer):
    """Mirroring test-time augmentation (nnU-Net's): the mean sigmoid probability over every flip combination.

    With the default three spatial axes that is 8 predictions per volume (identity, 3 single flips, 3 pairs,
    all three), each flipped back before averaging; the result is returned as logits.

    Args:
        inferer: the inferer to run on each flipped input (e.g. the bundle's ``SlidingWindowInferer``).
        axes: spatial axes (0, 1, 2 for ``H, W, D``) to mirror.
    """

    def __init__(self, inferer: Inferer, axes: Sequence[int] = (0, 1, 2)) -> None:
        super().__init__()
        self.inferer = inferer
        self.flips = [tuple(a + 2 for a in combo) for r in range(len(axes) + 1)
                      for combo in itertools.combinations(axes, r)]

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:  # noqa: ANN001
        total = None
        for dims in self.flips:
            x = torch.flip(inputs, dims) if dims else inputs
            p = torch.sigmoid(self.inferer(x, network, *args, **kwargs).float())
            p = torch.flip(p, dims) if dims else p
            total = p if total is None else total + p
        return probabilities_to_logits(total / len(self.flips))


def with_tta(inferer: Inferer, tta: bool) -> Inferer:
    """``inferer`` wrapped in :class:`MirrorInferer` when ``tta`` is true (the ``tta`` config id)."""
    return MirrorInferer(inferer) if tta else inferer


class SmallEnhancingToNecrosisd(MapTransform):
    """Relabel an enhancing tumour smaller than ``min_voxels`` as necrosis (non-enhancing core).

    On binary regions ``(R, H, W, D)`` in ``regions`` order, which must hold TC, WT and ET (any order, other regions
    untouched): when ``0 < |ET| < min_voxels`` the ET channel is cleared
    and its voxels stay in TC (and WT), so they are written as label 1. BraTS scores an empty ET as Dice 1
    when the reference ET is empty too, and a few false-positive ET voxels as 0, so a small predicted ET
    is more often a loss than a gain (Jiang et al., BraTS 2020 winner, used 500 voxels at 1 mm).
    ``min_voxels = 0`` turns it off.
    """

    def __init__(self, keys: KeysCollection, min_voxels: int = 0, allow_missing_keys: bool = False,
                 regions: Sequence[str] = REGIONS) -> None:
        super().__init__(keys, allow_missing_keys)
        if min_voxels < 0:
            raise ValueError(f"min_voxels must be >= 0, got {min_voxels}")
        self.min_voxels = int(min_voxels)
        self.regions = list(regions)
        if self.min_voxels and not {"TC", "WT", "ET"} <= set(self.regions):
            raise ValueError(f"min_et_voxels needs the regions TC, WT and ET; this network has {self.regions}: "
                             "leave --min_et_voxels 0")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        if self.min_voxels == 0:
            return d
        tc, wt, et = (self.regions.index(r) for r in ("TC", "WT", "ET"))
        for key in self.key_iterator(d):
            regions = d[key]
            n_et = int((regions[et] > 0.5).sum())
            if 0 < n_et < self.min_voxels:
                regions = regions.clone()
                moved = regions[et] > 0.5
                regions[tc][moved] = 1
                regions[wt][moved] = 1
                regions[et] = 0
                d[key] = regions
                logger.info("%s: enhancing tumour of %d voxels (< %d) relabelled as necrosis",
                            d.get("case", key), n_et, self.min_voxels)
        return d


class ProbabilityEnsemble(torch.nn.Module):
    """The mean sigmoid probability of several networks with the same input and output, returned as logits.

    Its ``state_dict`` keys are ``networks.<i>.<key of network i>``: :func:`write_ensemble_checkpoint`
    writes such a file from the folds' checkpoints, so MONAI's ``CheckpointLoader`` loads it like any model.
    """

    def __init__(self, networks: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        self.networks = torch.nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(net(x).float()) for net in self.networks]).mean(0)
        return probabilities_to_logits(p)


def ensemble_of(network: torch.nn.Module, n: int) -> ProbabilityEnsemble:
    """``n`` independent copies of ``network`` (the bundle's ``network_def``) as a :class:`ProbabilityEnsemble`."""
    import copy

    return ProbabilityEnsemble([copy.deepcopy(network) for _ in range(n)])


def fold_checkpoint(run_dir: str | os.PathLike, fold: int) -> Path:
    """Where cross-validation training (``make cv``) leaves fold ``fold``'s best model."""
    return Path(run_dir) / f"fold_{fold}" / "models" / "model.pt"


def write_ensemble_checkpoint(run_dir: str | os.PathLike, folds: Sequence[int]) -> str:
    """Combine the folds' ``model.pt`` into ``run_dir/ensemble/model.pt`` for a :class:`ProbabilityEnsemble`.

    Returns the path (the ensemble config's ``ckpt_path``). Written atomically.

    Raises:
        UserError: a fold has no checkpoint (the fold and the file named), or the folds were trained with
            different networks (their run.json records differ).
    """
    from pipeline.engine import atomic_torch_save
    from pipeline.errors import UserError
    from pipeline.runs import differing, read_record

    missing = [f"fold {f}: {fold_checkpoint(run_dir, f)}" for f in folds if not fold_checkpoint(run_dir, f).is_file()]
    if missing:
        raise UserError("no checkpoint for " + "; ".join(missing) + ". Train the folds first: make cv")
    networks = {f: (read_record(fold_checkpoint(run_dir, f).parent.parent) or {}).get("network") for f in folds}
    first = networks[folds[0]]
    for f, net in networks.items():
        if net != first:
            raise UserError(f"fold {f} of {run_dir} was trained with another network than fold {folds[0]} "
                            f"({'; '.join(differing(first or {}, net or {}))}): an ensemble averages one architecture;"
                            " retrain the fold or pass --ensemble_folds without it")
    state = {}
    for i, f in enumerate(folds):
        for k, v in torch.load(fold_checkpoint(run_dir, f), map_location="cpu", weights_only=True).items():
            state[f"networks.{i}.{k}"] = v
    out = Path(run_dir) / "ensemble" / "model.pt"
    atomic_torch_save(state, out)
    logger.info("ensemble of folds %s: %s", list(folds), out)
    return str(out)
