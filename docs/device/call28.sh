#!/usr/bin/env bash
# Session 13: the host cuts (LoRA scaling on the rank-r GEMMs, kept optimizer arguments, stacked q/k/v
# base GEMM under recomputation). GPU kernel suite + optimizer test on the working tree, then A/B
# HEAD (main) against the working tree at llama-1b offloaded eager (alternated), one profiled step of
# the working tree, and criterion 2 with stock (two rounds, alternating).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
for t in main work main work; do
  ab $t bench --shape llama-1b --checkpointing offloaded --baseline none --steps 14 2>&1 | tee -a $L/ab-1b-offloaded-$t.log | grep -E "^tuitune  |timed steps" | sed "s/^/$t: /" | cut -c1-90
done
echo "elapsed $SECONDS s"
ab work bench --shape llama-1b --checkpointing offloaded --baseline none --steps 8 --profile 1 2>&1 > $L/profile-1b-offloaded-work.log
grep -E "profile:|host, under|launches" $L/profile-1b-offloaded-work.log | head -5
echo "elapsed $SECONDS s"
[ $SECONDS -lt 400 ] && timeout 200 python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --repeat 2 \
  --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s13c.json 2>&1 | tee $L/bench1b-offloaded-c.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
save_triton_cache
