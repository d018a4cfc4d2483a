#!/usr/bin/env bash
# Session 16, first call (~520 s): attention kernels at llama-8b's shape (which SDPA runs; the flash and
# cuDNN operators); the GPU kernel suite on the working tree (the multiply-add GLU kernel, kept q/k/v);
# criteria 1 and 2 with stock; GPU time of one 8b step on 67dee09 and on the tree (--profile 1);
# the tree with TUITUNE_KEEP_ATTENTION=1 and =cudnn. Trees: bash docs/device/prepare_ab.sh before=67dee09.
# call38.sh (criterion 5) right after on the warm machine.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
timeout 60 python3 docs/device/attention_kernels.py 2>&1 | tee $L/attention-kernels.txt | tail -24
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 110 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
grep -A12 "^E  " $L/kernels-n8.log | head -30
T=work; grep -qE "^(FAILED|ERROR).*(activation_checkpointing|test_lora)" $L/kernels-report.txt && T=before
echo "tree for the criteria: $T; elapsed $SECONDS s"
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
timeout 200 bash -c "$(declare -f run); run $T --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s16.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run $T --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s16.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
save_triton_cache
for t in work before; do
  [ $SECONDS -lt 430 ] && timeout 70 bash -c "$(declare -f run); run $t --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
    > $L/profile-$t.txt 2>&1; grep -E "^tuitune  |timed steps|^  [a-z/ ]+ +[0-9.]+ ms|compute idle" $L/profile-$t.txt | cut -c1-160
  echo "elapsed $SECONDS s"
done
[ $SECONDS -lt 490 ] && TUITUNE_KEEP_ATTENTION=1 timeout 60 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
  2>&1 | tee $L/ab-8b-offloaded-work-ka1.log | grep -E "^tuitune  |timed steps" | cut -c1-140
echo "elapsed $SECONDS s"
[ $SECONDS -lt 540 ] && TUITUNE_KEEP_ATTENTION=cudnn timeout 50 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
  2>&1 | tee $L/ab-8b-offloaded-work-kacudnn.log | grep -E "^tuitune  |timed steps|refused" | cut -c1-140
echo "elapsed $SECONDS s"
