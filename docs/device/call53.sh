#!/usr/bin/env bash
# Session 20, call 4 (~200 s): the GPU kernel suite alone (call52 ran out of time before it):
# nf4_merge's kept launch (new this session) under every kernel test, CUDA graphs included.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
kernel_suite ${END:-250}; pkill -f "pytest" || true; elapsed
pack_logs
