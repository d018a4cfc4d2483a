#!/usr/bin/env bash
# Session 15 and 16 (16: the default keeps, KEEP_ATTENTION off), right after call37 or call39 on the warm machine (~130 s): criterion 5 with the kept block outputs
# (q/k/v, attention, o_proj beside each layer's input; host budget), llama-8b QLoRA at batch 1 x 98,304
# within 24 GiB.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
free -g | head -2
for ka in 0; do
  TUITUNE_KEEP_ATTENTION=$ka timeout 130 python3 -P -m tuitune bench --shape llama-8b --checkpointing offloaded --batch 1 --seq 98304 \
    --steps 3 --warmup 1 --baseline none --memory-cap 24 --json $M/bench-llama-8b-qlora-offloaded-98304-cap24-ka$ka-$G-$D-s16.json \
    2>&1 | tee $L/long-ka$ka.log | grep -v "^\s*$" | tail -5
  echo "elapsed $SECONDS s"
  [ $SECONDS -gt 440 ] && break
done
save_triton_cache
