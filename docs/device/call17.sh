#!/usr/bin/env bash
# the experiment of session 10: CUDA graphs of layers that keep their activations (no recomputation;
# tuitune/trainer/kept_layer_graphs.py). Its GPU tests (and the recompute graphs' beside them), then
# llama-1b `none` eager against graphed, and `standard` with graphs (auto's pick for 1b today) for
# reference. If `none` + graphs is the fastest 1b mode that fits, it goes first in the graphed order.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
TUITUNE_TEST_REPORT=$L/kept-graphs-tests.txt timeout 170 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore \
  tests/kernels/test_kept_layer_graphs.py tests/kernels/test_layer_graphs.py 2>&1 | tail -15
timeout 220 python3 -P -m tuitune bench --shape llama-1b --checkpointing none --cuda-graphs both --baseline none --steps 20 \
  --json $M/bench-llama-1b-qlora-none-graphs-$G-$D.json 2>&1 | tee $L/bench1b-none-graphs.log | grep -v "^\s*$" | tail -12
timeout $((585 - SECONDS)) python3 -P -m tuitune bench --shape llama-1b --checkpointing standard --cuda-graphs on --baseline none --steps 20 \
  2>&1 | tee $L/bench1b-standard-graphs.log | grep -v "^\s*$" | tail -8
echo "elapsed $SECONDS s"
