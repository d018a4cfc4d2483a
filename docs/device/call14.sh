#!/usr/bin/env bash
# criterion 9, part 1: the kernel suite on 8 pytest-xdist workers (each capped at 0.95/8 of the GPU),
# without the full-size GPU shapes (`gpu_large`: they skip under xdist; call15 runs them alone).
# TUITUNE_TEST_REPORT writes each test's outcome, duration and traceback as it finishes, so a run cut
# by the time limit still says what failed. Autotuning results are cached with the compiles.
source .device/setup.sh
L=$OUT/logs
export TRITON_CACHE_AUTOTUNING=1 TUITUNE_TEST_REPORT=$L/kernels-report.txt
timeout ${LIMIT:-540} python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels > $L/kernels-n8.log 2>&1
echo "pytest rc $?"; tail -3 $L/kernels-n8.log
grep -oE "^(PASSED|FAILED|SKIPPED) (setup|call|teardown)" $L/kernels-report.txt | sort | uniq -c
grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -30
grep -E "^[A-Z]+ call" $L/kernels-report.txt | sort -k3,3 -g -r | head -15
save_triton_cache
echo "elapsed $SECONDS s"
