#!/usr/bin/env bash
# The last of a short budget: the GPU kernel suite on the working tree (the session's host cuts), then
# criterion 2 (llama-1b offloaded, eager) with stock, one round.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 110 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
echo "elapsed $SECONDS s"
timeout $((230 - SECONDS)) python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 \
  --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s13e.json 2>&1 | tee $L/bench1b-offloaded-e.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
