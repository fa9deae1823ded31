"""Fold ensembles: the mean probability of the cross-validation folds' networks, loaded as one model.

``bundle/configs/variants/ensemble.yaml`` builds a `ProbabilityEnsemble` of ``len(ensemble_folds)`` copies of the
network (`ensemble_of`) and loads the folds' ``model.pt`` into it (`load_ensemble`; `fold_checkpoint`, where
``make cv`` leaves them), combined in memory: inference writes nothing into the run folder. Like
`pipeline.inference.predict.MirrorInferer` it takes logits ``(B, R, H, W, D)`` of the network's region channels,
averages sigmoid probabilities, never logits, and hands the mean back as logits
(`pipeline.inference.predict.probabilities_to_logits`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.core.config import as_infer_fold, differing
from pipeline.core.errors import UserError
from pipeline.core.provenance import ID_ONLY, id_only_note
from pipeline.inference.predict import probabilities_to_logits
from pipeline.model.held_out import trained_on
from pipeline.model.record import RunError, model_interface, read_record, refuse_training_in_progress
from pipeline.model.weights import load_state, read_state

logger = logging.getLogger(__name__)


class ProbabilityEnsemble(torch.nn.Module):
    """The mean sigmoid probability of several networks with the same input and output, returned as logits.

    Its ``state_dict`` keys are ``networks.<i>.<key of network i>`` (`ensemble_state` combines the folds'
    checkpoints so).
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
    """``n`` independent copies of ``network`` (the bundle's ``network_def``) as a `ProbabilityEnsemble`."""
    import copy

    return ProbabilityEnsemble([copy.deepcopy(network) for _ in range(n)])


def fold_checkpoint(run_dir: str | os.PathLike, fold: int) -> Path:
    """Where cross-validation training (``make cv``) leaves fold ``fold``'s best model."""
    return Path(run_dir) / f"fold_{fold}" / "models" / "model.pt"


def ensemble_checkpoints(run_dir: str | os.PathLike, folds: Sequence[int]) -> list[str]:
    """The folds' ``model.pt`` files in the ensemble's order (network ``i`` is fold ``folds[i]``): the ensemble
    config's ``ckpt_path``, whose files identify the ensemble in each segmentation's provenance (`model_id`)."""
    return [str(fold_checkpoint(run_dir, f)) for f in folds]


def ensemble_state(run_dir: str | os.PathLike, folds: Sequence[int]) -> dict[str, torch.Tensor]:
    """The folds' ``model.pt`` combined in memory for a `ProbabilityEnsemble` (``networks.<i>.<key>``); nothing is
    written (the run folder is an input of inference).

    Raises:
        UserError: a fold has no checkpoint (the fold and the file named), is still training, or the folds were
            trained with different networks or data (their run.json records differ).
    """
    missing = [f"fold {f}: {fold_checkpoint(run_dir, f)}" for f in folds if not fold_checkpoint(run_dir, f).is_file()]
    if missing:
        raise UserError("no checkpoint for " + "; ".join(missing) + ". Train the folds first: make cv")
    for f in folds:
        refuse_training_in_progress(fold_checkpoint(run_dir, f).parent.parent, what="the fold ensemble")
    models = {f: model_interface(read_record(fold_checkpoint(run_dir, f).parent.parent)) for f in folds}
    first = models[folds[0]]
    for f, model in models.items():
        if model["network"] != first["network"]:
            raise UserError(f"fold {f} of {run_dir} was trained with another network than fold {folds[0]} "
                            f"({'; '.join(differing(first['network'] or {}, model['network'] or {}))}): an ensemble "
                            "averages one architecture; retrain the fold or pass --ensemble_folds without it")
        if model != first:
            raise UserError(f"fold {f} of {run_dir} takes or gives other data than fold {folds[0]} "
                            f"({'; '.join(differing(first, model))}): an ensemble feeds its models one input at "
                            "fold 0's grid and channel order and writes one set of regions; retrain the fold or pass "
                            "--ensemble_folds without it")
    state = {}
    for i, f in enumerate(folds):
        fix = f"retrain fold {f} (make cv), or pass --ensemble_folds without it"
        for k, v in read_state(fold_checkpoint(run_dir, f), fix=fix).items():
            state[f"networks.{i}.{k}"] = v
    return state


def load_ensemble(network: torch.nn.Module, run_dir: str | os.PathLike, folds: Sequence[int], *,
                  device: str | torch.device = "cpu", record: dict | None = None) -> torch.nn.Module:
    """Load the folds' models into the `ProbabilityEnsemble` ``network`` (`ensemble_state`, then
    `pipeline.model.weights.load_state`'s checks); the ensemble config's ``weights``."""
    state = {k: v.to(device) for k, v in ensemble_state(run_dir, folds).items()}
    logger.info("ensemble of folds %s of %s", list(folds), run_dir)
    return load_state(network, state, f"the ensemble of folds {list(folds)} of {run_dir}", record=record)


def _trained_by_fold(run_dir: str | os.PathLike, folds: Sequence[int],
                     items: Sequence[dict]) -> dict[int, dict[str, bool | str]]:
    """``{fold: {case id: mark}}`` of the items its model trained on (`trained_on`), folds with some only."""
    by_fold = {f: trained_on(read_record(fold_checkpoint(run_dir, f).parent.parent), items) for f in folds}
    return {f: cases for f, cases in by_fold.items() if cases}


def ensemble_trained_on(run_dir: str | os.PathLike, folds: Sequence[int],
                        items: Sequence[dict]) -> dict[str, bool | str]:
    """``{case id: mark}`` of the ``items`` that any of the folds' models trained on (`trained_on`): `ID_ONLY`
    where every fold that names the case trained on other images."""
    trained: dict[str, bool | str] = {}
    for cases in _trained_by_fold(run_dir, folds, items).values():
        for case, mark in cases.items():
            trained[case] = ID_ONLY if trained.get(case, ID_ONLY) == ID_ONLY and mark == ID_ONLY else True
    return {str(it["case"]): trained[str(it["case"])] for it in items if str(it["case"]) in trained}


def check_ensemble_held_out(run_dir: str | os.PathLike, folds: Sequence[int], items: Sequence[dict],
                            infer_fold: object) -> None:
    """Refuse ``--infer_fold`` for a fold ensemble when any of its folds' models trained on that fold's cases (each
    fold's run.json split, by case id): an ensemble of several folds holds no fold out.

    Raises:
        RunError: the folds whose models trained on the fold's cases, with the way to an out-of-fold score.
    """
    if as_infer_fold(infer_fold) is None:
        return
    leaking = _trained_by_fold(run_dir, folds, items)
    if leaking:
        raise RunError(f"--infer_fold {infer_fold}: the models of fold(s) {', '.join(map(str, leaking))} of this "
                       f"ensemble trained on cases of that fold ({', '.join(list(next(iter(leaking.values())))[:3])} "
                       f"...){id_only_note(next(iter(leaking.values())))}, "
                       "so their Dice would not be held out: score each fold's own model on its fold (make "
                       "cv-summary), or drop --infer_fold to segment every case")
