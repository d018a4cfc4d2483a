#!/usr/bin/env bash
# All a 260 s budget allows: the GPU kernel suite on the working tree (the session's host cuts).
source .device/setup.sh
L=$OUT/logs
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 120 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
echo "elapsed $SECONDS s"
