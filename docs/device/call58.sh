#!/usr/bin/env bash
# Session 22, third call (~330 s). Trees: bash docs/device/prepare_ab.sh before=4d7c8bc (work = this tree).
# Are the bench's slow steps (one in six to eight takes 550-690 ms against 330) full garbage collections?
# gcprobe logs every collection over 5 ms and every full one, per process. (1) 8b offloaded, 16 steps,
# on before (no freeze) and work (the collector frozen after loading: collector_freeze). (2) Criterion 1
# (--repeat 3) on work.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1 TUITUNE_GC_LOG=$L/gc.txt
probe() {
  local t=$1; shift
  timeout 75 env PYTHONPATH=$PWD/.device/gcprobe:$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench \
    --shape llama-8b --checkpointing offloaded --baseline none --steps 16 --json $L/probe-$t.json "$@" \
    > $L/probe-$t.log 2>&1
  grep -oE "timed steps.*" $L/probe-$t.log | sed "s/^/$t: /"
  python3 -c "import json; print('$t steps ms', [round(x*1000) for x in json.load(open('$L/probe-$t.json'))['runs']['tuitune']['points'][0]['step_times_s']])"
}
probe before; elapsed
probe work; elapsed
cut -c1-600 $L/gc.txt
timeout 240 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 3 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s22-frozen.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
cut -c1-300 $L/gc.txt | tail -8
pack_logs
