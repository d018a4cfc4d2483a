#!/usr/bin/env bash
# session 11's first call: on an H200, llama-8b `auto` with stock and every policy (criterion 4), then
# the kept-activation graphs' GPU tests; on an H100, call17 (those tests and the llama-1b A/B).
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
[[ $GPU == *H200* ]] || exec bash .device/call17.sh
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
timeout 330 python3 -P -m tuitune bench --shape llama-8b --checkpointing auto --steps 8 --json $M/bench-llama-8b-qlora-auto-h200-$D.json 2>&1 | tee $L/bench8b-auto-h200.log | grep -v "^\s*$" | tail -18
TUITUNE_TEST_REPORT=$L/kept-graphs-tests.txt timeout $((580 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore \
  tests/kernels/test_kept_layer_graphs.py tests/kernels/test_layer_graphs.py 2>&1 | tail -15
echo "elapsed $SECONDS s"
