#!/usr/bin/env bash
# Session 20 (~585 s; END bounds it): merged adapters (nf4_merge, on by default since d2d2338) on the
# H200, with nothing else running on the GPU (session 19's call48 ran its merge tests under a 120 s
# timeout whose xdist workers may have outlived it, during the timings). 8b offloaded, 10 steps each,
# unmerged and merged; criterion 1 (--repeat 2) with the faster; criterion 2 twice (its session-19
# steps ranged 80 to 150 ms); one profiled 8b step; the kernel suite to END (nf4_merge's GPU tests
# and its autotuning-memory test included). Trees: bash docs/device/prepare_ab.sh (work = the tree).
source .device/setup.sh; source .device/session17.sh
END=${END:-585}
elapsed() { echo "elapsed $SECONDS s"; tar -czf $OUT/logs.tgz -C $OUT logs; }
pick_merging
criterion1 work; elapsed
criterion2 work; elapsed
mv $M/bench-llama-1b-qlora-offloaded-$G-$D-s17.json $M/bench-llama-1b-qlora-offloaded-$G-$D-s17-run1.json
cp $L/bench1b-offloaded.log $L/bench1b-offloaded-run1.log
criterion2 work; elapsed
profile8b work; elapsed
kernel_suite $END; pkill -f "pytest" || true; elapsed
save_triton_cache; pack_logs
