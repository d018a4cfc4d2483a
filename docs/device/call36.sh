#!/usr/bin/env bash
# Criterion 5 with the kept block outputs (each layer's attention output and o_proj output offloaded
# beside its input; more pinned host memory, and the entry fetched ahead is three tensors): llama-8b
# QLoRA at batch 1 x 98,304 within 24 GiB, and the same with TUITUNE_KEEP_ATTENTION=0 (~250 s).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
free -g | head -2
for ka in 1 0; do
  TUITUNE_KEEP_ATTENTION=$ka timeout 200 python3 -P -m tuitune bench --shape llama-8b --checkpointing offloaded --batch 1 --seq 98304 \
    --steps 3 --warmup 1 --baseline none --memory-cap 24 --json $M/bench-llama-8b-qlora-offloaded-98304-cap24-ka$ka-$G-$D.json \
    2>&1 | tee $L/long-ka$ka.log | grep -v "^\s*$" | tail -5
  echo "elapsed $SECONDS s"
done
