#!/usr/bin/env bash
# Session 14, second call (~350 s): call32 found the kept attention failing on the GPU (PyTorch's flash
# operator returns None sequence offsets for a dense batch; the offloader now passes None through).
# GPU kernel suite on the working tree; A/B 67dee09 (before) against the working tree at llama-8b
# offloaded; criterion 1 and criterion 2 with stock on the working tree (67dee09 if a checkpointing or
# lora test failed). Trees: bash docs/device/prepare_ab.sh before=67dee09 (work = the working tree).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 110 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
grep -B2 -A12 "^E  " $L/kernels-n8.log | head -40
T=work; grep -qE "^(FAILED|ERROR).*(activation_checkpointing|test_lora)" $L/kernels-report.txt && T=before
echo "tree for the criteria: $T; elapsed $SECONDS s"
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
for t in before work; do
  timeout 90 bash -c "$(declare -f run); run $t --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
    2>&1 | tee -a $L/ab-8b-offloaded-$t.log | grep -E "^tuitune  |timed steps|Error" | sed "s/^/$t: /" | cut -c1-100
done
echo "elapsed $SECONDS s"
timeout 130 bash -c "$(declare -f run); run $T --shape llama-8b --checkpointing offloaded --steps 8 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s14b.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 90 bash -c "$(declare -f run); run $T --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s14b.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
