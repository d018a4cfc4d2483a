#!/usr/bin/env bash
# Session 17 (~480 s): 8b offloaded, 10 steps each, of before (bfc721d: the MLP without the LoRA GLU
# kernel), work (the offloader's newest entry held on the GPU) and work with
# TUITUNE_EMBED_GATHER=device (the GPU gathers the embedding rows from the pinned table); the fastest
# (by median) runs criterion 1 with stock (--repeat 2) and criterion 2 with stock; then one profiled
# 8b step of the tree (with the GPU-only timeline); then the GPU kernel suite, done by END seconds
# (585; a short budget passes less). Logs: one logs.tgz. Trees: prepare_ab.sh before=bfc721d.
source .device/setup.sh; source .device/session17.sh
arm() { case $1 in before) echo "before host";; work) echo "work host";; device) echo "work device";; esac; }
for a in before work device; do
  set -- $(arm $a); TUITUNE_EMBED_GATHER=$2 ab8b $1 $a
done
FAST=$(for a in before work device; do m=$(med $a); echo "${m:-99999} $a"; done | sort -n | head -1 | cut -d" " -f2)
echo "medians: before $(med before), work $(med work), device $(med device) -> $FAST"; elapsed
set -- $(arm $FAST); T=$1; export TUITUNE_EMBED_GATHER=$2
criterion1 $T; elapsed
criterion2 $T; elapsed
profile8b work; elapsed
kernel_suite ${END:-585}; elapsed
save_triton_cache; pack_logs
