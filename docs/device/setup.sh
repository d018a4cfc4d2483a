# sourced at the start of each device call
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "pip -e . failed"
mkdir -p $OUT/docs/measurements $OUT/logs
export PYTHONUNBUFFERED=1
export TRITON_CACHE_DIR=/tmp/triton-cache TUITUNE_TEST_GPU=1
mkdir -p $TRITON_CACHE_DIR
[ -f .device/triton-cache.tgz ] && tar -xzf .device/triton-cache.tgz -C $TRITON_CACHE_DIR
save_triton_cache() { tar -czf $OUT/triton-cache.tgz -C $TRITON_CACHE_DIR . ; }
# run a tree: ab <tree> <args...>  (tree built by .device/prepare_ab.sh)
ab() { local t=$1; shift; PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton, transformers, peft, bitsandbytes, trl; print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__, bitsandbytes.__version__, trl.__version__)"
