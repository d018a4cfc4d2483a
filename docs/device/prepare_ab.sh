#!/usr/bin/env bash
# .device/ab/<name> trees: `main` = HEAD, `work` = the working tree; kernels and themes moved into tuitune/
set -e
cd "$(git rev-parse --show-toplevel)"
rm -rf .device/ab && mkdir -p .device/ab/main .device/ab/work
git archive HEAD tuitune kernels themes | tar -x -C .device/ab/main
tar -c --exclude=__pycache__ tuitune kernels themes | tar -x -C .device/ab/work
for t in main work; do mv .device/ab/$t/kernels .device/ab/$t/tuitune/kernels; mv .device/ab/$t/themes .device/ab/$t/tuitune/themes; done
du -sh .device/ab
