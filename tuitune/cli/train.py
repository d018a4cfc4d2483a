"""`tuitune train`: headless fine-tuning with a progress line; the same trainer process as the TUI."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from tuitune import events as ev
from tuitune.cli.distributed_args import add_arguments as add_distributed_arguments
from tuitune.cli.distributed_args import overrides as distributed_overrides
from tuitune.cli.progress import ProgressLine, duration_text
from tuitune.config import Config, apply_overrides, load_config
from tuitune.errors import TuituneError
from tuitune.runs import RunDir
from tuitune.trainer_handle import TrainerHandle


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune headless (no arguments: the embedded default on the bundled sample)",
        description="Fine-tune a model with LoRA or QLoRA without the TUI. Flags override the config file. "
                    "With no config and no flags it fine-tunes the embedded default model on the bundled "
                    "sample data.")
    parser.add_argument("config", nargs="?", help="a config TOML file (see `tuitune init-config`)")
    parser.add_argument("--model", help="catalog name, model folder, .gguf file or hub id")
    parser.add_argument("--data", help="dataset file or folder")
    parser.add_argument("--method", choices=["auto", "lora", "qlora"])
    parser.add_argument("--max-steps", type=int, help="optimizer steps (overrides epochs)")
    parser.add_argument("--output", help="runs root folder")
    parser.add_argument("--name", help="run name")
    parser.add_argument("--resume", metavar="RUN", help="resume a run from its last checkpoint")
    parser.add_argument("--salvage", action="store_true", default=None,
                        help="train on the complete records of a JSON file that breaks off part-way "
                             "(sets data.salvage)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override any config field, e.g. --set training.learning_rate=1e-4")
    add_distributed_arguments(parser)
    parser.add_argument("--detach", action="store_true",
                        help="start the run in the background and return; follow it with `tuitune runs`")
    parser.set_defaults(func=run)


# `tuitune train` with no config and no flags: the embedded default on the bundled pirate sample,
# sized to finish in a few minutes on a 2-core CPU and still change the model's answers visibly.
DEMO_OVERRIDES = {
    "training.max_steps": 60, "training.batch_size": 4, "training.gradient_accumulation_steps": 1,
    "training.learning_rate": 5e-4, "output.name": "demo",
}
DEMO_PROMPTS = ["What is the capital of France?", "How many legs does a spider have?"]


def is_demo(args) -> bool:
    return not any([args.config, args.model, args.data, args.method, args.max_steps is not None,
                    args.name, args.resume, args.set])


def resolve_config(args) -> Config:
    if is_demo(args):
        return apply_overrides(Config(), {**DEMO_OVERRIDES, **distributed_overrides(args),
                                          "output.dir": args.output,
                                          "data.salvage": args.salvage})
    config = load_config(args.config) if args.config else Config()
    overrides = {
        "model.name": args.model, "data.path": _absolute_if_local(args.data), "model.method": args.method,
        "training.max_steps": args.max_steps, "output.dir": args.output, "output.name": args.name,
        "data.salvage": args.salvage,
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise TuituneError(f"--set {item!r} is not SECTION.FIELD=VALUE (for example "
                               "--set training.learning_rate=1e-4).")
        overrides[key.strip()] = value.strip()
    for key, value in distributed_overrides(args, config.training.distributed).items():
        overrides.setdefault(key, value)
    return apply_overrides(config, overrides)


def _absolute_if_local(data: str | None) -> str | None:
    """A local path is stored absolute (the run may be resumed from elsewhere); a hub name as given."""
    if data and Path(data).expanduser().exists():
        return str(Path(data).expanduser().resolve())
    return data


def run(args) -> int:
    from tuitune.trainer import launcher

    demo = is_demo(args)
    if args.resume:
        run_dir = RunDir.open(args.resume, args.output)
        handle = launcher.resume(run_dir, overrides={
            "training.max_steps": args.max_steps, "data.salvage": args.salvage,
            **distributed_overrides(args, run_dir.load_config().training.distributed)})
        print(f"run: {run_dir.path}", flush=True)
        print(f"resuming from {run_dir.last_checkpoint()}", flush=True)
    else:
        config = resolve_config(args)
        if demo:
            print("demo: fine-tuning the embedded SmolLM2-135M-Instruct on the bundled pirate-speak sample "
                  "(60 steps; `tuitune init-config` shows every setting)", flush=True)
        handle = launcher.start(config)
        print(f"run: {handle.run_dir.path}", flush=True)
    if args.detach:
        if not handle.detach():
            raise TuituneError(f"The trainer process did not start (exit code {handle.join(0)}); "
                               f"see {handle.run_dir.log_path}.")
        print("training in the background; `tuitune runs` shows its status; the log is "
              f"{handle.run_dir.log_path}")
        return 0
    code = follow(handle)
    if demo and code == 0:
        show_before_after(handle.run_dir)
    return code


def show_before_after(run_dir: RunDir) -> None:
    """The demo's point: the same prompts answered by the base model and by the new adapter."""
    from tuitune.chat import Chatter, resolve_target

    print("\nbefore and after (greedy answers):", flush=True)
    chatter = Chatter(resolve_target(str(run_dir.adapter_dir)))
    for prompt in DEMO_PROMPTS:
        print(f"> {prompt}")
        print(f"  base:    {chatter.answer(prompt, max_new_tokens=48, use_adapter=False)}")
        print(f"  adapter: {chatter.answer(prompt, max_new_tokens=48)}", flush=True)
    print(f"\nchat with it: tuitune chat {run_dir.path} --compare --prompt \"...\"")


def follow(handle: TrainerHandle) -> int:
    """Print progress until the trainer finishes. Ctrl+C asks for a stop with checkpoint; twice kills."""
    bar = ProgressLine(sys.stdout)
    interrupts = 0

    def on_sigint(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            bar.message("stopping after this step with a checkpoint (ctrl+c again to abandon)")
            handle.stop()
        else:
            handle.terminate()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        while True:
            events = handle.poll(timeout=0.5)
            for event in events:
                bar.show(event)
            if handle.finished is not None:
                break
            if not events and not handle.is_alive():
                for event in handle.poll():
                    bar.show(event)
                if handle.finished is None:
                    bar.message(f"the trainer process ended without a result (exit code "
                                f"{handle.join(0)}); see {handle.run_dir.log_path}")
                    return 1
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    handle.join(timeout=30)
    final = handle.finished
    bar.end()
    if final["type"] == ev.FAILED:
        print(f"error: {final.get('message')}\n{final.get('advice', '')}", file=sys.stderr)
        return 1
    summary = final.get("summary", {})
    verb = "stopped" if summary.get("stopped") else "finished"
    loss = summary.get("final_loss")
    print(f"{verb}: {summary.get('steps')} steps in {duration_text(summary.get('runtime_s'))}, "
          f"final loss {loss:.4f}" if loss is not None else f"{verb}: no steps ran")
    print(f"adapter: {summary.get('adapter_path')}")
    return 0
