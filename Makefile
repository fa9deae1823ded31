# Two commands on a fresh clone: `make demo` and `make test`. Everything installs into .venv.
# TORCH: the torch requirement, read at the first install only. This project's machines keep a CPU build of
# torch==2.13.0; from PyPI on Linux it is the CUDA build. Another: `make TORCH="torch>=2.8" venv` on a fresh
# clone (an existing .venv keeps its torch: rm -rf .venv first).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
TEST_STAMP := $(VENV)/.installed-test

DATASET ?= data/synthetic
RUN ?= runs/brats
ARGS ?=
# the label numbering of DATASET; empty: auto (the layout's). BraTS-PED cases need one: LABEL_SCHEME=ped or brats2023
LABEL_SCHEME ?=
CONFIGS := bundle/configs
BUNDLE_ARGS := --meta_file $(CONFIGS)/metadata.json --logging_file $(CONFIGS)/logging.conf
# variants of the stages: make train FAST=1 NETWORK=segresnet DEMO=1 (the order is pipeline/bundle.py's)
FAST ?=
NETWORK ?= unet
DEMO ?=
VARIANTS = $(if $(FAST),--fast) --network $(NETWORK) $(if $(DEMO),--demo)
config = "$(or $(shell $(PY) -m pipeline.bundle configs $(1) $(VARIANTS) $(2) --configs $(CONFIGS)),$(error no config list for NETWORK=$(NETWORK) (the line above says why)))"

.PHONY: venv demo test test-fast lint browser data datalist train infer evaluate cv cv-summary infer-ensemble metadata clean

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

# the developer's tools (pytest, hypothesis, ruff: a few MB) on top; `make test-fast` needs only these
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(DEV_STAMP)

# every extra (onnx/onnxruntime, mlflow, the official BraTS evaluation: about 500 MB) on top, for `make test`
$(TEST_STAMP): $(DEV_STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(TEST_STAMP)

# a headless browser for the report test (tests/e2e/test_report_browser.py): Debian's Chromium, installed once
# when missing (as root; otherwise the command to run is printed)
BROWSER_BIN := $(firstword $(shell command -v chromium chromium-browser google-chrome 2>/dev/null))
browser:
	@if [ -n "$(BROWSER_BIN)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Chromium (Debian's package) for the report test"; \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
	else echo "error: the report test needs Chromium: sudo apt-get install chromium" >&2; exit 2; fi

# one optional extra of pyproject.toml on top of venv, installed once: make extra-export | extra-official |
# extra-tracking | extra-metadata (the commands that need one name it; make test installs them all)
EXTRAS := export tracking official metadata
.PRECIOUS: $(VENV)/.installed-%
extra-%: $(VENV)/.installed-%
	@:
$(VENV)/.installed-%: $(STAMP)
	@case " $(EXTRAS) " in *" $* "*) ;; *) echo "error: no extra '$*'; the extras: $(EXTRAS)" >&2; exit 2;; esac
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$*]"
	touch $@

# synthetic data -> datalist -> train -> infer -> evaluate; the last line is `demo: mean Dice ... in N s`
demo:
	@t0=$$(date +%s); $(MAKE) --no-print-directory venv && $(PY) -m pipeline demo --started-at $$t0

# the tests in worker processes, one per core (at most 4): most of the e2e tests' time is a child process's start
PYTEST := $(PY) -m pytest -q --numprocesses auto --maxprocesses 4 --dist worksteal

test: lint $(TEST_STAMP) browser
	$(PYTEST)

# the fast loop: everything but tests/e2e (the runs through the MONAI CLI, the scripts and the browser); the tests
# of an extra that is not installed are skipped (make test installs them all)
test-fast: lint
	$(PYTEST) --ignore=tests/e2e

lint: $(DEV_STAMP)
	$(PY) -m ruff check pipeline tests bench

# ---- stages, one at a time (override DATASET=..., RUN=..., ARGS="--epochs 100 --fold 1") ------------------
data: venv
	$(PY) -m pipeline synth $(DATASET) --cases 16

datalist: venv
	$(PY) -m pipeline datalist $(DATASET) --out $(RUN)/datalist.json $(if $(LABEL_SCHEME),--label_scheme $(LABEL_SCHEME))

train: venv
	$(PY) -m monai.bundle run training --config_file $(call config,training) $(BUNDLE_ARGS) \
		--dataset_dir $(DATASET) --run_dir $(RUN) $(if $(LABEL_SCHEME),--label_scheme $(LABEL_SCHEME)) $(ARGS)

# inference and evaluation go to folders named after the dataset: $(RUN)/seg_<name>, $(RUN)/eval_<name>
infer: venv
	$(PY) -m pipeline infer -i $(DATASET) --run $(RUN) $(if $(LABEL_SCHEME),--set label_scheme $(LABEL_SCHEME)) $(ARGS)

evaluate: venv
	$(PY) -m pipeline evaluate $(RUN)/seg_$(notdir $(abspath $(DATASET))) $(DATASET) $(if $(LABEL_SCHEME),--scheme $(LABEL_SCHEME)) \
		$(ARGS)

# 5-fold cross-validation into $(RUN)/fold_<f>, then inference with the folds' mean probability
FOLDS ?= 0 1 2 3 4
cv: venv
	$(PY) -m pipeline datalist $(DATASET) --out $(RUN)/datalist.json --folds $(words $(FOLDS)) \
		$(if $(LABEL_SCHEME),--label_scheme $(LABEL_SCHEME))
	for f in $(FOLDS); do \
		$(PY) -m monai.bundle run training --config_file $(call config,training) $(BUNDLE_ARGS) --dataset_dir $(DATASET) \
			--datalist $(RUN)/datalist.json --fold $$f --run_dir $(RUN)/fold_$$f $(ARGS) || exit 1; \
	done
	$(PY) -m pipeline cv $(RUN) --dataset_dir $(DATASET)

# the out-of-fold table of a finished `make cv` again (each fold segments its validation cases): RUN/cv_summary.json
cv-summary: venv
	$(PY) -m pipeline cv $(RUN) $(if $(filter command line environment,$(origin DATASET)),--dataset_dir $(DATASET))

# the folds' own recipe (fold_<first>/run.json's config files, as `pipeline cv` reads them), not the variables'
infer-ensemble: venv
	$(PY) -m monai.bundle run inference --config_file "$(or $(shell $(PY) -m pipeline.bundle configs inference --ensemble --run $(RUN)/fold_$(firstword $(FOLDS))),$(error no config list for the folds of $(RUN) (the line above says why)))" $(BUNDLE_ARGS) --dataset_dir $(DATASET) --run_dir $(RUN) --output_dir $(RUN)/seg_ensemble \
		--ensemble_folds "[$(shell echo $(FOLDS) | tr ' ' ',')]" $(if $(LABEL_SCHEME),--label_scheme $(LABEL_SCHEME)) \
		$(shell $(PY) -m pipeline.bundle flags inference --run $(RUN)/fold_$(firstword $(FOLDS))) $(ARGS)

# the bundle's metadata.json against MONAI's schema (the copy in tests/resources: nothing is downloaded)
metadata: extra-metadata
	$(PY) -m monai.bundle verify_metadata --meta_file $(CONFIGS)/metadata.json \
		--filepath tests/resources/meta_schema_20240725.json

# what the demo and the tools wrote, never a run the user trained (runs/<dataset>, $(RUN)): those stay, named
clean:
	rm -rf .pytest_cache .ruff_cache
	@if [ -x $(PY) ]; then $(PY) -m pipeline clean; \
	elif [ -e runs/demo ] || [ -e data/synthetic ]; then echo "kept runs/demo and data/synthetic: no $(PY) to tell the demo's files from yours (make venv)"; fi
	@if [ -d runs ] && [ -n "$$(ls -A runs)" ]; then echo "kept your runs in runs/ ($$(ls runs | tr '\n' ' ')): delete them by name"; fi
