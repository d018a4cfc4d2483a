#!/usr/bin/env bash
# Session 19 (~560 s; END bounds it): base weights dequantized merged with their adapters (nf4_merge).
# First the merge's GPU tests (new kernel; test_lora exercises every merged path), then 8b offloaded,
# 10 steps each, unmerged (TUITUNE_MERGE_ADAPTERS=0) and merged; criterion 1 (--repeat 2) and
# criterion 2 with stock, each with the faster setting; tests/convergence (the loss curves, criterion 9);
# then, with time left, the embedding gather on the GPU at 8b and the kernel suite to END. Trees: bash docs/device/prepare_ab.sh (work = the tree).
source .device/setup.sh; source .device/session17.sh
END=${END:-585}
# logs.tgz after every step: a call cut by the device budget still brings back what it measured
elapsed() { echo "elapsed $SECONDS s"; tar -czf $OUT/logs.tgz -C $OUT logs; }
timeout 120 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore tests/kernels/test_nf4_merge.py \
  tests/kernels/test_lora.py > $L/merge-tests.log 2>&1; echo "merge tests rc $?"; tail -3 $L/merge-tests.log
grep -A12 "^E  " $L/merge-tests.log | head -24; elapsed
pick_merging
criterion1 work; elapsed
criterion2 work; elapsed
[ $SECONDS -lt $((END - 40)) ] && timeout $((END - SECONDS > 100 ? 100 : END - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore \
  tests/convergence -k "not smollm2" > $L/convergence.log 2>&1; echo "convergence rc $?"; tail -2 $L/convergence.log
grep -E "max|loss" $L/convergence.log | head -6; elapsed
[ $SECONDS -lt $((END - 180)) ] && { TUITUNE_EMBED_GATHER=device ab8b work device; echo "device gather $(med device)"; elapsed; }
kernel_suite $END; elapsed
save_triton_cache; pack_logs
