#!/usr/bin/env bash
# call28 cut to what a short budget allows: the GPU kernel suite on the working tree (the session's
# host cuts), one A/B run each of e46209f (base) and the working tree at llama-1b offloaded eager, then
# criterion 2 with stock in two alternating rounds.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 120 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
for t in base work; do
  timeout 60 bash -c "$(declare -f ab); ab $t bench --shape llama-1b --checkpointing offloaded --baseline none --steps 14" 2>&1 | tee -a $L/ab-1b-offloaded-$t.log | grep -E "^tuitune  |timed steps" | sed "s/^/$t: /" | cut -c1-90
done
echo "elapsed $SECONDS s"
timeout $((330 - SECONDS)) python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --repeat 2 \
  --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s13d.json 2>&1 | tee $L/bench1b-offloaded-d.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
