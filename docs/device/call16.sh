#!/usr/bin/env bash
# criteria 4 and 6. On an H200: llama-8b `auto` with stock and every policy (criterion 4 wants 2.8x
# there). On any card: llama-1b at `auto` with CUDA graphs, then `tuitune train` at the same shape with
# kernels on and off (criterion 6: the trainer >= 90% of the bench, kernels on >= 2x off; the default
# policy picks for the kernels-off run too), with one profiled step of each (where the 1b step goes).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
if [[ $G == h200 ]]; then
  timeout 300 python3 -P -m tuitune bench --shape llama-8b --checkpointing auto --steps 8 --json $M/bench-llama-8b-qlora-auto-h200-$D.json 2>&1 | tee $L/bench8b-auto-h200.log | grep -v "^\s*$" | tail -18
fi
timeout $((585 - SECONDS)) python3 -P -m tuitune bench --shape llama-1b --checkpointing auto --cuda-graphs on --steps 20 --trainer --profile 1 --json $M/bench-llama-1b-qlora-auto-graphs-trainer-profile-$G-$D.json 2>&1 | tee $L/bench1b-trainer.log | grep -v "^\s*$" | tail -60
echo "elapsed $SECONDS s"
