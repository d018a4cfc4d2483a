#!/usr/bin/env bash
# criterion 2 again (llama-1b QLoRA, full recomputation: >= 2.1x stock at <= 0.20x its peak), with a fresh
# stock baseline in the same call: offloaded without graphs (the lightest), then with graphs (their pool
# counts in the peak: 1.94 GiB against 7.27 for stock in session 11, 0.27x).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
timeout 400 python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --cuda-graphs both --steps 20 \
  --json $M/bench-llama-1b-qlora-offloaded-$G-$D.json 2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -12
echo "elapsed $SECONDS s"
