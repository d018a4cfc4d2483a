#!/usr/bin/env bash
# session 11, after the kept-activation graphs joined auto's graphed order (none with graphs first):
# their GPU tests, then llama-1b `auto` through the bench and the trainer (kernels on and off:
# criterion 6), as far as the call's time goes.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
TUITUNE_TEST_REPORT=$L/kept-graphs-tests.txt timeout 90 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore \
  tests/kernels/test_kept_layer_graphs.py 2>&1 | tail -4
timeout $((585 - SECONDS)) python3 -P -m tuitune bench --shape llama-1b --checkpointing auto --cuda-graphs on --steps 20 --trainer \
  --json $M/bench-llama-1b-qlora-auto-graphs-trainer-$G-$D.json 2>&1 | tee $L/bench1b-trainer.log | grep -v "^\s*$" | tail -30
echo "elapsed $SECONDS s"
