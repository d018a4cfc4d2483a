#!/usr/bin/env bash
# .device/ab/<name> trees, kernels/ and themes/ moved under tuitune/ (as the package installs them):
#   prepare_ab.sh                 main = HEAD, work = the working tree
#   prepare_ab.sh words=7ce0c6c   also a tree of that revision under the given name
set -e
cd "$(git rev-parse --show-toplevel)"
rm -rf .device/ab && mkdir -p .device/ab/main .device/ab/work
git archive HEAD tuitune kernels themes | tar -x -C .device/ab/main
tar -c --exclude=__pycache__ tuitune kernels themes | tar -x -C .device/ab/work
trees="main work"
for spec in "$@"; do
  name=${spec%%=*}; rev=${spec#*=}
  mkdir -p .device/ab/$name && git archive "$rev" tuitune kernels themes | tar -x -C .device/ab/$name
  trees="$trees $name"
done
for t in $trees; do mv .device/ab/$t/kernels .device/ab/$t/tuitune/kernels; mv .device/ab/$t/themes .device/ab/$t/tuitune/themes; done
du -sh .device/ab
