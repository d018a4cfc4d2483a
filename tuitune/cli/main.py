"""The `tuitune` command: the TUI with no subcommand, headless subcommands otherwise."""

from __future__ import annotations

import argparse
import importlib
import sys

from tuitune import __version__
from tuitune.errors import TuituneError
from tuitune.quick_exit import freeze_at_exit

# Each module adds its subcommand(s) with `register(subparsers)`, setting `func(args) -> int`.
SUBCOMMAND_MODULES = [
    "tuitune.cli.train",
    "tuitune.cli.init_config",
    "tuitune.cli.data",
    "tuitune.cli.gpu",
    "tuitune.cli.models",
    "tuitune.cli.runs",
    "tuitune.cli.chat",
    "tuitune.cli.export",
    "tuitune.cli.bench",
    "tuitune.cli.eval",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuitune",
        description="Fine-tune LLMs with LoRA and QLoRA. With no command, opens the terminal app.",
    )
    parser.add_argument("--version", action="version", version=f"tuitune {__version__}")
    parser.add_argument("--no-mouse", action="store_true", help="disable mouse support in the TUI")
    parser.add_argument("--inline", action="store_true", help="run the TUI inline below the prompt")
    parser.add_argument("--theme", metavar="NAME", help="TUI theme (see the command palette for names)")
    parser.add_argument("--truecolor", action="store_true",
                        help="force 24-bit colour when SSH or tmux drop COLORTERM")
    parser.add_argument("--output", metavar="DIR", help="runs root folder for the TUI")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def run_tui(args: argparse.Namespace) -> int:
    from tuitune.ui.app import run_app

    return run_app(no_mouse=args.no_mouse, inline=args.inline, theme=args.theme, runs_root=args.output,
                   truecolor=args.truecolor)


def main(argv: list[str] | None = None) -> int:
    freeze_at_exit()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            return run_tui(args)
        return int(args.func(args) or 0)
    except TuituneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tuitune models | head`: the reader left; that is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
