#!/usr/bin/env bash
# Session 20, call 2 (~260 s): diagnostics for the two gaps left. (1) llama-1b's host: enqueue time
# against step time and a cProfile of 3 steps (host_1b.py), plus one profiled 1b step (GPU side);
# criterion 2 is host-bound and moved 1.85x-2.20x between two runs of call50. (2) llama-8b with the
# offloaded embedding gathered on the GPU (TUITUNE_EMBED_GATHER=device, never run on a GPU) against
# the host gather, alternated twice, and that path's GPU test.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 90 env PYTHONPATH=$PWD/.device/ab/work:/tmp/site python3 -P .device/host_1b.py llama-1b 12 > $L/host-1b.txt 2>&1
grep -E "^llama|own total" $L/host-1b.txt | cut -c1-400; elapsed
for i in 1 2; do ab8b work host-gather; TUITUNE_EMBED_GATHER=device ab8b work device-gather; done; elapsed
echo "medians: host $(med host-gather), device $(med device-gather)"
timeout 90 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_activation_checkpointing.py -k "gather" 2>&1 | tail -4
elapsed
timeout 80 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --baseline none --steps 6 --profile 1" \
  > $L/profile-1b.txt 2>&1; grep -A40 "^tuitune profile" $L/profile-1b.txt | grep -v "^\s*$" | head -40 | cut -c1-150
elapsed
pack_logs
