#!/usr/bin/env bash
# Session 17, after call42 on the warm machine (~260 s): the embedding rows gathered by the GPU from the
# pinned table (TUITUNE_EMBED_GATHER=device: no host wait for the ids, no host gather) against the
# host gather, 8b offloaded, 10 steps each, twice alternating, on the working tree; the offload GPU
# tests; one profiled 8b step with the device gather (timeline: does the step's start still wait?).
# Trees: bash docs/device/prepare_ab.sh before=bfc721d.
source .device/setup.sh
L=$OUT/logs
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
timeout 90 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_activation_checkpointing.py > $L/offload-tests.log 2>&1
echo "offload tests rc $?"; tail -2 $L/offload-tests.log; grep -A12 "^E  " $L/offload-tests.log | head -20
for g in host device host device; do
  TUITUNE_EMBED_GATHER=$g timeout 60 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 10" \
    2>&1 | tee -a $L/ab-8b-gather-$g.log | grep -E "^tuitune  |timed steps" | grep -oE "^tuitune .*|timed steps.*" | sed "s/^/$g: /"
done
echo "elapsed $SECONDS s"
TUITUNE_EMBED_GATHER=device timeout 80 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
  > $L/profile-gather-device.txt 2>&1; grep -A80 "^tuitune profile" $L/profile-gather-device.txt | grep -A30 "only the GPU's activity" | head -24 | cut -c1-150
echo "elapsed $SECONDS s"
tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $L
