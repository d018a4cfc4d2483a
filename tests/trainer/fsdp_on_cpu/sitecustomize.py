"""Loaded by every process of tests/trainer/test_distributed.py's FSDP2 runs (this folder leads their
PYTHONPATH), never by tuitune itself.

Accelerate turns FSDP on only for GPU distributed types, and tuitune refuses fsdp on the CPU for that
reason. Here both gates are lifted, so that torch's FSDP2 (fully_shard over gloo) runs tuitune's fsdp
wiring on the CPU: the Trainer's FSDP2 plugin from tuitune's fsdp_config, rank 0 writing the gathered
adapter and the checkpoints, resume. Everything else is the engines' own code."""

import functools

try:
    from accelerate import state as _state
    from accelerate.utils import DistributedType

    from tuitune import distributed_plan as _plan
except ImportError:  # a process that has neither (e.g. a build tool): nothing to lift
    pass
else:
    _plan.CPU_MODES = (*_plan.CPU_MODES, "fsdp")
    _init = _state.AcceleratorState.__init__
    _plugin: list = []  # AcceleratorState is shared and re-initialised: the FSDP plugin the Trainer gave

    @functools.wraps(_init)
    def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
        _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None:
            _plugin[:] = [fsdp_plugin]
        if _plugin and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = _plugin[0]

    _state.AcceleratorState.__init__ = _init_with_fsdp_on_cpu
