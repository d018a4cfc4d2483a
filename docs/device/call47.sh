#!/usr/bin/env bash
# Session 19 (~480 s; END bounds it): main without the held entry. Criterion 1 with stock (--repeat 2)
# and criterion 2 with stock on the tree; then 8b offloaded, 10 steps each, with the embedding
# gather on the host and on the GPU (TUITUNE_EMBED_GATHER=device; its GPU test runs in the kernel
# suite); then the kernel suite to END. If the device gather is the faster and its test passes,
# make it the default. Trees: bash docs/device/prepare_ab.sh (work = the tree). Logs: one logs.tgz.
source .device/setup.sh; source .device/session17.sh
END=${END:-585}
criterion1 work; elapsed
criterion2 work; elapsed
TUITUNE_EMBED_GATHER=host ab8b work host; elapsed
TUITUNE_EMBED_GATHER=device ab8b work device; elapsed
echo "medians: host $(med host), device $(med device)"
kernel_suite $END; elapsed
save_triton_cache; pack_logs
