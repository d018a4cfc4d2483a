#!/usr/bin/env bash
# criterion 9, part 2: the full-size GPU shapes (`-m gpu_large`) in one process, uncapped; then, if
# time is left, tests/convergence (llama-1b QLoRA against stock over 50 steps, both dequantization
# ways). Reports as in call14.
source .device/setup.sh
L=$OUT/logs
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/large-report.txt timeout ${LIMIT:-400} python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore -m gpu_large tests/kernels > $L/large.log 2>&1
echo "pytest rc $?"; tail -3 $L/large.log
grep -E "^(FAILED|ERROR)" $L/large-report.txt | head -30
[ $SECONDS -lt 480 ] && TUITUNE_TEST_REPORT=$L/convergence-report.txt timeout $((575 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/convergence > $L/convergence.log 2>&1
tail -3 $L/convergence.log
save_triton_cache
echo "elapsed $SECONDS s"
