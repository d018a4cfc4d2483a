#!/usr/bin/env bash
# session 9's finding, bisected: kernel tests that failed on an H100 under xdist (8 workers on one GPU,
# call7), run alone (one process) with tracebacks, on HEAD and on the words tree (7ce0c6c, before the
# grouped LoRA GEMMs; the failing tests have not changed since). Needs `prepare_ab.sh words=7ce0c6c`.
source .device/setup.sh
L=$OUT/logs
T="tests/kernels/test_activation_checkpointing.py tests/kernels/test_layer_graphs.py tests/kernels/test_glu.py"
timeout 200 python3 -m pytest -q -p no:cacheprovider --tb=short -rf -W ignore $T 2>&1 | tail -80 | tee $L/failing-head.log
cp -r tests pyproject.toml .device/ab/words/
(cd .device/ab/words && PYTHONPATH=/tmp/site timeout 150 python3 -m pytest -q -p no:cacheprovider --tb=line -rf -W ignore \
  tests/kernels/test_activation_checkpointing.py tests/kernels/test_layer_graphs.py 2>&1 | tail -30 | tee $L/failing-words.log)
python3 -c "import tuitune.kernels.ops.lora_weights as m; print('HEAD tree:', m.__file__)"
echo "elapsed $SECONDS s"
