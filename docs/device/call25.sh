#!/usr/bin/env bash
# The launch-bound step's host work cut (the dequantization's kept launch, adapter gradients written
# in float32 by their GEMMs): GPU kernel suite first, then criterion 2 (llama-1b offloaded, eager,
# with stock) and criterion 1 (llama-8b offloaded, with stock), then the convergence and large suites
# as time allows (criterion 9).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
timeout 150 python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 \
  --json $M/bench-llama-1b-qlora-offloaded-$G-$D-b.json 2>&1 | tee $L/bench1b-offloaded-b.log | grep -v "^\s*$" | tail -7
timeout 220 python3 -P -m tuitune bench --shape llama-8b --checkpointing offloaded --steps 8 \
  --json $M/bench-llama-8b-qlora-offloaded-$G-$D.json 2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
[ $SECONDS -lt 420 ] && TUITUNE_TEST_REPORT=$L/convergence-report.txt timeout $((500 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/convergence > $L/convergence.log 2>&1
tail -2 $L/convergence.log
echo "elapsed $SECONDS s"
