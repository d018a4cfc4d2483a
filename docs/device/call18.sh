#!/usr/bin/env bash
# the kept-activation graphs on llama-8b (after call17 showed them right on the GPU): `none` with the
# base weights kept dequantized (auto's pick on an 80 GB card), eager against graphed, one profile each
# (8b's step is GPU-bound; session 9's profile had 5.2% idle, 13.5 ms, which graphs could take).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
timeout 570 python3 -P -m tuitune bench --shape llama-8b --checkpointing none --dequantized --cuda-graphs both --baseline none \
  --steps 8 --profile 1 --json $M/bench-llama-8b-qlora-none-dequantized-graphs-profile-$G-$D.json 2>&1 \
  | tee $L/bench8b-none-graphs.log | grep -v "^\s*$" | tail -60
echo "elapsed $SECONDS s"
