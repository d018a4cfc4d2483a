"""`tuitune chat`: an interactive streaming chat in the terminal, or one answer per `--prompt` for scripts."""

from __future__ import annotations

import argparse
import base64
import sys
import threading

from tuitune.cli.arguments import positive_int

COMMANDS_HELP = """commands:
  /clear               forget the conversation
  /regen               answer the last message again
  /copy                copy the conversation to the clipboard (OSC 52; also printed with /show)
  /show                print the conversation
  /compare             toggle compare mode (base model, then the tuned one)
  /preset NAME         factual, balanced, creative or greedy
  /set KEY VALUE       temperature, top_p, top_k, repetition_penalty, max_new_tokens
  /system TEXT         set the system prompt (/system alone clears it)
  /settings            show the generation settings
  /quit                leave (also ctrl+d); ctrl+c stops an answer"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat", help="chat with a run, an adapter, a model or a .gguf file",
        description="Chat with a trained adapter (a run name or folder, or an adapter folder), a model, or an "
                    "exported .gguf file. Interactive and streaming in a terminal; with --prompt, prints one "
                    "greedy answer per prompt and exits. Without a terminal, answers each line of stdin.",
        epilog=COMMANDS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="a run name or folder, an adapter folder, a model, or a .gguf file")
    parser.add_argument("--prompt", action="append", help="answer this prompt and exit (repeatable)")
    parser.add_argument("--compare", action="store_true", help="also answer with the base model (adapter off)")
    parser.add_argument("--preset", help="factual, balanced, creative or greedy (default: greedy with --prompt, "
                                         "balanced otherwise)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--repetition-penalty", type=float)
    parser.add_argument("--max-new-tokens", type=positive_int, help="longest answer (default 96 with --prompt, "
                                                                    "else the preset's 256)")
    parser.add_argument("--seed", type=int, help="fixed sampling seed")
    parser.add_argument("--system", default="", help="system prompt (default: the chat template's own)")
    parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "llama.cpp"],
                        help="auto uses llama.cpp for .gguf files when installed")
    parser.add_argument("--output", metavar="DIR", help="runs root folder")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tuitune.chat import Conversation, open_engine, resolve_target

    scripted = bool(args.prompt) or not sys.stdin.isatty()
    settings = _settings(args, scripted)
    target = resolve_target(args.target, args.output)
    print(f"loading {target.label}{f' (base {target.base})' if target.has_adapter else ''}...",
          file=sys.stderr, flush=True)
    engine = open_engine(target, args.engine)
    if args.compare and not engine.has_adapter:
        print(f"note: {target.label} has no adapter; --compare shows one answer.", file=sys.stderr)
    if scripted:
        for prompt in args.prompt or _stdin_prompts():
            _one_shot(engine, prompt, settings, args)
        return 0
    return Repl(engine, settings, Conversation(system_prompt=args.system), compare=args.compare).loop()


def _settings(args, scripted: bool):
    from tuitune.chat import preset

    changes = {key: value for key, value in (
        ("temperature", args.temperature), ("top_p", args.top_p), ("top_k", args.top_k),
        ("repetition_penalty", args.repetition_penalty), ("max_new_tokens", args.max_new_tokens),
        ("seed", args.seed)) if value is not None}
    if scripted and "max_new_tokens" not in changes:
        changes["max_new_tokens"] = 96
    return preset(args.preset or ("greedy" if scripted else "balanced"), **changes)


def _one_shot(engine, prompt: str, settings, args) -> None:
    """The script path: `> prompt`, then the answer (base and adapter with --compare), one line each."""
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": prompt}]
    print(f"> {prompt}")
    if args.compare and engine.has_adapter:
        print(f"base:    {engine.generate(messages, settings, use_adapter=False).text}")
        print(f"adapter: {engine.generate(messages, settings).text}")
    else:
        print(engine.generate(messages, settings).text)
    sys.stdout.flush()


def _stdin_prompts():
    for line in sys.stdin:
        if line.strip():
            yield line.strip()


class Repl:
    """The interactive loop: read a line, run a command or stream an answer."""

    def __init__(self, engine, settings, conversation, *, compare: bool = False, out=None, read=input):
        self.engine = engine
        self.settings = settings
        self.conversation = conversation
        self.compare = compare and engine.has_adapter
        self.out = out or sys.stdout
        self.read = read

    def loop(self) -> int:
        self.say(f"chatting with {self.engine.description}; /help lists the commands, ctrl+d leaves")
        while True:
            try:
                line = self.read("you> ")
            except EOFError:
                self.say("")
                return 0
            except KeyboardInterrupt:
                self.say("")
                return 0
            if not self.handle(line.strip()):
                return 0

    def handle(self, line: str) -> bool:
        """Run one input line; False when the user asked to quit."""
        from tuitune.errors import TuituneError

        if not line:
            return True
        try:
            if line.startswith("/"):
                return self.command(line)
            self.respond(self.conversation.ask(line))
        except TuituneError as exc:
            self.say(f"error: {exc}")
        return True

    def command(self, line: str) -> bool:
        from tuitune.chat import preset
        from tuitune.chat.presets import parse_setting
        from tuitune.errors import TuituneError

        name, _, rest = line[1:].partition(" ")
        name, rest = name.lower(), rest.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.say(COMMANDS_HELP)
        elif name == "clear":
            self.conversation.clear()
            self.say("(conversation cleared)")
        elif name in ("regen", "regenerate"):
            self.respond(self.conversation.regenerate())
        elif name == "copy":
            self.out.write(f"\x1b]52;c;{base64.b64encode(self.conversation.transcript().encode()).decode()}\x07")
            self.say("(conversation copied to the clipboard, where the terminal allows OSC 52)")
        elif name == "show":
            self.say(self.conversation.transcript() or "(empty)")
        elif name == "compare":
            if not self.engine.has_adapter:
                raise TuituneError("Compare mode needs an adapter; this model has none.")
            self.compare = not self.compare
            self.say(f"(compare mode {'on' if self.compare else 'off'})")
        elif name == "preset":
            self.settings = preset(rest or "balanced", max_new_tokens=self.settings.max_new_tokens)
            self.say(f"(preset {rest or 'balanced'}: {self.describe_settings()})")
        elif name == "set":
            key, _, value = rest.partition(" ")
            field, number = parse_setting(key, value.strip())
            self.settings = self.settings.replace(**{field: number})
            self.say(f"({self.describe_settings()})")
        elif name == "system":
            self.conversation.system_prompt = rest
            self.say(f"(system prompt {'set' if rest else 'cleared: the template default applies'})")
        elif name == "settings":
            self.say(self.describe_settings())
        else:
            raise TuituneError(f"Unknown command /{name}; /help lists them.")
        return True

    def describe_settings(self) -> str:
        s = self.settings
        return (f"temperature {s.temperature}, top_p {s.top_p}, top_k {s.top_k}, repetition_penalty "
                f"{s.repetition_penalty}, max_new_tokens {s.max_new_tokens}")

    def respond(self, messages) -> None:
        """Stream the answer (both answers in compare mode); ctrl+c stops it and keeps what came."""
        from tuitune.chat import BASE, Finished, TextDelta

        stop = threading.Event()
        events = (self.engine.compare(messages, self.settings, stop_event=stop) if self.compare
                  else self.engine.stream(messages, self.settings, stop_event=stop))
        side = None
        partial: list[str] = []
        kept = None
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    if event.side != side:
                        side = event.side
                        self.out.write(f"{'base' if side == BASE else 'model'}> ")
                    if side != BASE:
                        partial.append(event.text)
                    self.out.write(event.text)
                    self.out.flush()
                elif isinstance(event, Finished):
                    if event.side != side:  # an empty answer
                        self.out.write(f"{'base' if event.side == BASE else 'model'}> ")
                    side = None
                    self.say(f"\n  [{event.stats.describe()}]")
                    if event.side != BASE:
                        kept = (event.text, event.stats.to_dict())
        except KeyboardInterrupt:
            stop.set()
            events.close()
            self.say("\n  [stopped by you]")
        if kept is None:  # stopped: keep what came, so /regen can replace it
            kept = ("".join(partial).strip(), {"stop_reason": "stopped"})
        self.conversation.answer(*kept)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
