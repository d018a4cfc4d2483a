#!/usr/bin/env bash
# Session 23 (~330 s on an H100; on an H200 it runs call61 instead). call60 read `tuitune train` with
# kernels off at 14,804 tokens/s on llama-1b offloaded, where call59 (session 22, tree 4b21bd7) read
# 26,132; kernels on barely moved (47,088 against 50,622). Host or code? Both trees on one host:
# s22 = 4b21bd7 (call59's tree: the first freeze only) and work (batches ahead, second freeze, capture
# peak bookkeeping), each `--trainer` at llama-1b offloaded with graphs (lent), as call59 ran it.
# Trees: bash docs/device/prepare_ab.sh s22=4b21bd7.
source .device/setup.sh; source .device/session17.sh
lscpu | grep -E "Model name|^CPU\(s\)|MHz" | head -4; python3 -c "import sys; print(sys.version)"
if [ "$G" = h200 ]; then bash .device/call61.sh; exit; fi
export TUITUNE_MERGE_ADAPTERS=1
for t in s22 work; do
  timeout 160 bash -c "$(declare -f run); run $t --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s23-$t.json" \
    2>&1 | tee $L/bench1b-lent-trainer-$t.log | grep -E "^tuitune  |^  (kernels|stock) |^  train" | cut -c1-120 | sed "s/^/$t: /"; elapsed
done
pack_logs
