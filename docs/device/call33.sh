#!/usr/bin/env bash
# Session 14, cut-down call32 (~350 s): no TUITUNE_KEEP_ATTENTION=0 run, criterion 2 once, no convergence. What it measures: offloaded checkpointing keeps each layer's attention output (with
# its log-sum-exp) and o_proj output beside its input, so the recompute runs neither the attention
# forward nor the o_proj base GEMM; on top of the host cuts of 7151fe6.
# GPU kernel suite + optimizer test on the working tree; A/B at llama-8b offloaded: 67dee09 (main),
# the working tree with TUITUNE_KEEP_ATTENTION=0 (o_proj kept only) and =1; criterion 1 and 2 with
# stock on the working tree (on main if a checkpointing or lora test failed); convergence if time.
# Trees: .device/ab/main = 67dee09, .device/ab/work = the working tree (see prepare_ab.sh).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -20
T=work; grep -qE "^(FAILED|ERROR).*(activation_checkpointing|test_lora)" $L/kernels-report.txt && T=main
echo "tree for the criteria: $T; elapsed $SECONDS s"
run() { local t=$1 ka=$2; shift 2; env TUITUNE_KEEP_ATTENTION=$ka PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
for v in main:1 work:1; do
  timeout 100 bash -c "$(declare -f run); run ${v%:*} ${v#*:} --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
    2>&1 | tee -a $L/ab-8b-offloaded-${v/:/-ka}.log | grep -E "^tuitune  |timed steps" | sed "s/^/$v: /" | cut -c1-100
done
echo "elapsed $SECONDS s"
timeout 150 bash -c "$(declare -f run); run $T 1 --shape llama-8b --checkpointing offloaded --steps 8 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s14.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 130 bash -c "$(declare -f run); run $T 1 --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s14.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"


echo "elapsed $SECONDS s"
save_triton_cache
