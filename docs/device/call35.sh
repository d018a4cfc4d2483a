#!/usr/bin/env bash
# Session 14, the budget's last call (~180 s): call34 cut down. The checkpointing, lora and layer-graph
# GPU tests on the working tree; criterion 1 and criterion 2 with stock on the working tree (67dee09 if
# those tests failed); then 67dee09 (before) alone at llama-8b offloaded, the before of the A/B.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 60 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels/test_activation_checkpointing.py tests/kernels/test_lora.py tests/kernels/test_layer_graphs.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
grep -A12 "^E  " $L/kernels-n8.log | head -30
T=work; grep -qE "^(FAILED|ERROR)" $L/kernels-report.txt && T=before
echo "tree for the criteria: $T; elapsed $SECONDS s"
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
timeout 70 bash -c "$(declare -f run); run $T --shape llama-8b --checkpointing offloaded --steps 8 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s14b.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 50 bash -c "$(declare -f run); run $T --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s14b.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 45 bash -c "$(declare -f run); run before --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
  2>&1 | tee $L/ab-8b-offloaded-before.log | grep -E "^tuitune  |timed steps" | cut -c1-100
echo "elapsed $SECONDS s"
