"""The order in which the bundle's config files are merged: the one place that builds the list.

MONAI merges ``--config_file`` lists left to right, a later file replacing the ids it defines. The bundle's
``configs/`` folder shows the kinds of file:

- **common**: ``common.yaml``, everything shared (data ids, description, network, preprocessing, inferer).
- **stages**: ``train.yaml`` (run id ``training``), ``inference.yaml`` (``inference``), ``evaluate.yaml``
  (``evaluate``), beside it: each an overlay on common.yaml, never a config of its own.
- **networks** (``networks/``): ``segresnet.yaml``, ``dynunet.yaml`` (the UNet of common.yaml is the default).
- **variants** (``variants/``): ``fast.yaml`` (speed), ``ensemble.yaml`` (inference from several folds),
  ``demo.yaml`` (CPU-sized network and patch), ``multi_gpu_train.yaml`` (DDP under torchrun).

The order, and why::

    common -> stage -> fast -> network -> ensemble -> demo -> multi_gpu_train

fast before demo (the demo's CPU sizes win), the network before the ensemble (which wraps it) and the demo
(whose sizes apply to it), multi-GPU last (it replaces the seeding step of ``initialize`` and the samplers).
``fast`` does nothing for evaluation, ``ensemble`` only applies to inference and ``multi_gpu`` only to training;
asking for them elsewhere is refused. ``python -m pipeline.bundle configs training --fast --network segresnet``
prints the list (the Makefile uses it); :func:`command` builds the whole ``python -m monai.bundle run`` command
line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "bundle" / "configs"
#: Run id -> its stage overlay.
STAGES: dict[str, str] = {"training": "train.yaml", "inference": "inference.yaml", "evaluate": "evaluate.yaml"}
#: Network name -> its overlay (None: common.yaml's UNet).
NETWORKS: dict[str, str | None] = {"unet": None, "segresnet": "networks/segresnet.yaml",
                                   "dynunet": "networks/dynunet.yaml"}
#: Variant -> its overlay.
VARIANTS: dict[str, str] = {"fast": "variants/fast.yaml", "ensemble": "variants/ensemble.yaml",
                            "demo": "variants/demo.yaml", "multi_gpu": "variants/multi_gpu_train.yaml"}


def config_files(run_id: str, *, fast: bool = False, network: str = "unet", ensemble: bool = False,
                 demo: bool = False, multi_gpu: bool = False, configs: str | Path = CONFIGS) -> list[str]:
    """The ``--config_file`` list for ``python -m monai.bundle run <run_id>``, in the module docstring's order.

    Raises:
        UserError: an unknown run id or network, or a variant that does not apply to the stage.
    """
    if run_id not in STAGES:
        raise UserError(f"unknown run id {run_id!r}; expected one of {', '.join(STAGES)}")
    if network not in NETWORKS:
        raise UserError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")
    if ensemble and run_id != "inference":
        raise UserError("ensemble.yaml applies to inference only (it averages the folds' models)")
    if multi_gpu and run_id != "training":
        raise UserError("multi_gpu_train.yaml applies to training only; inference runs in one process")
    names = ["common.yaml", STAGES[run_id]]
    if fast and run_id != "evaluate":
        names.append(VARIANTS["fast"])
    if NETWORKS[network] and run_id != "evaluate":
        names.append(NETWORKS[network])
    if ensemble:
        names.append(VARIANTS["ensemble"])
    if demo and run_id != "evaluate":
        names.append(VARIANTS["demo"])
    if multi_gpu:
        names.append(VARIANTS["multi_gpu"])
    return [str(Path(configs) / n) for n in names]


def config_list(files: Sequence[str]) -> str:
    """The list as MONAI's CLI (fire) reads it: a Python list literal."""
    return repr([str(f) for f in files])


def command(run_id: str, overrides: dict | None = None, *, configs: str | Path = CONFIGS,
            **variants: object) -> list[str]:
    """``[python, -m, monai.bundle, run, run_id, --config_file, [...], --meta_file, ..., --id, value, ...]``."""
    files = config_files(run_id, configs=configs, **variants)  # type: ignore[arg-type]
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_list(files),
           "--meta_file", str(Path(configs) / "metadata.json"), "--logging_file", str(Path(configs) / "logging.conf")]
    for key, value in (overrides or {}).items():
        cmd += [f"--{key}", str(value)]
    return cmd


def common_ids(configs: str | Path = CONFIGS) -> set[str]:
    """The top-level ids of common.yaml (to tell a missing common.yaml from a genuinely undefined id)."""
    import yaml

    try:
        return set(yaml.safe_load((Path(configs) / "common.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError):
        return set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["configs"], help="configs: print the --config_file list")
    parser.add_argument("run_id", choices=list(STAGES))
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--network", default="unet", choices=list(NETWORKS))
    parser.add_argument("--ensemble", action="store_true")
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--multi-gpu", dest="multi_gpu", action="store_true")
    parser.add_argument("--configs", default=str(CONFIGS), help="the bundle's configs folder")
    args = parser.parse_args(argv)
    try:
        print(config_list(config_files(args.run_id, fast=args.fast, network=args.network, ensemble=args.ensemble,
                                       demo=args.demo, multi_gpu=args.multi_gpu, configs=args.configs)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
