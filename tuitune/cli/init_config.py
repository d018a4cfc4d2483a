"""`tuitune init-config`: print a commented default config."""

from __future__ import annotations

from tuitune.config import Config, to_toml


def register(subparsers) -> None:
    parser = subparsers.add_parser("init-config", help="print a commented default config",
                                   description="Print a commented default config (the fields of the TUI form).")
    parser.set_defaults(func=run)


def run(args) -> int:
    print(to_toml(Config(), commented=True), end="")
    return 0
