#!/usr/bin/env bash
# Every GPU figure of bench/RESULTS.md in ONE call of the device tool (at most 8 minutes), each step with its own
# time limit (together 480 s), in the order of what matters most; logs under $OUT, a digest in $OUT/summary.log.
#
#   on the lent machine (../shared/gpu/README.md; carry .whl):   bash bench/gpu.sh
#   rehearsal on the CPU, tiny sizes (3 minutes on 2 cores): SIZE=tiny DEVICE=cpu OUT=/tmp/gpu bash bench/gpu.sh
#
# Steps: the machine; synthetic data (10 BraTS-size cases, about 4 s each on one core of the 2-core VM); training
# throughput plain vs ours (UNet, and ours with CUDA graphs); the DynUNet (nnU-Net-class); inference end to end
# with and without the background writers; the demo; the budget recipe's time-to-Dice on synthetic BraTS-size data; the CUDA-only tests. A step that runs out of time is killed
# and the next one starts; its log keeps what it printed.
set -u
OUT=${OUT:-out/gpu}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-full}
PY=${PY:-python3}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.log"
: > "$SUMMARY"
T0=$(date +%s)

if [ -d .whl ] && ! $PY -c "import monai" 2>/dev/null; then  # the lent machine: MONAI & co. as wheels
    $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
export PYTHONUNBUFFERED=1

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log, digest the figures
    local name=$1 limit=$2
    shift 2
    local start=$(date +%s)
    echo "=== $name (limit ${limit} s, at $((start - T0)) s)" | tee -a "$SUMMARY"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "    exit $rc after $(( $(date +%s) - start )) s$( [ $rc -ge 124 ] && echo ' (time limit)')" | tee -a "$SUMMARY"
    grep -E "patches/s|ratio|GFLOP|torch.compile|per volume|end to end|background writers|target|demo:|accuracy:|passed|failed|Error|error" \
        "$OUT/$name.log" | tail -n 25 | sed 's/^/    /' >> "$SUMMARY"
}

if [ "$SIZE" = tiny ]; then
    PRESET=(--tiny); TRAIN_STEPS=(--steps 3 --warmup 1); INFER_CASES=(--cases 2)
    SYNTH_SHAPE=(48 48 32); SYNTH_CASES=6; TEST_CASES=2; MINUTES=0.5
    DEMO_ARGS=(--cases 8 --shape 48 48 32 --epochs 2)
    # the DynUNet's five down-samplings need a patch divisible by 32 with more than one voxel at the bottom
    DYN_ARGS=(--preset demo --set "roi_size=[64,64,64]" --steps 1 --warmup 1)
else
    PRESET=(--preset full); TRAIN_STEPS=(--steps 40 --warmup 10); INFER_CASES=(--cases 6)
    SYNTH_SHAPE=(240 240 155); SYNTH_CASES=10; TEST_CASES=4; MINUTES=1
    DEMO_ARGS=()
    DYN_ARGS=("${PRESET[@]}" "${TRAIN_STEPS[@]}")
fi

step machine 15 bash -c "nvidia-smi || true; $PY -c 'import torch, monai; print(torch.__version__, monai.__version__, torch.cuda.is_available())'; nproc; free -g"
step data 60 $PY bench/bench_training.py "${PRESET[@]}" --device "$DEVICE" --data-only --configs ours --steps 2 --warmup 1
step train_unet 100 $PY bench/bench_training.py "${PRESET[@]}" --device "$DEVICE" "${TRAIN_STEPS[@]}" \
    --variant "graphs:compile_mode=reduce-overhead" --variant "eager:compile=false"
step infer 50 $PY bench/bench_inference.py "${PRESET[@]}" --device "$DEVICE" "${INFER_CASES[@]}"
step train_dynunet 60 $PY bench/bench_training.py "${DYN_ARGS[@]}" --device "$DEVICE" --network dynunet --configs ours
step demo 45 $PY -m pipeline demo --data-dir "$OUT/demo_data" --run-dir "$OUT/demo_run" "${DEMO_ARGS[@]}"
step accuracy_data 25 bash -c "$PY -m pipeline synth $OUT/acc/train --cases $SYNTH_CASES --shape ${SYNTH_SHAPE[*]} --seed 11 \
    && $PY -m pipeline synth $OUT/acc/test --cases $TEST_CASES --shape ${SYNTH_SHAPE[*]} --seed 12"
step accuracy 90 $PY bench/bench_accuracy.py --train-dir "$OUT/acc/train" --test-dir "$OUT/acc/test" \
    --minutes "$MINUTES" --device "$DEVICE" --out "$OUT/acc/run"
step cuda_tests 35 $PY -m pytest -q -p no:cacheprovider tests/model/test_compiled.py tests/training/test_fast.py \
    tests/model/test_precision.py -k "cuda or compile"
# keep the device's return small: the figures and curves, not the runs
rm -rf "$OUT/demo_data" "$OUT/acc/train" "$OUT/acc/test" "$OUT/demo_run/models" "$OUT/acc/run/run/models" \
    "$OUT/acc/run/seg"
echo "=== done in $(( $(date +%s) - T0 )) s" | tee -a "$SUMMARY"
