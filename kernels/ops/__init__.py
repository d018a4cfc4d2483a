"""The kernel modules, one operation each and named after the function it provides (`rms_norm.py` holds
`rms_norm`); `tuitune.kernels` exports the functions. Never imports tuitune or textual."""
