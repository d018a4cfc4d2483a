#!/usr/bin/env bash
# Session 19, short budget (~380 s; END bounds it): call48's essentials. The merge kernel's GPU test,
# 8b offloaded 10 steps unmerged and merged, then criterion 1 with stock under the faster setting
# (--repeat 2 when 200 s are left, else 1), then criterion 2 if time is left.
source .device/setup.sh; source .device/session17.sh
END=${END:-380}
elapsed() { echo "elapsed $SECONDS s"; tar -czf $OUT/logs.tgz -C $OUT logs; }
timeout 60 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore tests/kernels/test_nf4_merge.py \
  > $L/merge-tests.log 2>&1; echo "merge tests rc $?"; tail -2 $L/merge-tests.log; grep -A8 "^E  " $L/merge-tests.log | head -16
elapsed
pick_merging
left=$((END - SECONDS)); criterion1 work $left $([ $left -ge 200 ] && echo 2 || echo 1); elapsed
[ $SECONDS -lt $((END - 75)) ] && { criterion2 work $((END - SECONDS)); elapsed; }
save_triton_cache; pack_logs
