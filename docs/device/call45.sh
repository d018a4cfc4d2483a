#!/usr/bin/env bash
# Session 17, for a budget too short for call44 (~300 s): the tree as it would land (the MLP without
# the LoRA GLU kernel, the offloader's newest entry held on the GPU, host-side embedding gather):
# criterion 1 with stock (--repeat 2), criterion 2 with stock, then one profiled 8b step (with the
# GPU-only timeline) if at least 60 s remain before END (400). Trees: prepare_ab.sh before=bfc721d.
source .device/setup.sh; source .device/session17.sh
END=${END:-400}
criterion1 work; elapsed
criterion2 work; elapsed
[ $SECONDS -lt $((END - 60)) ] && profile8b work $((END - SECONDS)); elapsed
pack_logs
