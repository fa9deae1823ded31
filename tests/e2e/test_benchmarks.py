"""End to end through the MONAI CLI (or the scripts a user runs): benchmarks."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO
from tests.warm import run_module

#: the summary lines, ``name: number ...``, that the README and bench/RESULTS.md quote
FIGURES = ("step_s", "network_step_s", "epoch_h", "fold_epoch_h", "peak_rss_gib", "step_rss_gib",
           "cache_mib_per_case", "val_cache_mib_per_case", "cache_fold_gib", "ram_fold_gib")


def test_tiny_cost_benchmark_prints_positive_figures(tmp_path: Path) -> None:
    result = run_module([sys.executable, "bench/bench_cost.py", "--tiny", "--data-dir", str(tmp_path / "data"),
                             "--threads", "1"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = dict(re.findall(r"^(\w+): ([0-9.]+|n/a)\b", result.stdout, flags=re.MULTILINE))
    for name in FIGURES:
        assert name in figures, f"{name} missing from:\n{result.stdout}"
        assert float(figures[name]) > 0, f"{name}: {figures[name]}"
    assert "cuda_peak_gib" in figures  # n/a without a GPU
    assert "CPU:" in result.stdout and "torch" in result.stdout  # the machine line
    assert "epoch of 1251 cases = 626 steps of 2" in result.stdout  # ceil(1251 / batch_size 2)


def test_training_benchmark_prints_machine_figures_and_ratios(tmp_path: Path) -> None:
    result = run_module([sys.executable, "bench/bench_training.py", "--tiny", "--steps", "3", "--warmup", "1",
                             "--data-dir", str(tmp_path / "data"),
                             "--variant", "fp32:cache_image_dtype=$torch.float32"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "CPU:" in out and "GPU:" in out and "torch 2" in out and "monai 1" in out
    assert "plain:" in out and "ours:" in out and "patches/s" in out
    assert "ratio ours/plain:" in out and "ratio fp32/plain:" in out
    assert out.count("GFLOP per patch forward") == 3 and "TFLOP/s for the training step" in out


def test_inference_benchmark_prints_seconds_per_volume_writing_apart_and_ratio(tmp_path: Path) -> None:
    result = run_module([sys.executable, "bench/bench_inference.py", "--tiny", "--cases", "2", "--data-dir",
                             str(tmp_path / "data")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "CPU:" in out and "monai 1" in out
    assert out.count("s per volume (median of 1 cases") == 3 and "writing the NIfTI" in out  # plain, ours, ours_sync
    assert "writer thread(s)" in out and out.count("end to end, every file written") == 3
    assert "ratio plain/ours:" in out and "background writers:" in out


@pytest.mark.parametrize("layout", ["brats2021", "brats2023", "msd"])
def test_tumour_fraction_benchmark_drops_a_far_false_lesion_and_scores_it_as_an_independent_dice(
        layout_datasets: dict[str, Path], tmp_path: Path, layout: str) -> None:
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    from pipeline.data.labels import describe
    from pipeline.data.layouts import detect_layout, discover_cases

    dataset = layout_datasets[layout]
    oedema = describe(detect_layout(dataset).label_scheme).roles["ED"]  # in the reference's own numbering
    seg = tmp_path / "seg"
    seg.mkdir()
    expected = {}  # case -> (WT Dice with the false lesion, WT Dice without it), counted here with numpy
    for case in discover_cases(dataset):
        ref_img = nib.load(case.label)
        ref = np.asarray(ref_img.dataobj).astype(np.uint8)
        wt = ref > 0
        pred = ref.copy()
        far = tuple(0 if c > s / 2 else s - 3 for c, s in zip(ndimage.center_of_mass(wt), ref.shape, strict=True))
        box = tuple(slice(c, c + 3) for c in far)
        assert not wt[box].any()
        pred[box] = oedema  # a 27-voxel oedema lesion in the far corner: far below half the tumour
        kept = pred > 0
        labels, n = ndimage.label(kept, structure=np.ones((3, 3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        cleaned = np.isin(labels, np.flatnonzero(sizes >= 0.5 * sizes.max()) + 1)
        expected[case.case_id] = (2 * (kept & wt).sum() / (kept.sum() + wt.sum()),
                                  2 * (cleaned & wt).sum() / (cleaned.sum() + wt.sum()))
        nib.save(nib.Nifti1Image(pred, ref_img.affine, ref_img.header), seg / f"{case.case_id}.nii.gz")
    result = run_module([sys.executable, "bench/bench_tumour_fraction.py", str(seg), "--reference", str(dataset),
                         "--out", str(tmp_path / "out"), "--fractions", "0", "0.5"],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    header = re.search(r"^\| dropped under .*\|$", result.stdout, flags=re.MULTILINE).group(0).split(" | ")
    rows = dict(re.findall(r"^\| ([0-9.]+) \| (.+) \|$", result.stdout, flags=re.MULTILINE))
    wt_dice = {f: float(rows[f].split(" | ")[header.index("Dice WT") - 1]) for f in ("0", "0.5")}
    assert wt_dice["0"] == pytest.approx(np.mean([e[0] for e in expected.values()]), abs=1e-4)
    assert wt_dice["0.5"] == pytest.approx(np.mean([e[1] for e in expected.values()]), abs=1e-4)
    assert wt_dice["0.5"] > wt_dice["0"]
    assert "CPU:" in result.stdout and "cases that change" in result.stdout


def test_reader_race_benchmark_counts_short_images_per_reader_and_none_with_ours(tiny_dataset: Path) -> None:
    result = run_module([sys.executable, "bench/bench_reader_race.py", str(tiny_dataset), "--rounds", "2"],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "CPU:" in out and "4 cases of" in out and "2 caching threads" in out
    assert re.search(r"^MONAI NibabelReader: [0-2] of 2 fills", out, flags=re.MULTILINE), out
    assert "NiftiReader: 0 of 2 fills with a short image (0 of 8 images)" in out


def _brats_region_dice(pred: np.ndarray, ref: np.ndarray, labels: tuple[int, ...]) -> float:
    """Dice of one BraTS region counted with numpy; both empty scores 1, as the legacy protocol does."""
    p, r = np.isin(pred, labels), np.isin(ref, labels)
    if not r.any() and not p.any():
        return 1.0
    return 2 * (p & r).sum() / (p.sum() + r.sum())


@pytest.mark.parametrize(("key", "stages"), [
    pytest.param("learning_rate", {"training", "inference"}, id="top-level-to-both"),
    pytest.param("epochs", {"training"}, id="top-level-of-training-only"),
    pytest.param("random_transforms#0#rotate_prob", {"training", "inference"}, id="budget-overlay-in-both"),
    pytest.param("train#optimizer#momentum", {"training"}, id="train-section-to-training-only"),
    pytest.param("train::optimizer::momentum", {"training"}, id="monai-separator-to-training-only"),
])
def test_accuracy_benchmark_sends_each_set_id_to_the_stages_that_have_it(key: str, stages: set[str]) -> None:
    from bench.bench_accuracy import RECIPES, stage_ids

    budget = RECIPES["budget"]
    routed = stage_ids({key: "0.9"}, {"training": budget, "inference": budget})
    assert {stage for stage, ids in routed.items() if key in ids} == stages


@pytest.mark.parametrize("key", [
    pytest.param("train#nothing#x", id="no-such-section"),
    pytest.param("learning_rate#x", id="parent-is-a-number"),
    pytest.param("random_transforms#9", id="list-index-out-of-range"),
    pytest.param("learning_rat", id="a-misspelled-top-level-id"),
])
def test_accuracy_benchmark_refuses_a_set_id_no_stage_has_before_training(key: str) -> None:
    from bench.bench_accuracy import RECIPES, stage_ids

    budget = RECIPES["budget"]
    held = "this id" if key == "learning_rat" else "a section or list"
    with pytest.raises(SystemExit, match=rf"--set {key}: no stage's configuration has {held}"):
        stage_ids({key: "1"}, {"training": budget, "inference": budget})


@pytest.mark.parametrize(("sets", "message"), [
    pytest.param(["device", "cuda"], "--set device: this command sets device from --device", id="own_option"),
    pytest.param(["run_dir", "x"], "--set run_dir: this command sets run_dir from --out", id="own_folder"),
    pytest.param(["a#b", "1", "a::b", "2"], "--set a::b is given twice", id="one_id_twice")])
def test_accuracy_benchmark_refuses_a_set_the_verbs_refuse_before_training(sets: list[str], message: str,
                                                                           tmp_path: Path) -> None:
    from bench.bench_accuracy import main

    argv = ["--train-dir", str(tmp_path), "--test-dir", str(tmp_path), "--minutes", "1", "--out", str(tmp_path / "o")]
    for i in range(0, len(sets), 2):
        argv += ["--set", *sets[i:i + 2]]
    with pytest.raises(SystemExit, match=f"^bench_accuracy: {re.escape(message)}"):
        main(argv)
    assert not (tmp_path / "o" / "run").exists()


def test_accuracy_benchmark_trains_the_budget_recipe_and_reports_an_independent_dice(tmp_path: Path) -> None:
    import nibabel as nib

    from pipeline.data.synthetic import write_dataset

    train, test = tmp_path / "train", tmp_path / "test"
    write_dataset(train, cases=5, shape=(64, 64, 48), seed=3)  # about 32 x 32 x 24 voxels at the recipe's 2 mm
    write_dataset(test, cases=2, shape=(64, 64, 48), seed=11)
    out = tmp_path / "out"
    result = run_module([sys.executable, "bench/bench_accuracy.py", "--train-dir", str(train), "--test-dir",
                         str(test), "--minutes", "0.2", "--out", str(out), "--set", "roi_size", "[16,16,16]",
                         "--set", "unet_channels", "[8,16,32]", "--set", "num_workers", "0",
                         "--set", "train#optimizer#weight_decay", "0.0001"],  # a training-only id: not to inference
                        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"accuracy: mean Dice ([0-9.]+) \(ET ([0-9.]+), TC ([0-9.]+), WT ([0-9.]+)\) on 2 test "
                         r"cases, 0\.2 min of training on cpu \(5 training cases\)", last)
    assert match, last
    regions = {"ET": (4,), "TC": (1, 4), "WT": (1, 2, 4)}  # BraTS 2021 numbering
    expected = {r: [] for r in regions}
    for case_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        ref = np.asarray(nib.load(case_dir / f"{case_dir.name}_seg.nii.gz").dataobj)
        pred_img = nib.load(out / "seg" / f"{case_dir.name}.nii.gz")  # written on the input's grid
        assert pred_img.shape == ref.shape
        pred = np.asarray(pred_img.dataobj)
        for region, labels in regions.items():
            expected[region].append(_brats_region_dice(pred, ref, labels))
    printed = dict(zip(("mean", "ET", "TC", "WT"), map(float, match.groups()), strict=True))
    for region in regions:
        assert printed[region] == pytest.approx(np.mean(expected[region]), abs=6e-4), region
    assert printed["mean"] == pytest.approx(np.mean([np.mean(v) for v in expected.values()]), abs=6e-4)
    record = json.loads((out / "run" / "run.json").read_text())
    assert record["ids"]["spacing"] == [2, 2, 2] and record["ids"]["roi_size"] == [16, 16, 16]  # the budget recipe
    rows = (out / "time_to_dice.csv").read_text().splitlines()
    assert rows[0].startswith("minutes,epoch,val_mean_dice") and len(rows) >= 2
    assert (out / "time_to_dice.png").stat().st_size > 0
    assert "CPU:" in result.stdout and "torch" in result.stdout  # the machine
    accuracy = json.loads((out / "accuracy.json").read_text())  # the split, rebuilt from what it records
    assert accuracy["test"] == sorted(p.name for p in test.iterdir() if p.is_dir())
    assert sorted(accuracy["split"]["train"] + accuracy["split"]["validation"]) == sorted(
        p.name for p in train.iterdir() if p.is_dir())


def test_accuracy_benchmark_scores_brats_ped_cases_in_the_scheme_named_for_them(tmp_path: Path) -> None:
    """BraTS-PED cases do not tell their numbering (auto is refused): ``--set label_scheme ped`` reaches the three
    stages, the evaluation included; ``--all-cases`` trains on every case (fold all)."""
    from pipeline.data.synthetic import write_dataset
    from tests.helpers import as_brats_ped

    for name, cases, seed in (("train", 5, 3), ("test", 1, 11)):
        write_dataset(tmp_path / f"gli_{name}", cases=cases, shape=(48, 48, 32), seed=seed, layout="brats2023")
        as_brats_ped(tmp_path / f"gli_{name}", tmp_path / name, "ped")
    out = tmp_path / "out"
    result = run_module([sys.executable, "bench/bench_accuracy.py", "--train-dir", str(tmp_path / "train"),
                         "--test-dir", str(tmp_path / "test"), "--minutes", "0.1", "--out", str(out), "--all-cases",
                         "--set", "label_scheme", "ped", "--set", "roi_size", "[16,16,16]",
                         "--set", "unet_channels", "[8,16,32]", "--set", "num_workers", "0"],
                        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("accuracy: mean Dice ")
    assert json.loads((out / "eval" / "summary.json").read_text())["scheme"] == "ped"
    record = json.loads((out / "run" / "run.json").read_text())  # --all-cases: every case trained, none validated
    assert record["ids"]["fold"] == "all" and len(record["split"]["train"]) == 5


@pytest.mark.parametrize("layout", ["brats2021", "brats2023", "brats2024", "msd", "nnunet"])
def test_cache_benchmark_checks_every_synthetic_layout_with_the_scheme_it_was_written_in(
        layout: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.bench_cache import main
    from pipeline.data.synthetic import SUPPORTED_LAYOUTS

    assert set(SUPPORTED_LAYOUTS) == {"brats2021", "brats2023", "brats2024", "msd", "nnunet"}  # all parameterised
    scheme = ["--label-scheme", "brats2024"] if layout == "brats2024" else []  # RC needs the scheme named
    assert main(["--cases", "1", "--shape", "32", "32", "24", "--layout", layout, "--jobs", "1", *scheme]) == 0
    out = capsys.readouterr().out
    assert "for 1 case(s), 0 problem(s)" in out, out


def test_training_benchmark_offers_every_network_overlay_of_the_bundle() -> None:
    from bench.bench_training import argument_parser
    from pipeline.bundle import NETWORKS

    parser = argument_parser("test")
    for name in NETWORKS:
        assert parser.parse_args(["--network", name]).network == name


def test_real_cases_are_copied_byte_for_byte_and_split_as_recorded(tmp_path: Path) -> None:
    """bench/real_cases.py on a clone holding one source's cases (made here: no network): each case whole, its
    files' bytes those at HEAD; a case folder that exists is kept; the recorded splits are 24 + 6 of the 30, and B-F
    test each case once."""
    import subprocess

    from bench import real_cases

    folder, cases = real_cases.SOURCES["IAmSuyogJadhav/Brainy"]
    clone = tmp_path / "Brainy"
    for case in cases:
        for suffix in real_cases.SUFFIXES:
            path = clone / folder / case / f"{case}_{suffix}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x1f\x8b" + f"{case} {suffix}".encode())
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "cases"], check=True)
    out = tmp_path / "real"
    (out / cases[1]).mkdir(parents=True)  # already there: kept as it is
    assert real_cases.extract([clone], out) == [cases[0]]
    assert {p.name: p.read_bytes() for p in (out / cases[0]).iterdir()} == {
        f"{cases[0]}_{s}.nii.gz": b"\x1f\x8b" + f"{cases[0]} {s}".encode() for s in real_cases.SUFFIXES}
    assert not list((out / cases[1]).iterdir()) and not list(out.glob(".*"))
    with pytest.raises(SystemExit, match="holds none of"):
        real_cases.extract([tmp_path / "real"], tmp_path / "other")
    assert len(set(real_cases.CASES)) == 30
    for test in real_cases.SPLITS.values():
        assert len(set(test)) == 6 and set(test) <= set(real_cases.CASES)
    assert sorted(c for split in "BCDEF" for c in real_cases.SPLITS[split]) == sorted(real_cases.CASES)  # 5 folds


@pytest.mark.parametrize(("normalisation", "statistic"), [("zscore", "mean"), ("iqr", "median"),
                                                          ("percentile", "median")])
def test_oedema_contrast_prints_each_cases_oedema_against_its_normal_brain(tiny_dataset: Path, normalisation: str,
                                                                          statistic: str) -> None:
    import nibabel as nib

    result = run_module([sys.executable, "bench/oedema_contrast.py", str(tiny_dataset), "--normalisation",
                         normalisation, "--statistic", statistic], capture_output=True, text=True, cwd=REPO,
                        timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    folders = sorted(p for p in tiny_dataset.iterdir() if p.is_dir())
    assert sorted(rows) == [p.name for p in folders]
    case = folders[0]  # its FLAIR oedema level and WT size, counted here with numpy alone
    flair = np.asarray(nib.load(next(case.glob("*_flair.nii.gz"))).dataobj).astype(np.float64)
    seg = np.asarray(nib.load(next(case.glob("*_seg.nii.gz"))).dataobj)
    inside = flair[flair > 0]
    q = dict(zip((5, 25, 50, 75, 95), np.percentile(inside, [5, 25, 50, 75, 95]), strict=True))
    offset, scale = {"zscore": (inside.mean(), inside.std()), "iqr": (q[50], q[75] - q[25]),
                     "percentile": (q[5], q[95] - q[5])}[normalisation]
    level = (np.mean if statistic == "mean" else np.median)((flair[seg == 2] - offset) / scale)
    assert float(rows[case.name][0]) == pytest.approx(level, abs=0.006)  # (printed to 2 decimals)
    assert int(rows[case.name][8]) == int((seg > 0).sum())


@pytest.mark.parametrize("case", ["zero_minutes", "a_share_of_zero_per_fold", "an_earlier_benchmark_in_out",
                                  "folds_out_of_range", "a_users_time_to_dice_png_in_out",
                                  "a_users_fold_log_in_out", "out_in_the_dataset"])
def test_bench_accuracy_refuses_before_writing_anything(tiny_dataset: Path, tmp_path: Path, case: str) -> None:
    """--minutes 0 trained train.yaml's 300 epochs and printed '0.0 min of training'; a second run into one --out
    replaced the first's training log with the refusal before training refused the run; --out in the dataset got
    the training log before training refused it."""
    out = tmp_path / "out"
    if case == "out_in_the_dataset":
        tiny_dataset = Path(shutil.copytree(tiny_dataset, tmp_path / "data"))
        out = tiny_dataset
    args = {"zero_minutes": ["--minutes", "0"], "a_share_of_zero_per_fold": ["--minutes", "0.001", "--folds", "3"],
            "folds_out_of_range": ["--minutes", "1", "--folds", "0"]}.get(case, ["--minutes", "1"])
    if case == "an_earlier_benchmark_in_out":
        (out / "run").mkdir(parents=True)
        (out / "training.log").write_text("the first run's log")
    elif case.startswith("a_users"):  # a file the benchmark writes at its end: replaced after 45 minutes
        out.mkdir()
        (out / ("time_to_dice.png" if "png" in case else "training_fold_2.log")).write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run_module([sys.executable, "bench/bench_accuracy.py", "--train-dir", str(tiny_dataset), "--test-dir",
                         str(tiny_dataset), "--out", str(out), *args], capture_output=True, text=True, cwd=REPO,
                        timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("bench_accuracy: ")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    if case == "an_earlier_benchmark_in_out":
        assert (out / "training.log").read_text() == "the first run's log"


def test_thresholds_benchmark_scores_each_threshold_as_an_independent_dice(tiny_dataset: Path,
                                                                          tmp_path: Path) -> None:
    """Region probabilities of 0.9 inside each reference region and 0.45 on a one-voxel shell around its whole
    tumour: at 0.5 every region is exact (Dice 1), at 0.4 (and WT=0.4) the shell joins WT, whose Dice is counted here
    with numpy; ET=0.4 leaves WT as it is."""
    import nibabel as nib
    from scipy import ndimage

    from pipeline.core.provenance import Provenance
    from pipeline.data.labels import describe, labels_to_regions
    from pipeline.data.layouts import discover_cases
    from pipeline.inference.predict import write_probabilities_like

    desc = describe("brats")
    seg = tmp_path / "seg"
    expected = []
    for case in discover_cases(tiny_dataset):
        ref = np.asarray(nib.load(case.label).dataobj).astype(np.uint8)
        regions = labels_to_regions(ref, "brats").astype(np.float32) * 0.9  # (TC, WT, ET)
        wt = ref > 0
        shell = ndimage.binary_dilation(wt, structure=np.ones((3, 3, 3))) & ~wt
        regions[list(desc.regions).index("WT")][shell] = 0.45
        written = write_probabilities_like(regions, case.label, seg / "probabilities" / f"{case.case_id}.nii.gz",
                                           list(desc.regions))
        Provenance(seg).record(case.case_id, model="m", file=f"{case.case_id}.nii.gz", inputs=[],
                               probabilities=str(written), scheme="brats")  # as inference records them
        expected.append(2 * wt.sum() / (2 * wt.sum() + shell.sum()))
    result = run_module([sys.executable, "bench/bench_thresholds.py", str(seg), "--reference", str(tiny_dataset),
                         "--thresholds", "0.5", "0.4", "WT=0.4", "ET=0.4", "--min-tumour-fraction", "0"],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    header = re.search(r"^\| threshold .*\|$", result.stdout, flags=re.MULTILINE).group(0).split(" | ")
    rows = {k: [float(x) for x in v.split(" | ")]
            for k, v in re.findall(r"^\| ([A-Z]*=?[0-9.]+) \| (.+) \|$", result.stdout, flags=re.MULTILINE)}
    wt = header.index("Dice WT") - 1
    assert rows["0.5"] == pytest.approx([1.0] * 4) and rows["ET=0.4"] == pytest.approx([1.0] * 4)
    assert rows["0.4"][wt] == rows["WT=0.4"][wt] == pytest.approx(np.mean(expected), abs=1e-4)
    assert rows["0.4"][wt] < 1 and "CPU:" in result.stdout
    Provenance(seg).record("extra", model="m", file="extra.nii.gz", inputs=[], scheme="msd")  # two numberings
    refused = run_module([sys.executable, "bench/bench_thresholds.py", str(seg), "--reference", str(tiny_dataset)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert refused.returncode != 0 and "label scheme(s)" in refused.stderr.strip().splitlines()[-1]
