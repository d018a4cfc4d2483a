#!/usr/bin/env bash
# session 11, after the capture-stream fix: the kept-activation graphs' GPU tests, llama-1b `none`
# eager against graphed (and `standard` with graphs, auto's 1b pick today), then llama-8b `none` with
# the base weights dequantized, eager against graphed, as far as the call's time goes.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
TUITUNE_TEST_REPORT=$L/kept-graphs-tests.txt timeout 120 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore \
  tests/kernels/test_kept_layer_graphs.py tests/kernels/test_layer_graphs.py 2>&1 | tail -4
timeout 200 python3 -P -m tuitune bench --shape llama-1b --checkpointing none --cuda-graphs both --baseline none --steps 20 \
  --json $M/bench-llama-1b-qlora-none-graphs-$G-$D.json 2>&1 | tee $L/bench1b-none-graphs.log | grep -v "^\s*$" | tail -7
timeout 100 python3 -P -m tuitune bench --shape llama-1b --checkpointing standard --cuda-graphs on --baseline none --steps 20 \
  2>&1 | tee $L/bench1b-standard-graphs.log | grep -v "^\s*$" | tail -4
echo "elapsed $SECONDS s"
timeout $((588 - SECONDS)) python3 -P -m tuitune bench --shape llama-8b --checkpointing none --dequantized --cuda-graphs both --baseline none \
  --steps 6 --json $M/bench-llama-8b-qlora-none-dequantized-graphs-$G-$D.json 2>&1 | tee $L/bench8b-none-graphs.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
