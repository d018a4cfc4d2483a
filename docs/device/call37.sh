#!/usr/bin/env bash
# Session 15, first call (~540 s): NF4 dequantization and pinned copy bandwidth; the GPU kernel suite on
# the working tree (kept attention, kept q/k/v, the GLU kernel adding the adapters); criteria 1 and 2 with
# stock; at 8b offloaded 67dee09, HEAD without the GLU kernel, and the tree with TUITUNE_KEEP_QKV=0
# (the A/B); call38 right after: criterion 5. Trees: prepare_ab.sh before=67dee09 (main = HEAD).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
timeout 40 python3 docs/device/dequant_speed.py 2>&1 | tail -5
python3 - <<'PY'
import torch, time
x = torch.empty(100 << 20, dtype=torch.uint8, device="cuda"); h = torch.empty(x.shape, dtype=torch.uint8, pin_memory=True)
for name, dst, src in (("D2H", h, x), ("H2D", x, h)):
    dst.copy_(src); torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(20): dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize(); print(f"pinned {name}: {20 * 100 / 1024 / (time.perf_counter() - t):.1f} GiB/s")
PY
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 110 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
grep -A12 "^E  " $L/kernels-n8.log | head -30
# work = the tree with the GLU kernel that adds the adapters (lora_glu); main = HEAD without it (kept q/k/v)
T=work; grep -qE "^(FAILED|ERROR).*(test_lora|lora_glu)" $L/kernels-report.txt && T=main
grep -qE "^(FAILED|ERROR).*activation_checkpointing" $L/kernels-report.txt && T=before
echo "tree for the criteria: $T; elapsed $SECONDS s"
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
timeout 120 bash -c "$(declare -f run); run $T --shape llama-8b --checkpointing offloaded --steps 8 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s15.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run $T --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s15.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7
echo "elapsed $SECONDS s"
[ $T = work ] && timeout 60 bash -c "$(declare -f run); run main --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
  2>&1 | tee $L/ab-8b-offloaded-main.log | grep -E "^tuitune  |timed steps" | cut -c1-100
echo "elapsed $SECONDS s"
[ $SECONDS -lt 420 ] && timeout 60 bash -c "$(declare -f run); run before --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
  2>&1 | tee $L/ab-8b-offloaded-before.log | grep -E "^tuitune  |timed steps" | cut -c1-100
echo "elapsed $SECONDS s"
[ $SECONDS -lt 480 ] && TUITUNE_KEEP_QKV=0 timeout 60 bash -c "$(declare -f run); run $T --shape llama-8b --checkpointing offloaded --baseline none --steps 8" \
  2>&1 | tee $L/ab-8b-offloaded-$T-keepqkv0.log | grep -E "^tuitune  |timed steps" | cut -c1-100
echo "elapsed $SECONDS s"
save_triton_cache
