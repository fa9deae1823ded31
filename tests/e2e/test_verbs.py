"""The verbs of ``python -m pipeline``: train, infer and evaluate with short commands, each printing the equivalent
``python -m monai.bundle run`` line, no MONAI notice, and a ``next:`` line that runs as printed in a fresh shell
(without the venv on PATH); outputs in folders named after the dataset."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.commands import next_steps
from tests.e2e.test_demo import MONAI_NOTICES
from tests.helpers import REPO, TINY_IDS
from tests.warm import run_module

#: A fresh shell: the system's PATH only, no virtual environment activated.
FRESH = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}


def _run(args: list[str] | str, cwd: Path) -> str:
    shell = isinstance(args, str)
    if shell:
        result = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=600, shell=True, env=FRESH)
    else:
        result = run_module([sys.executable, "-m", "pipeline", *args], cwd=cwd, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for notice in MONAI_NOTICES:
        assert notice not in output, notice
    return result.stdout


def _next(stdout: str) -> str:
    line = [line for line in stdout.splitlines() if line.startswith("next: ")][-1]
    return line.removeprefix("next: ")


def test_train_infer_evaluate_through_the_verbs_and_their_next_lines(tmp_path: Path) -> None:
    """Training options the later stages must follow, given once to ``train``: a normalisation and an override of
    the shared preprocessing (inference applies both, from the run's record) and the numbering of BraTS-PED 2024
    cases, whose names do not tell it (``auto`` is refused on them): each ``next:`` line runs as printed in a fresh
    shell and carries the scheme in its own command's spelling."""
    from pipeline.data.synthetic import write_dataset
    from tests.helpers import TINY_SHAPE, as_brats_ped

    numbering = "ped"
    work = tmp_path / "work"  # the user's folder: runs/ and outputs go here
    work.mkdir()
    write_dataset(tmp_path / "gli", cases=4, shape=TINY_SHAPE, seed=3, layout="brats2023")
    data = as_brats_ped(tmp_path / "gli", work / "PED_small", numbering)
    options = {"normalization": "percentile", "crop_foreground#margin": 3, "label_scheme": numbering}
    tiny = [w for k, v in {**TINY_IDS, "epochs": 1, "folds": 2, "batch_size": 1, **options}.items()
            for w in (k, json.dumps(v).replace(" ", "") if isinstance(v, list) else str(v))]
    out = _run(["train", str(data), "--plain", "--set", *tiny], work)
    assert re.search(r"^\$ \S+ -m monai\.bundle run training ", out, flags=re.MULTILINE)
    run = work / "runs" / "PED_small"  # runs/<dataset name>
    assert (run / "models" / "model.pt").is_file()
    ids = json.loads((run / "run.json").read_text())["ids"]
    assert (ids["normalization"], ids["preprocessing"]) == ("percentile", {"crop_foreground::margin": 3})

    infer = _next(out)  # python -m pipeline infer -i DATA --run runs/PED_small ..., by the venv's python
    assert " -m pipeline infer -i " in infer and infer.split()[0] != "python"
    assert infer.endswith(f"--set label_scheme {numbering}"), infer
    out = _run(infer, work)
    assert re.search(r"^\$ \S+ -m monai\.bundle run inference .* --crop_foreground::margin 3", out, flags=re.MULTILINE)
    assert len(list((run / "seg_PED_small").glob("*.nii.gz"))) == 4

    evaluate = _next(out)  # python -m pipeline evaluate SEG DATA --scheme ped
    assert evaluate.endswith(f"--scheme {numbering}"), evaluate
    out = _run(evaluate, work)
    evaluation = run / "eval_PED_small"
    assert (evaluation / "summary.json").is_file() and (evaluation / "report.html").is_file()
    assert json.loads((evaluation / "summary.json").read_text())["scheme"] == numbering and "report:" in out


def test_the_documented_commands_are_short() -> None:
    for line in next_steps("data/BraTS2021_train", "data/BraTS2021_test"):
        assert len(line) < 100, line
    readme = (REPO / "README.md").read_text()
    quick = re.search(r"<!-- own-data -->\n```bash\n(.*?)```", readme, flags=re.DOTALL)
    assert quick, "README: the own-data block (<!-- own-data --> then a bash block)"
    commands = [c for c in quick.group(1).splitlines() if c.strip() and not c.startswith("#")]
    assert len(commands) == 3 and all(len(c) < 100 for c in commands), commands


def test_inference_refuses_a_folder_of_another_datasets_segmentations(tiny_dataset: Path, trained_run: Path,
                                                                      tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    flair = sorted(other.rglob("*_flair.nii.gz"))[0]  # other images under the same names (a byte-identical copy is
    img = nib.load(flair)                             # the same images: provenance.json knows them by content)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine, img.header), flair)
    seg = tmp_path / "seg"
    _run(["infer", "-i", str(tiny_dataset), "-o", str(seg), "--run", str(trained_run)], tmp_path)
    result = run_module([sys.executable, "-m", "pipeline", "infer", "-i", str(other), "-o", str(seg), "--run",
                             str(trained_run)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "another dataset" in last and "seg_other" in last


def test_an_evaluation_never_replaces_another(tiny_dataset: Path, tmp_path: Path) -> None:
    from tests.helpers import corrupted_predictions

    a = corrupted_predictions(tiny_dataset, tmp_path / "a", 1)
    b = corrupted_predictions(tiny_dataset, tmp_path / "b", 2)
    out = tmp_path / "eval"
    _run(["evaluate", str(a), str(tiny_dataset), "--out", str(out), "--no-pictures"], tmp_path)
    _run(["evaluate", str(a), str(tiny_dataset), "--out", str(out), "--no-pictures"], tmp_path)  # the same: again
    before = (out / "metrics.csv").read_text()
    result = run_module([sys.executable, "-m", "pipeline", "evaluate", str(b), str(tiny_dataset), "--out",
                             str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2 and "holds the evaluation of" in result.stderr.strip().splitlines()[-1]
    assert (out / "metrics.csv").read_text() == before
    empty = tmp_path / "empty"  # --overwrite with predictions that cannot be scored: refused, the old one kept
    empty.mkdir()
    result = run_module([sys.executable, "-m", "pipeline", "evaluate", str(empty), str(tiny_dataset), "--out",
                         str(out), "--overwrite"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2 and "no prediction in" in result.stderr.strip().splitlines()[-1]
    assert (out / "metrics.csv").read_text() == before
    _run(["evaluate", str(b), str(tiny_dataset), "--out", str(out), "--overwrite"], tmp_path)
    assert json.loads((out / "summary.json").read_text())["predictions"] == str(b.resolve())


@pytest.mark.parametrize("scheme", ["brats", "brats2023"])
def test_check_reads_a_folder_of_labels_with_a_scheme(tiny_dataset: Path, tmp_path: Path, scheme: str) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    for label in sorted(tiny_dataset.rglob("*_seg.nii.gz")):
        shutil.copy(label, labels / f"{label.parent.name}.nii.gz")
    result = run_module([sys.executable, "-m", "pipeline", "check", str(labels), "--label_scheme", scheme],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    if scheme == "brats":  # BraTS 2021 labels 1, 2, 4
        assert result.returncode == 0 and "4 case(s)" in result.stdout and "labels folder" in result.stdout
    else:  # 4 is not a label of BraTS 2023 (ET = 3)
        assert result.returncode == 1 and "outside brats2023" in result.stdout
    auto = run_module([sys.executable, "-m", "pipeline", "check", str(labels)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert auto.returncode == 2 and "--label_scheme" in auto.stderr.strip().splitlines()[-1]


def test_a_datalist_segmented_through_the_verbs_is_evaluated_by_its_next_line(tiny_dataset: Path, trained_run: Path,
                                                                              tmp_path: Path) -> None:
    from pipeline.data.datalist import write_datalist

    datalist = tmp_path / "dl.json"
    write_datalist(tiny_dataset, datalist, folds=2, seed=0)
    seg = tmp_path / "seg"
    out = _run(["infer", "-i", str(datalist), "-o", str(seg), "--run", str(trained_run)], tmp_path)
    evaluate = _next(out)  # python -m pipeline evaluate SEG DATALIST: the datalist is the reference
    assert (tmp_path / evaluate.split()[-1]).resolve() == datalist.resolve()
    out = _run(evaluate, tmp_path)
    evaluation = (tmp_path / re.search(r"^report: (\S+)", out, flags=re.MULTILINE).group(1)).parent
    rows = (evaluation / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 3  # every case of the datalist, three regions each
    # worst, median and best drawn on their images, found through the datalist's layout
    assert len(list((evaluation / "overlays").glob("BraTS2021_*.png"))) == 3
    assert (evaluation / "dice_boxplot.png").is_file()


@pytest.mark.parametrize("verb", ["train", "infer"])
def test_a_refusal_under_a_verb_names_the_verbs_options(verb: str, trained_run: Path, tmp_path: Path) -> None:
    """BraTS 2024 data (2023 file names, RC 4) read as brats2023: the bundle's refusal says --label_scheme, which
    the verbs do not take; under a verb it says --set label_scheme (the verb's own options stay as they are)."""
    from pipeline.data.synthetic import write_dataset
    from tests.helpers import TINY_SHAPE, last_line

    data = tmp_path / "BraTS2024_small"
    write_dataset(data, cases=2, shape=TINY_SHAPE, seed=1, layout="brats2024")
    if verb == "train":
        args = ["train", str(data), "--plain", "--run", str(tmp_path / "run"), "--set", "epochs", "1", "folds", "2"]
    else:
        args = ["infer", "-i", str(data), "--run", str(trained_run), "-o", str(tmp_path / "seg"), "--set",
                "label_scheme", "brats2024"]  # a model of brats's regions asked to write brats2024's
    result = run_module([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, timeout=600)
    error = result.stderr[result.stderr.rfind("error: "):]  # the data check's refusal lists its cases, a line each
    assert result.returncode != 0 and "error: " in result.stderr, (result.stdout + result.stderr)[-3000:]
    advice = re.sub(r"python -m pipeline [^);,]*", "", error)  # a quoted command keeps its own options
    assert "--set label_scheme brats" in advice and not re.search(r"(?<!set) --label_scheme", advice), error
    assert error.strip().splitlines()[-1] in last_line(result)
