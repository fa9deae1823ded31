"""The probability threshold per region, and checkpoints against each other, on region probabilities already written.

    python -m pipeline infer -i DATA --run RUN -o SEG --set save_probabilities true --set min_tumour_fraction 0
    python bench/bench_thresholds.py SEG [SEG ...] --reference data/real \
        [--thresholds 0.5 0.4 0.45 0.55 WT=0.4 ET=0.6] [--min-tumour-fraction 0.5] [--groups NAME:N ...]

Inference thresholds every region's sigmoid at 0.5. Is the budget model calibrated there, or would another threshold,
one per region, score better (an under-segmented oedema would gain from a lower WT threshold)? Each folder's
``probabilities/<case>.nii.gz`` (``(H, W, D, R)`` on the input grid, in the region order of the scheme its
provenance.json records, checked against the names in the file's header,
`pipeline.inference.predict.write_probabilities_like`) is thresholded per configuration, the whole-tumour components
under ``--min-tumour-fraction`` of the largest are dropped (`pipeline.inference.postprocessing.KeepMainTumourd`, as
inference does after the threshold), the regions are turned into labels as inference writes them
(`pipeline.data.labels.regions_to_labels`) and scored in memory, nothing written: the Dice of each evaluated region
(`pipeline.evaluation.metrics.dice` on `pipeline.data.labels.region_masks`, the legacy protocol's, both empty 1)
against ``--reference``, a dataset folder holding every case. A configuration is one number (every region) or
``REGION=VALUE[,REGION=VALUE]`` (those regions; the others 0.5). Folders of two checkpoints of one run (``model.pt`` and
``model_last.pt``, ``--set ckpt_path``) compare the checkpoints at 0.5.

Prints the machine and a Markdown table per group of folders (``--groups val:13 test:13``: the first 13 folders,
then the next 13; default one group): mean Dice per region, averaged first within each folder, then over folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import machine  # noqa: E402


def parse_threshold(text: str, regions: list[str]) -> dict[str, float]:
    """``"0.45"`` -> every region at 0.45; ``"WT=0.4"`` -> WT at 0.4, the others at 0.5."""
    if "=" not in text:
        return dict.fromkeys(regions, float(text))
    out = dict.fromkeys(regions, 0.5)
    for part in text.split(","):
        region, value = part.split("=")
        if region not in out:
            raise SystemExit(f"bench_thresholds: {region} is not a region of the reference ({', '.join(regions)})")
        out[region] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    import nibabel as nib
    import numpy as np
    import torch

    from pipeline.core.errors import UserError
    from pipeline.core.provenance import Provenance
    from pipeline.data.labels import describe, region_masks, regions_to_labels
    from pipeline.evaluation.metrics import dice
    from pipeline.evaluation.reference import read_reference, resolve_evaluation_scheme
    from pipeline.inference.postprocessing import KeepMainTumourd

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="inference output folders holding probabilities/<case>.nii.gz")
    p.add_argument("--reference", required=True, help="the labelled cases: a dataset folder (any layout)")
    p.add_argument("--thresholds", nargs="+", default=["0.5", "0.4", "0.45", "0.55", "0.6"])
    p.add_argument("--min-tumour-fraction", type=float, default=0.5, help="the budget recipe's (0: off)")
    p.add_argument("--groups", nargs="+", default=None, help="NAME:N, in order (default: one group of all)")
    args = p.parse_args(argv)
    print(machine("cpu"), flush=True)

    groups = [("all", len(args.folders))] if not args.groups else [
        (g.split(":")[0], int(g.split(":")[1])) for g in args.groups]
    if sum(n for _, n in groups) != len(args.folders):
        raise SystemExit(f"bench_thresholds: --groups {' '.join(args.groups)} count {sum(n for _, n in groups)} "
                         f"folders, {len(args.folders)} were given")
    reference = read_reference(args.reference)
    if reference.layout is None:
        raise SystemExit(f"bench_thresholds: --reference {args.reference} is not a dataset folder")
    folders = [Path(f) for f in args.folders]
    written = {s for f in folders for s in Provenance(f).schemes(Provenance(f).cases)}  # as inference recorded
    if len(written) != 1:
        raise SystemExit(f"bench_thresholds: the folders' provenance.json name {sorted(written) or 'no'} label "
                         "scheme(s); compare folders written in one scheme, by inference")
    try:  # refused where the reference is numbered otherwise
        scheme = resolve_evaluation_scheme(written.pop(), reference)
    except UserError as e:
        raise SystemExit(f"bench_thresholds: {e}") from None
    desc = describe(scheme)
    regions, evaluated = list(desc.regions), list(desc.evaluated)
    keep = KeepMainTumourd("pred", fraction=args.min_tumour_fraction, description=desc)
    configs = {t: parse_threshold(t, regions) for t in args.thresholds}
    scores: dict[str, dict[int, list[list[float]]]] = {}  # configuration -> folder -> per case, per region
    for i, folder in enumerate(folders):
        files = sorted((folder / "probabilities").glob("*.nii.gz"))
        if not files:
            raise SystemExit(f"bench_thresholds: {folder}/probabilities holds no <case>.nii.gz; run inference with "
                             "--set save_probabilities true")
        for f in files:
            named = bytes(nib.load(f).header["descrip"]).decode(errors="replace").strip("\x00 ")
            if named != ("regions " + ",".join(regions))[:79]:  # (as written: NIfTI-1's descrip holds 79 bytes)
                raise SystemExit(f"bench_thresholds: {f} holds '{named}', not the regions of {scheme} "
                                 f"({', '.join(regions)})")
            case = f.name[: -len(".nii.gz")]
            if case not in reference.files:
                raise SystemExit(f"bench_thresholds: {case} ({f}) is not a case of --reference {args.reference}")
            truth = region_masks(np.asarray(nib.load(reference.files[case]).dataobj), desc.evaluated)
            prob = np.moveaxis(np.asarray(nib.load(f).dataobj, np.float32), -1, 0)  # (R, H, W, D)
            if prob.shape[1:] != truth.shape[1:]:
                raise SystemExit(f"bench_thresholds: {f} {prob.shape[1:]} is not on the grid of its reference "
                                 f"{reference.files[case]} {truth.shape[1:]}")
            lowest = min(min(t.values()) for t in configs.values())  # no voxel outside this box passes any threshold
            box = np.argwhere((prob.max(0) > lowest) | truth.any(0))
            if len(box):  # the same Dice on the box around every voxel any configuration or the reference holds
                window = (slice(None), *(slice(a, b + 1) for a, b in zip(box.min(0), box.max(0), strict=True)))
                prob, truth = prob[window], truth[window]
            for name, thresholds in configs.items():
                t = np.asarray([thresholds[r] for r in regions], np.float32).reshape(-1, 1, 1, 1)
                pred = keep({"pred": torch.as_tensor(prob > t).float(), "case": case})["pred"].numpy() > 0.5
                masks = region_masks(regions_to_labels(pred, scheme), desc.evaluated)
                scores.setdefault(name, {}).setdefault(i, []).append(
                    [dice(torch.as_tensor(m), torch.as_tensor(r)) for m, r in zip(masks, truth, strict=True)])
        print(f"{folder}: {len(files)} cases", flush=True)

    start = 0
    for group, n in groups:
        folders = range(start, start + n)
        start += n
        print(f"\n{group}: {n} folder(s), Dice averaged over each folder's cases, then over the folders")
        print("| threshold | " + " | ".join(f"Dice {r}" for r in evaluated) + " | mean Dice |")
        print("| --- " * (len(evaluated) + 2) + "|")
        for name in configs:
            per_region = np.mean([np.mean(scores[name][i], axis=0) for i in folders], axis=0)
            print(f"| {name} | " + " | ".join(f"{d:.4f}" for d in per_region) + f" | {per_region.mean():.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
