"""`tuitune chat`: one-shot answers (--prompt), side by side with the base model (--compare)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("chat", help="answer prompts with a run's adapter, an adapter or a model",
                                   description="Answer prompts with a trained adapter. Without --prompt, "
                                               "reads prompts from standard input, one per line.")
    parser.add_argument("target", help="a run name or folder, an adapter folder, or a model")
    parser.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    parser.add_argument("--compare", action="store_true", help="also answer with the base model")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--output", metavar="DIR", help="runs root folder")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tuitune.chat import Chatter, resolve_target

    target = resolve_target(args.target, args.output)
    print(f"loading {target.label} (base {target.base})...", file=sys.stderr, flush=True)
    chatter = Chatter(target)
    prompts = args.prompt or _stdin_prompts()
    for prompt in prompts:
        print(f"> {prompt}")
        if args.compare and chatter.has_adapter:
            print(f"base:    {chatter.answer(prompt, max_new_tokens=args.max_new_tokens, use_adapter=False)}")
            print(f"adapter: {chatter.answer(prompt, max_new_tokens=args.max_new_tokens)}")
        else:
            print(chatter.answer(prompt, max_new_tokens=args.max_new_tokens))
        sys.stdout.flush()
    return 0


def _stdin_prompts():
    if sys.stdin.isatty():
        print("type a prompt and press Enter (ctrl+d to quit)", file=sys.stderr)
    for line in sys.stdin:
        if line.strip():
            yield line.strip()
