"""`tuitune export RUN --format ...`: write an adapter, merged, GGUF or GPTQ export, verify it, report it."""

from __future__ import annotations

import argparse
import sys

from tuitune.export.formats import FORMAT_HELP, FORMATS, QUANT_HELP, QUANTS


def register(subparsers) -> None:
    formats = "\n".join(f"  {name:8} {FORMAT_HELP[name]}; --quant {'|'.join(QUANTS[name]) or '(none)'}"
                        for name in FORMATS)
    quants = "\n".join(f"  {name:7} {text}" for name, text in QUANT_HELP.items())
    parser = subparsers.add_parser(
        "export", help="export a run's adapter: adapter, merged, gguf or gptq, verified",
        description="Export a trained adapter and verify the result by reloading it before reporting it done. "
                    "--push uploads the verified export to the Hugging Face Hub (token from HF_TOKEN or "
                    "`hf auth login`).",
        epilog=f"formats:\n{formats}\n\nquantizations:\n{quants}\n\nK-quants (q4_k_m, q5_k_m, q6_k) need llama.cpp: "
               "pip install 'tuitune[llamacpp]'. GPTQ needs a CUDA GPU and pip install 'tuitune[gptq]'.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="RUN", help="a run name or folder, or an adapter folder")
    parser.add_argument("--format", default="adapter", choices=FORMATS)
    parser.add_argument("--quant", help="quantization (default: bf16 for merged, q8_0 for gguf)")
    parser.add_argument("--output", metavar="DIR", help="folder to write (default: <run>/exports/<format>-<quant>)")
    parser.add_argument("--push", metavar="REPO", help="upload the verified export to this hub repo (owner/name)")
    parser.add_argument("--runs", metavar="DIR", help="runs root folder (default: $TUITUNE_RUNS or the XDG data dir)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tuitune.export.formats import ExportRequest
    from tuitune.export.runner import preflight, run_export

    request = ExportRequest(args.target, args.format, args.quant, args.output, args.push, args.runs)
    preflight(request)  # bad flags, a missing GPU or extra, no token or no network: before any loading
    line = ProgressLine(sys.stderr)
    result = run_export(request, line)
    line.close()
    print(result.report())
    return 0


class ProgressLine:
    """Progress on stderr: one rewritten line on a terminal, one line per phase otherwise."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.phase = None

    def __call__(self, fraction: float, message: str) -> None:
        if self.tty:
            self.stream.write(f"\r\x1b[2K[{fraction:4.0%}] {message}")
        else:
            phase = message.split(" (")[0]
            if phase == self.phase:
                return
            self.phase = phase
            self.stream.write(f"[{fraction:4.0%}] {message}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
