#!/usr/bin/env bash
# Session 17, for a budget of ~200 s: the tree (work) and bfc721d (before) at 8b offloaded, 10 steps
# each, tuitune alone (stock's H200 step was 676.3 ms in session 16: 2.1x needs ~322 ms); then
# criterion 1 with stock (one repeat) if END (200) leaves 150 s. Trees: bash docs/device/prepare_ab.sh before=bfc721d.
source .device/setup.sh; source .device/session17.sh
END=${END:-200}
for t in work before; do ab8b $t $t; elapsed; done
[ $SECONDS -lt $((END - 150)) ] && criterion1 work $((END - SECONDS)) 1; elapsed
