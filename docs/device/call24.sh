#!/usr/bin/env bash
# criterion 2 on a slow host: where the eager llama-1b offloaded step's host time goes (it is
# launch-bound: 102.9 ms eager against 70.1 ms graphed on the H200 of 2026-12-06), one profiled step.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
timeout 400 python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --baseline none --steps 12 --profile 1 \
  --json $M/bench-llama-1b-qlora-offloaded-profile-$G-$D.json 2>&1 | tee $L/bench1b-offloaded-profile.log | grep -v "^\s*$" | tail -80
echo "elapsed $SECONDS s"
