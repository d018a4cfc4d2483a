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
    assert [p[0] for p in _params(K.nf4_merge)[:4]] == ["weight", "lora_a", "lora_b", "scaling"]
    assert _params(K.lora_o) == [("x", P, E), ("o", P, E), ("keep_dense", KW, False), ("replay", KW, None)]
    assert _params(K.lora_qkv) == [("x", P, E), ("q", P, E), ("k", P, E), ("v", P, E), ("keep_dense", KW, False),
                                   ("replay", KW, None)]
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


def _import_kernels_from_the_checkout(tmp_path, hide_the_distribution: bool):
    """Run `import kernels` with the checkout's root first on sys.path; print where it came from."""
    checkout = Path(K.__file__).resolve().parent.parent
    hide = ("from importlib.machinery import PathFinder\n"
            "real = PathFinder.find_spec.__func__\n"
            "PathFinder.find_spec = classmethod(lambda cls, name, path=None, target=None: None if name == "
            "'kernels' and path and sys.argv[1] not in path else real(cls, name, path, target))\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
            + (hide if hide_the_distribution else "")
            + "import kernels\n"
            "where = getattr(kernels, '__file__', None)\n"
            "print(Path(where).resolve() if where else 'no file', getattr(kernels, '__version__', 'N/A'))\n"
            "try:\n    from kernels import get_kernel\nexcept ImportError:\n    print('no get_kernel')\n"
            "import tuitune.kernels as t; assert callable(t.rms_norm)\n")
    done = subprocess.run([sys.executable, "-c", code, str(checkout)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return checkout, done.stdout.split()


def test_the_checkout_on_sys_path_does_not_shadow_the_kernels_distribution(tmp_path):
    """From the checkout's root `import kernels` must reach Hugging Face's package (transformers
    imports it); it never returns this folder."""
    checkout, (found, *_) = _import_kernels_from_the_checkout(tmp_path, hide_the_distribution=False)
    if found == "no file":  # the distribution is not installed here: the next test's case
        return
    assert not Path(found).is_relative_to(checkout / "kernels"), found
    if importlib.util.find_spec("transformers"):
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from transformers.integrations import hub_kernels", str(checkout)],
                       check=True, timeout=300, cwd=tmp_path)


def test_without_the_kernels_distribution_the_checkout_looks_like_an_empty_folder(tmp_path):
    """transformers < 5.25 finds this folder's spec and imports it unguarded (it broke every model load
    on the GPU machine, 2026-12-05): the import must succeed and give what its probe reads as no
    install (no __file__, no __version__), and `from kernels import get_kernel` must fail cleanly."""
    _, printed = _import_kernels_from_the_checkout(tmp_path, hide_the_distribution=True)
    assert printed == ["no", "file", "N/A", "no", "get_kernel"], printed
