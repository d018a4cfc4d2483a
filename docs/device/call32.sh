#!/usr/bin/env bash
# Session 14, first call (~480 s): the attention output kept with each offloaded layer input (the
# recompute replays it instead of the o_proj base GEMM) on top of the host cuts of 7151fe6.
# GPU kernel suite + optimizer test on the working tree; A/B HEAD (main) against the working tree at
# llama-8b offloaded; criterion 1 and criterion 2 with stock on the working tree (on main if the
# suite failed a checkpointing or lora_o test); convergence if time is left.
# Trees: bash docs/device/prepare_ab.sh
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
T=work; grep -qE "^(FAILED|ERROR).*(activation_checkpointing|test_lora)" $L/kernels-report.txt && T=main
echo "tree for the criteria: $T; elapsed $SECONDS s"
for t in main work; do
  timeout 120 env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench --shape llama-8b --checkpointing offloaded --baseline none --steps 8 \
    2>&1 | tee -a $L/ab-8b-offloaded-$t.log | grep -E "^tuitune  |timed steps" | sed "s/^/$t: /" | cut -c1-90
done
echo "elapsed $SECONDS s"
timeout 170 env PYTHONPATH=$PWD/.device/ab/$T:/tmp/site python3 -P -m tuitune bench --shape llama-8b --checkpointing offloaded --steps 8 \
  --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s14.json 2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 150 env PYTHONPATH=$PWD/.device/ab/$T:/tmp/site python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --repeat 2 \
  --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s14.json 2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
[ $SECONDS -lt 470 ] && TUITUNE_TEST_REPORT=$L/convergence-report.txt timeout $((570 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/convergence > $L/convergence.log 2>&1
tail -2 $L/convergence.log
echo "elapsed $SECONDS s"
save_triton_cache
