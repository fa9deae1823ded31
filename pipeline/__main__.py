"""Command line: ``python -m pipeline {train,infer,evaluate,compare,check,demo,synth,datalist,plot,cv} ...``.

Each sub-command only parses its arguments and calls one function of the package (as nnU-Net's entry points do);
``train`` and ``infer`` run the bundle (``python -m monai.bundle run ...``, printed) through `pipeline.commands`.
MONAI's harmless notices are silenced (`pipeline.monai_workarounds.quiet`; ``--verbose`` keeps them). A refusal
ends with one ``error:`` line (exit 2); anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from pipeline import commands, demo
from pipeline.bundle import NETWORKS
from pipeline.core.config import as_fold, as_int
from pipeline.core.errors import UserError, user_message
from pipeline.core.figures import drawn_here
from pipeline.core.files import hold_folder, holding_scope
from pipeline.core.process import run_main
from pipeline.data.check import check_dataset, check_label_folder, is_label_folder
from pipeline.data.datalist import write_datalist
from pipeline.data.labels import BUILTIN, NNUNET_PREFIX, scheme_name
from pipeline.data.layouts import LAYOUTS, detect_layout, output_guard
from pipeline.data.synthetic import DEFAULT_SHAPE, SUPPORTED_LAYOUTS, write_dataset
from pipeline.evaluation.compare import compare
from pipeline.evaluation.crossval import CV_OPTIONS, cross_validation_summary
from pipeline.evaluation.evaluate import PROTOCOLS, evaluate, format_summary, plots, write_report
from pipeline.evaluation.official import CHALLENGES
from pipeline.evaluation.plots import plot_dice_boxplot, plot_evaluation
from pipeline.evaluation.reference import read_reference
from pipeline.monai_workarounds import quiet
from pipeline.training.monitoring import plot_training_curves

#: ``--scheme`` of evaluate and plot: a label scheme, or ``labels`` (one region per label value).
SCHEME_CHOICES = ("auto", *BUILTIN, "labels")


def _fold(value: str) -> int | str:
    """``--fold``: a fold number or ``all`` (`pipeline.core.config.as_fold`), refused by argparse in one line."""
    try:
        return as_fold(value)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--fold ")) from None


def _minutes(value: str) -> float:
    """``--minutes``: a budget > 0 (`pipeline.training.budget.as_minutes`; the bundle's 0, epochs instead of a
    clock, is ``train.yaml``'s default, without ``--minutes``), refused by argparse in one line."""
    from pipeline.training.budget import as_minutes

    try:
        minutes = as_minutes(value, "minutes")
    except UserError:
        minutes = 0.0
    if minutes <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0, got {value!r}")
    return minutes


def _synth(args: argparse.Namespace) -> int:
    folders = write_dataset(args.out_dir, cases=args.cases, shape=tuple(args.shape), seed=args.seed, layout=args.layout,
                            force=args.force, channels=args.channels, rc=args.rc)
    print(f"{args.out_dir}: {len(folders)} synthetic case(s) of shape {tuple(args.shape)} (written now, or already "
          "there from the same settings: see synthetic.json)")
    return 0


def _datalist(args: argparse.Namespace) -> int:
    if args.layout == "auto":
        print(f"dataset {Path(args.dataset_dir).resolve()}: {detect_layout(args.dataset_dir)}")
    dl = write_datalist(args.dataset_dir, args.out, folds=args.folds, seed=args.seed, layout=args.layout,
                        label_scheme=args.label_scheme, force=args.force)
    print(f"wrote {args.out}: {len(dl['training'])} labelled case(s) in {dl['folds']} folds, "
          f"{len(dl['test'])} unlabelled; layout {dl['layout']}, label scheme {dl['label_scheme']}, "
          f"channels {', '.join(dl['channels'])}")
    return 0


def _folds_count(value: str) -> int:
    """``datalist --folds``: as the bundle reads ``folds`` (`pipeline.core.config.as_int`, at least 2)."""
    try:
        return as_int(value, "folds", minimum=2)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def label_scheme_argument(value: str) -> str:
    """``--label_scheme``: ``auto``, a built-in scheme or ``nnunet:<dataset.json>`` (read, the path made absolute)."""
    try:
        return scheme_name(value, auto=True)
    except (UserError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def scheme_argument(value: str) -> str:
    """``--scheme`` of evaluate and plot: `SCHEME_CHOICES` or ``nnunet:<dataset.json>``."""
    return value if value in ("auto", "labels") else label_scheme_argument(value)


def _check_arguments(p: argparse.ArgumentParser) -> None:
    """The ``check`` sub-command's arguments."""
    p.add_argument("dataset_dir")
    p.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8), help="worker processes (default: cores)")
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS], help="default: detected")
    p.add_argument("--label_scheme", "--label-scheme", default="auto", type=label_scheme_argument,
                   metavar="{" + ",".join(["auto", *BUILTIN]) + f",{NNUNET_PREFIX}DATASET_JSON}}",
                   help="default: the layout's (brats2021 -> brats, brats2023 -> brats2023, msd -> msd, nnunet -> "
                   "nnunet:<its dataset.json>); brats2024 for BraTS 2024+ post-treatment glioma (4 = resection "
                   "cavity); BraTS-PED cases need one: brats2023 (PED 2023, GLI numbering) or ped (PED 2024+: 1 ET, "
                   "2 NET, 3 CC, 4 ED)")
    p.add_argument("--headers-only", action="store_true", help="read headers only (fast; no NaN, label or gzip check)")


def _run_check(args: argparse.Namespace) -> int:
    """Run the check of ``args`` and print the layout, the problems and the summary; 1 on errors, else 0. A flat
    folder of ``<case>.nii.gz`` label maps is checked as labels of ``--label_scheme``."""
    if args.layout == "auto" and is_label_folder(args.dataset_dir):
        report = check_label_folder(args.dataset_dir, args.label_scheme, data=not args.headers_only)
        print(f"labels folder {report.root}: {len(report.cases)} label file(s), scheme {report.label_scheme}")
        print(report.format())
        return 1 if report.errors else 0
    report = check_dataset(args.dataset_dir, layout=args.layout, label_scheme=args.label_scheme,
                           jobs=args.jobs, data=not args.headers_only)
    print(f"dataset {report.root}: {report.layout}")
    print(report.format())
    return 1 if report.errors else 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.protocol == "legacy" and args.jobs is not None:
        raise UserError("--jobs applies to --protocol official only (the legacy protocol runs in one process)")
    out = args.out or commands.default_evaluation(args.pred_dir)
    reference = read_reference(args.ref_dir)  # a dataset, a datalist or a folder of labels: read once
    summary = evaluate(args.protocol, args.pred_dir, reference, out, scheme=args.scheme,
                       challenge=args.challenge, jobs=args.jobs or 1, out_option="--out",
                       allow_mixed=args.allow_mixed, overwrite=args.overwrite)
    print(format_summary(summary))
    files = "metrics.csv and summary.json" if args.protocol == "legacy" else "official.csv and official_summary.json"
    print(f"wrote {files} to {out}")
    if args.protocol == "legacy" and not args.no_pictures and reference.layout is not None:  # images to draw on
        for path in plots(args.protocol, out, args.pred_dir, reference, scheme=args.scheme):
            print(f"  {path}")
    print(f"report: {write_report(out)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    out = args.out or f"comparison_{commands.dataset_name(args.ref_dir)}"
    result = compare(args.ref_dir, args.pred_dirs, out, names=args.names, scheme=args.scheme,
                     official=args.official, challenge=args.challenge, allow_mixed=args.allow_mixed,
                     overwrite=args.overwrite)
    columns, table = result["columns"], result["table"]
    show = ["algorithm", "rank", "mean rank", "mean Dice", *[c for c in columns if c.startswith("Dice ")]]
    index = [columns.index(c) for c in show]
    print("  ".join(f"{c:>12}" for c in show))
    for row in table:
        print("  ".join(f"{row[i]:>12.4f}" if isinstance(row[i], float) else f"{row[i]!s:>12}" for i in index))
    for t in result["tests"]:
        print(f"Wilcoxon {t['better']} vs {t['worse']}: n {t['n']}, mean difference {t['mean_difference']:+.4f}, "
              f"p {t['p_value']:.4g}")
    print(f"wrote comparison.csv, ranking.csv, wilcoxon.csv, comparison_boxplot.png to {out}")
    print(f"report: {result['files']['report']}")
    return 0


def _train(args: argparse.Namespace) -> int:
    return commands.train(args.dataset, args.run, minutes=args.minutes, network=args.network, plain=args.plain,
                          fold=args.fold, device=args.device, resume=args.resume, overwrite=args.overwrite,
                          sets=args.set, verbose=args.verbose)


def _infer(args: argparse.Namespace) -> int:
    return commands.infer(args.input, args.output, args.run, tta=args.tta, device=args.device,
                          overwrite=args.overwrite, sets=args.set, verbose=args.verbose)


def _plot(args: argparse.Namespace) -> int:
    if args.what in ("curves", "boxplot"):  # one table in, one PNG out: never over the table (or any file it links)
        table = Path(args.inputs[0]).expanduser()
        if not table.is_file():
            want = "a run's history.csv" if args.what == "curves" else "an evaluation's metrics.csv"
            raise UserError(f"plot {args.what} takes {want}; {table} is {'a folder' if table.is_dir() else 'missing'}"
                            f": pass {table / ('history.csv' if args.what == 'curves' else 'metrics.csv')}"
                            if table.is_dir() else f"plot {args.what} takes {want}; {table} does not exist")
        default = table.with_suffix(".png") if args.what == "curves" else table.parent / "dice_boxplot.png"
        chosen = Path(args.out).expanduser() if args.out else default
        own = chosen.resolve() == default.resolve()  # the table's own picture, drawn again
        # replaced unasked only when it is that picture as this package drew it (a user's file of the name is not)
        if chosen.is_file() and not (own and drawn_here(chosen)) and not args.overwrite:
            raise UserError(f"{chosen} exists and carries no mark of this package's pictures (yours, or drawn before "
                            f"pictures were marked): plot {args.what} never draws over a file it cannot tell its own; "
                            "pass another --out, or --overwrite to replace it")
        out = output_guard(protect=[table]).file(chosen, what="a picture", option="--out")  # any dataset's too
        if args.what == "boxplot" and own:  # into the evaluation's folder: one writer there
            hold_folder(table.parent, what="pictures")
        draw = plot_training_curves if args.what == "curves" else plot_dice_boxplot
        paths = [draw(table, out)]
    else:  # evaluation: EVAL_DIR PRED_DIR DATASET_DIR
        if len(args.inputs) != 3:
            raise UserError(f"plot evaluation needs EVAL_DIR PRED_DIR DATASET_DIR, got {len(args.inputs)} path(s)")
        paths = plot_evaluation(*args.inputs, scheme=args.scheme, out_dir=args.out, out_option="--out")
    print("\n".join(str(p) for p in paths))
    return 0


def _cv(args: argparse.Namespace) -> int:
    ids = commands.set_ids(args.set, CV_OPTIONS)
    cross_validation_summary(args.run_dir, args.dataset_dir, folds=args.folds, fast=args.fast,
                             extra=[word for key, value in ids.items() for word in (f"--{key}", value)],
                             overwrite=args.overwrite)
    return 0


def _demo(args: argparse.Namespace) -> int:
    demo.run_demo(data_dir=args.data_dir, run_dir=args.run_dir, cases=args.cases, shape=tuple(args.shape),
             seed=args.seed, epochs=args.epochs, started_at=args.started_at, fast=not args.plain)
    return 0


def _clean(args: argparse.Namespace) -> int:
    for line in demo.clean_demo(args.run_dir, args.data_dir):
        print(line)
    return 0


def _add_set(p: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
    """The verbs' ``--set ID VALUE [ID VALUE ...]``: repeated, it adds pairs (`pipeline.commands.set_ids`)."""
    p.add_argument("--set", nargs="+", action="extend", metavar="ID VALUE", help=help + " (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="BraTS segmentation on MONAI: train, "
                                     "infer, evaluate and compare on your data (python -m pipeline VERB --help)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset folder (any BraTS edition, the Decathlon, nnU-Net)")
    p.add_argument("dataset", help="the dataset folder")
    p.add_argument("--run", "--run_dir", dest="run", default=None, help="the run folder (default runs/<dataset name>)")
    p.add_argument("--minutes", type=_minutes, default=None, help="train for this many minutes with the budget recipe "
                   "(variants/budget.yaml); default: train.yaml's 300 epochs")
    p.add_argument("--network", default="unet", choices=list(NETWORKS))
    p.add_argument("--plain", action="store_true", help="without fast.yaml (the plain configuration)")
    p.add_argument("--fold", default="0", type=_fold, help="the fold that validates (default 0 of 5); all: every "
                   "case trains and model.pt is the last model (nnU-Net's fold all)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: a GPU if there is one)")
    p.add_argument("--resume", action="store_true", help="continue a stopped run")
    p.add_argument("--overwrite", action="store_true", help="delete the run's checkpoints and start afresh")
    _add_set(p, "more bundle ids: --set learning_rate 0.002")
    p.add_argument("--verbose", action="store_true", help="show MONAI's notices too")
    p.set_defaults(func=_train)

    p = sub.add_parser("infer", help="segment a folder of cases with a trained run")
    p.add_argument("-i", "--input", required=True, help="a dataset folder, one case's folder, or a datalist")
    p.add_argument("-o", "--output", "--output_dir", dest="output", default=None,
                   help="the segmentation folder (default <run>/seg_<input name>)")
    p.add_argument("--run", "--run_dir", dest="run", required=True,
                   help="the trained run (python -m pipeline train's --run)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="mirroring test-time augmentation (default: the run's recipe)")
    p.add_argument("--device", default=None)
    p.add_argument("--overwrite", action="store_true", help="segment again cases already segmented in --output")
    _add_set(p, "more bundle ids: --set min_et_voxels 50")
    p.add_argument("--verbose", action="store_true", help="show MONAI's notices too")
    p.set_defaults(func=_infer)

    p = sub.add_parser("evaluate", help="score <case>.nii.gz predictions against reference labels; report.html")
    p.add_argument("pred_dir")
    p.add_argument("ref_dir", help="a dataset folder or a folder of <case>.nii.gz labels")
    p.add_argument("--out", "-o", default=None, help="folder for metrics.csv, summary.json, the pictures and "
                   "report.html (default beside pred_dir: seg_<data> -> eval_<data>, else <pred_dir>_eval)")
    p.add_argument("--scheme", default="auto", type=scheme_argument,
                   metavar="{" + ",".join(SCHEME_CHOICES) + f",{NNUNET_PREFIX}DATASET_JSON}}",
                   help="label numbering; auto: the reference dataset's layout's (a folder of labels and BraTS-PED "
                   "cases need a scheme: brats2023 or ped); brats2024: 4 = resection cavity; ped: BraTS-PED 2024+, "
                   "1 ET, 2 NET, 3 CC, 4 ED (both protocols)")
    p.add_argument("--protocol", default="legacy", choices=PROTOCOLS,
                   help="legacy: our ET/TC/WT Dice, sensitivity, specificity, HD95; official: the BraTS package "
                   "brats-evaluation's lesion-wise metrics (make extra-official); see docs/metrics.md")
    p.add_argument("--challenge", default=None, type=str.lower,
                   choices=list(CHALLENGES),
                   help="--protocol official: the package's config to score with; default: the one the case ids name "
                   "(BraTS-MET-...: mets, BraTS-PED-...: ped), else gli (adult glioma)")
    p.add_argument("--jobs", type=int, default=None, help="--protocol official: worker processes (default 1)")
    p.add_argument("--allow-mixed", "--allow_mixed", dest="allow_mixed", action="store_true",
                   help="score predictions of several models, or of inputs changed since, together (refused without)")
    p.add_argument("--overwrite", action="store_true", help="replace an evaluation of other predictions or another "
                   "reference in --out (refused without)")
    p.add_argument("--no-pictures", action="store_true", help="no box plot and overlays (legacy protocol)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("compare", help="several algorithms on one reference: table, BraTS ranking, Wilcoxon tests, "
                       "box plot, report.html")
    p.add_argument("ref_dir", help="a dataset folder or a folder of <case>.nii.gz labels")
    p.add_argument("pred_dirs", nargs="+", help="two or more prediction folders, one per algorithm")
    p.add_argument("--out", "-o", default=None, help="default comparison_<reference name>")
    p.add_argument("--names", nargs="+", action="extend", default=None,
                   help="one name per prediction folder (default: the folders')")
    p.add_argument("--scheme", default="auto", type=scheme_argument,
                   metavar="{" + ",".join(SCHEME_CHOICES) + f",{NNUNET_PREFIX}DATASET_JSON}}",
                   help="label numbering; auto: the reference dataset's layout's (a folder of labels needs one)")
    p.add_argument("--official", action="store_true", help="also the BraTS package's lesion-wise Dice (make "
                   "extra-official)")
    p.add_argument("--challenge", default=None, type=str.lower, choices=list(CHALLENGES))
    p.add_argument("--allow-mixed", "--allow_mixed", dest="allow_mixed", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace earlier evaluations in --out")
    p.set_defaults(func=_compare)

    p = sub.add_parser("check", help="check every case of a dataset folder, or a folder of <case>.nii.gz labels "
                       "with --label_scheme: one line per problem, exit 1 on errors")
    _check_arguments(p)
    p.set_defaults(func=_run_check)

    p = sub.add_parser("demo", help="synthetic data -> train -> infer -> evaluate, on the CPU in minutes")
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--cases", type=int, default=16)
    p.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override demo.yaml's epochs")
    p.add_argument("--plain", action="store_true", help="train and infer without fast.yaml (the plain configuration)")
    p.add_argument("--started-at", type=float, default=None,
                   help="epoch seconds when the demo began (the Makefile passes it so that set-up time counts)")
    p.set_defaults(func=_demo)
    p = sub.add_parser("clean", help="delete what the demo wrote (in its run folder, the synthetic cases synth wrote); "
                       "never a run you trained or a file the demo or synth did not write")
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--run-dir", default="runs/demo")
    p.set_defaults(func=_clean)
    p = sub.add_parser("synth", help="write a synthetic BraTS-like dataset (BraTS 2021, BraTS 2023, BraTS 2024 "
                       "post-treatment, MSD or nnU-Net raw layout)")
    p.add_argument("out_dir")
    p.add_argument("--cases", type=int, default=16)
    p.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"),
                   help="volume size; 240 240 155 gives BraTS size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="brats2021", choices=SUPPORTED_LAYOUTS,
                   help="brats2024: BraTS 2023 names with 4 = resection cavity; nnunet: nnU-Net v2 raw format "
                   "(dataset.json, imagesTr/<case>_0000.nii.gz, labelsTr/)")
    p.add_argument("--channels", nargs="+", action="extend", default=None, metavar="NAME",
                   help="--layout nnunet: the contrasts to write, in order (T1 T1ce T2 FLAIR; e.g. T1ce alone)")
    p.add_argument("--rc", action="store_true", help="--layout nnunet: add a resection cavity (label 4) beside the "
                   "tumour in most cases")
    p.add_argument("--force", action="store_true", help="write into a folder that already holds NIfTI files, "
                   "overwriting cases of the same name (synthetic names are BraTS's own)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("datalist", help="discover the cases of a dataset folder and write a datalist with folds")
    p.add_argument("dataset_dir")
    p.add_argument("--out", required=True, help="datalist JSON to write")
    p.add_argument("--folds", type=_folds_count, default=5, help="folds of the split (at least 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS])
    p.add_argument("--label_scheme", "--label-scheme", default="auto", type=label_scheme_argument,
                   metavar="{" + ",".join(["auto", *BUILTIN]) + f",{NNUNET_PREFIX}DATASET_JSON}}",
                   help="recorded in the datalist; auto: the layout's (nnunet: nnunet:<its dataset.json>; BraTS-PED "
                   "cases need brats2023 or ped)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file with other content")
    p.set_defaults(func=_datalist)

    p = sub.add_parser("plot", help="draw training curves, a Dice box plot, or an evaluation's pictures")
    p.add_argument("what", choices=["curves", "boxplot", "evaluation"])
    p.add_argument("inputs", nargs="+", help="curves: RUN_DIR/history.csv; boxplot: EVAL_DIR/metrics.csv; "
                   "evaluation: EVAL_DIR PRED_DIR DATASET_DIR (box plot + overlays of the worst/median/best cases)")
    p.add_argument("--out", default=None, help="PNG to write (curves, boxplot), default beside the input; "
                   "evaluation: folder for the pictures, default EVAL_DIR")
    p.add_argument("--scheme", default="auto", type=scheme_argument,
                   metavar="{" + ",".join(SCHEME_CHOICES) + f",{NNUNET_PREFIX}DATASET_JSON}}",
                   help="label numbering of the overlays (evaluation); auto: the dataset's layout's")
    p.add_argument("--overwrite", action="store_true", help="curves, boxplot: replace an existing --out picture")
    p.set_defaults(func=_plot)

    p = sub.add_parser("cv", help="cross-validation summary: each fold segments its validation cases, all are "
                       "evaluated together; RUN_DIR/cv_summary.json")
    p.add_argument("run_dir", help="the make cv run: datalist.json and fold_<f>/")
    p.add_argument("--dataset_dir", default=None, help="the data root of a model-zoo datalist's relative paths; the "
                   "references are RUN_DIR/datalist.json's labels (a datalist whose files lie outside it is refused)")
    p.add_argument("--folds", type=int, nargs="+", action="extend", default=None, help="default: every trained fold")
    p.add_argument("--fast", action="store_true", help="each fold infers with the recipe its run.json names "
                   "(network, fast.yaml, budget); --fast: fast.yaml for a fold whose run.json names none")
    p.add_argument("--overwrite", action="store_true", help="replace files of the names the table writes "
                   "(RUN_DIR/cv/eval/, cv_summary.json) that no cross-validation table wrote")
    _add_set(p, "more bundle ids for inference: --set device cpu")
    p.set_defaults(func=_cv)

    return parser


#: The bundle's on/off ids, which its refusals spell ``--resume true``: here they are flags (``--resume``).
SWITCHES = ("--resume", "--overwrite", "--allow_mixed", "--allow-mixed")  # evaluation refusals say --allow_mixed true


def bundle_spelling(argv: Sequence[str]) -> list[str]:
    """``argv`` with the bundle's spelling of a switch read as this CLI's: ``--resume true`` -> ``--resume``,
    ``--overwrite false`` -> nothing. With the bundle's ``--run_dir`` and ``--output_dir`` (aliases of ``--run``
    and ``--output``), a hint in a refusal works through both CLIs, whichever wrote it."""
    out: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        flag, _, value = word.partition("=")
        if flag in SWITCHES and not value and words and words[0].lower() in ("true", "false"):
            value = words.pop(0)
        if flag in SWITCHES and value.lower() in ("true", "false"):  # another value: argparse refuses it
            out += [flag] if value.lower() == "true" else []
        else:
            out.append(word)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(bundle_spelling(sys.argv[1:] if argv is None else argv))
    quiet(verbose=getattr(args, "verbose", False))
    try:
        with holding_scope():  # the command's output folders are free again when it ends (in a notebook, a test)
            return args.func(args)
    except Exception as e:  # a refusal, a full or read-only disk: one line; anything else is a bug: its traceback
        message = user_message(e)
        if message is None:
            raise
        if os.environ.get("PIPELINE_TRACEBACK"):
            traceback.print_exc()
        sys.stderr.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2


def cli() -> int:
    """The console entry (``python -m pipeline``, ``brats-pipeline``): `main`, with SIGTERM ending it as an exit
    that releases its folders and stops the bundle process it runs, and Ctrl-C as one line
    (`pipeline.core.process.run_main`)."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
