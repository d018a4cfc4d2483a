#!/usr/bin/env bash
# The host cuts of 7151fe6/bde2e0b (LoRA scaling on the rank-r GEMMs, kept optimizer arguments, stacked
# q/k/v base GEMM under recomputation), first call of the next session (~520 s):
# GPU kernel suite + optimizer test on the working tree; A/B e46209f (base, before) against the working
# tree at llama-1b offloaded eager, alternated twice; criterion 2 with stock (two alternating rounds);
# criterion 1; convergence if time is left. Trees: bash docs/device/prepare_ab.sh base=e46209f
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
for t in base work base work; do
  ab $t bench --shape llama-1b --checkpointing offloaded --baseline none --steps 14 2>&1 | tee -a $L/ab-1b-offloaded-$t.log | grep -E "^tuitune  |timed steps" | sed "s/^/$t: /" | cut -c1-90
done
echo "elapsed $SECONDS s"
timeout 200 python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --repeat 2 \
  --json $M/bench-llama-1b-qlora-offloaded-$G-$D.json 2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 150 python3 -P -m tuitune bench --shape llama-8b --checkpointing offloaded --steps 8 \
  --json $M/bench-llama-8b-qlora-offloaded-$G-$D.json 2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
[ $SECONDS -lt 480 ] && TUITUNE_TEST_REPORT=$L/convergence-report.txt timeout $((570 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/convergence > $L/convergence.log 2>&1
tail -2 $L/convergence.log
echo "elapsed $SECONDS s"
save_triton_cache
