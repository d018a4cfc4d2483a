"""The kernels' functional API as the design names it: names, signatures, and a cheap import that launches nothing."""

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import tuitune.kernels as K


def _params(fn):
    """(name, kind, default) of each parameter: KEYWORD_ONLY marks the ones after ``*``."""
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(fn).parameters.values()]


def test_signatures_match_the_design():
    E, P, KW = inspect.Parameter.empty, "POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY"
    assert _params(K.rms_norm) == [("x", P, E), ("weight", P, E), ("eps", P, E), ("offset", KW, 0.0)]
    assert _params(K.rope) == [("q", P, E), ("k", P, E), ("cos", P, E), ("sin", P, E), ("position_ids", P, None)]
    assert _params(K.swiglu) == [("gate", P, E), ("up", P, E)]
    assert _params(K.geglu) == [("gate", P, E), ("up", P, E), ("approximate", P, "none")]
    assert _params(K.cross_entropy) == [("logits", P, E), ("labels", P, E), ("ignore_index", KW, -100),
                                        ("softcap", KW, None)]
    assert _params(K.fused_linear_cross_entropy) == [("hidden", P, E), ("weight", P, E), ("labels", P, E),
                                                     ("ignore_index", KW, -100), ("softcap", KW, None)]
    assert _params(K.nf4_dequantize)[0][0] == "weight"
    assert _params(K.lora_o) == [("x", P, E), ("o", P, E), ("keep_dense", KW, False)]
    assert _params(K.lora_qkv) == [("x", P, E), ("q", P, E), ("k", P, E), ("v", P, E), ("keep_dense", KW, False)]
    assert _params(K.lora_mlp) == [("x", P, E), ("gate", P, E), ("up", P, E), ("down", P, E),
                                   ("activation", P, "swiglu"), ("mode", KW, "saved"), ("chunk", KW, None)]


def test_import_is_cheap_and_independent_of_the_app():
    code = ("import sys, tuitune.kernels as k; "
            "loaded = [m for m in sys.modules if m.startswith(('triton', 'textual', 'tuitune.kernels.'))]; "
            "assert not loaded, loaded; "
            "assert 'rms_norm' in dir(k)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_kernel_modules_never_import_tuitune_or_textual():
    import pathlib
    import re

    folder = pathlib.Path(K.__file__).parent
    for path in folder.rglob("*.py"):
        bad = re.findall(r"^\s*(?:import|from)\s+(?:tuitune|textual)\b.*$", path.read_text(), re.MULTILINE)
        assert not bad, f"{path.name}: {bad}"


def test_each_module_is_named_after_the_function_it_provides():
    for name, module in K._EXPORTS.items():  # noqa: SLF001
        assert module == {"LoRAWeights": "lora_weights"}.get(name, name), (name, module)
    code = ("import tuitune.kernels.ops.rms_norm, tuitune.kernels.ops.rope; "
            "from tuitune.kernels import rms_norm, rope; "
            "assert callable(rms_norm) and callable(rope), (rms_norm, rope)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_checkout_on_sys_path_does_not_shadow_the_kernels_distribution(tmp_path):
    """From the checkout's root `import kernels` must reach Hugging Face's package (transformers
    imports it) or fail as a missing module; it never returns this folder."""
    checkout = Path(K.__file__).resolve().parent.parent
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
            "try:\n    import kernels\nexcept ModuleNotFoundError:\n    print('missing')\n"
            "else:\n    print(Path(kernels.__file__).resolve())\n"
            "import tuitune.kernels as t; assert callable(t.rms_norm)\n")
    done = subprocess.run([sys.executable, "-c", code, str(checkout)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = done.stdout.strip()
    assert found == "missing" or not Path(found).is_relative_to(checkout / "kernels"), found
    if importlib.util.find_spec("transformers") and found != "missing":
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from transformers.integrations import hub_kernels", str(checkout)],
                       check=True, timeout=300, cwd=tmp_path)
