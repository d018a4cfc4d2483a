#!/usr/bin/env bash
# Session 27's first call: on an H200, call61 (criteria 1 and 4, never measured on it with the current
# code); on an H100, call68 (the sync probe at 1b with the batch facts found on the CPU, then their A/B).
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then bash .device/call61.sh; else bash .device/call68.sh; fi
