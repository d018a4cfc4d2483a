"""The run configuration: one TOML file, one source of truth for defaults, ranges and help.

Every field carries its default, its range or choices and a one-line help text in its dataclass
metadata. The TUI form, `tuitune init-config` and the validation messages all read them from here.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tuitune.distributed_fields import MODES, check_endpoint, check_gpus, parse_gpus
from tuitune.errors import TuituneError

OBJECTIVES = {"auto": "from the data's format", "sft": "supervised fine-tuning",
              "dpo": "direct preference optimisation", "orpo": "odds-ratio preference optimisation",
              "cpt": "continued pretraining"}
SEVEN_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_MODEL = "smollm2-135m-instruct"


def _f(default: Any, help: str, *, min: float | None = None, max: float | None = None,
       choices: list[str] | None = None, factory: bool = False, check: Any = None) -> Any:
    meta = {"help": help, "min": min, "max": max, "choices": choices, "check": check}
    if factory:
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    name: str = _f(DEFAULT_MODEL, "Catalog name, local Hugging Face folder, .gguf file or hub id")
    method: str = _f("auto", "auto picks QLoRA on a GPU and LoRA on the CPU",
                     choices=["auto", "lora", "qlora"])
    dtype: str = _f("auto", "Compute dtype; auto uses bf16 where supported, else fp16 (fp32 on CPU)",
                    choices=["auto", "bfloat16", "float16", "float32"])
    max_seq_length: int = _f(1024, "Longest training example in tokens; longer rows are truncated",
                             min=16, max=131072)
    trust_remote_code: bool = _f(False, "Allow model code from the checkpoint (only for models you trust)")


def _check_columns(value: Any) -> tuple[Any, str | None]:
    """data.columns: `instruction=question,output=answer` (or a TOML table), stored as that text."""
    from tuitune.data.columns import mapping_text

    try:
        return mapping_text(value), None
    except TuituneError as exc:
        return value, exc.message


@dataclass
class DataConfig:
    path: str = _f("", "Dataset file, save_to_disk folder or hub name; empty uses the bundled sample")
    format: str = _f("auto", "Dataset format; auto detects it from the columns",
                     choices=["auto", "alpaca", "sharegpt", "messages", "text", "preference"])
    columns: str = _f("", "Your data's column names, e.g. instruction=question,output=answer (empty: "
                          "as detected)", check=_check_columns)
    salvage: bool = _f(False, "Train on the complete records of a JSON file that breaks off part-way")
    responses_only: bool = _f(True, "Compute the loss on assistant replies only (the prompt is masked)")
    packing: bool = _f(False, "Pack several short examples into each sequence")
    system_prompt: str = _f("", "System prompt added to conversations that have none (empty: none)")
    eval_fraction: float = _f(0.0, "Share of rows held out for evaluation (0 disables eval)",
                              min=0.0, max=0.5)
    eval_path: str = _f("", "A separate evaluation file in the training data's format (empty: use "
                            "data.eval_fraction)")
    max_rows: int = _f(0, "Use at most this many rows (0: all)", min=0, max=1_000_000_000)


@dataclass
class LoraConfig:
    r: int = _f(16, "LoRA rank", min=1, max=1024)
    alpha: int = _f(16, "LoRA alpha (scaling is alpha / r)", min=1, max=4096)
    dropout: float = _f(0.0, "Dropout on the LoRA input (0 enables the fused kernels)", min=0.0, max=0.9)
    target_modules: list = _f(SEVEN_PROJECTIONS, "Projections that get adapters", factory=True)
    use_rslora: bool = _f(False, "Rank-stabilised scaling (alpha / sqrt(r))")


@dataclass
class TrainingConfig:
    objective: str = _f("auto", "What to learn: auto picks dpo for preference pairs, cpt for plain text, "
                                "sft otherwise", choices=list(OBJECTIVES))
    max_steps: int = _f(0, "Optimizer steps to run (0: run num_epochs)", min=0, max=10_000_000)
    num_epochs: float = _f(1.0, "Passes over the data when max_steps is 0", min=0.01, max=1000.0)
    batch_size: int = _f(2, "Examples per device per forward pass", min=1, max=4096)
    gradient_accumulation_steps: int = _f(4, "Forward passes per optimizer step", min=1, max=4096)
    learning_rate: float = _f(2e-4, "Peak learning rate", min=1e-7, max=1.0)
    lr_scheduler: str = _f("cosine", "Learning-rate schedule after warmup",
                           choices=["cosine", "linear", "constant", "constant_with_warmup"])
    warmup_steps: int = _f(5, "Steps of linear warmup", min=0, max=100_000)
    weight_decay: float = _f(0.01, "AdamW weight decay", min=0.0, max=1.0)
    max_grad_norm: float = _f(0.3, "Gradient clipping norm", min=0.0, max=1000.0)
    optimizer: str = _f("auto", "auto uses 8-bit AdamW where bitsandbytes supports the device",
                        choices=["auto", "adamw_8bit", "adamw_torch", "paged_adamw_8bit", "sgd"])
    seed: int = _f(3407, "Random seed for weights, data order and dropout", min=0, max=2**31 - 1)
    gradient_checkpointing: str = _f("auto", "Recomputation: auto picks the fastest of none, standard, "
                                     "offloaded (to CPU) that fits the GPU",
                                     choices=["auto", "none", "standard", "offloaded"])
    use_kernels: bool = _f(True, "Use tuitune's Triton kernels on supported architectures")
    dequantize_once: str = _f("auto", "QLoRA: keep base weights dequantized (2 bytes each more, faster); "
                                      "auto: without recomputation, if it fits", choices=["auto", "on", "off"])
    cuda_graphs: str = _f("auto", "Replay recomputed layers as CUDA graphs (fewer launches, a layer's memory "
                                  "more); auto: small models that fit", choices=["auto", "on", "off"])
    device: str = _f("auto", "auto uses the first CUDA GPU, else the CPU", choices=["auto", "cuda", "cpu"])
    distributed: str = _f("none", "Several GPUs: ddp (a model copy each), fsdp (FSDP2 shards it), zero2/zero3 "
                          "(DeepSpeed)", choices=list(MODES))
    gpus: str = _f("1", "GPUs per machine: a count (2) or CUDA device ids (0,1; one id: 3,)", check=check_gpus)
    nnodes: int = _f(1, "Machines in the run; each runs `tuitune train` with its own node_rank", min=1, max=1024)
    node_rank: int = _f(0, "This machine's place among nnodes (node 0 writes the run)", min=0, max=1023)
    rdzv_endpoint: str = _f("", "host:port of node 0, where the machines meet (empty: this machine only)",
                            check=check_endpoint)
    logging_steps: int = _f(1, "Report loss every N steps", min=1, max=100_000)
    save_steps: int = _f(0, "Checkpoint every N steps (0: only on stop and at the end)", min=0, max=10_000_000)
    eval_steps: int = _f(0, "Evaluate every N steps when there is eval data (0: at the end)",
                         min=0, max=10_000_000)
    early_stopping_patience: int = _f(0, "Stop after this many evaluations without a lower eval loss "
                                         "(0: never); the best checkpoint is kept", min=0, max=1000)
    report_to: str = _f("none", "Also log to TensorBoard or Weights & Biases (when installed)",
                        choices=["none", "tensorboard", "wandb"])
    profile_steps: int = _f(0, "Profile N steps after the third, then N GPU-only (on a GPU), N on the host, "
                               "into profile.json (0: off)", min=0, max=1000)
    dpo_beta: float = _f(0.1, "DPO: how far the tuned model may move from the base (higher: less)",
                         min=0.001, max=10.0)
    dpo_loss: str = _f("sigmoid", "DPO loss: sigmoid (the paper's), ipo, hinge or robust",
                       choices=["sigmoid", "ipo", "hinge", "robust"])
    orpo_lambda: float = _f(0.1, "ORPO: weight of the odds-ratio term beside the chosen replies' loss",
                            min=0.001, max=10.0)
    embedding_learning_rate: float = _f(0.0, "CPT: train the embeddings and LM head too, at this lower "
                                             "learning rate (0: frozen; lr / 10 is typical)",
                                        min=0.0, max=1.0)


@dataclass
class OutputConfig:
    dir: str = _f("", "Runs root folder (empty: the XDG data dir, or $TUITUNE_RUNS)")
    name: str = _f("", "Run name (empty: model and dataset names)")
    save_total_limit: int = _f(2, "Checkpoints kept (older ones are deleted)", min=1, max=1000)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def get(self, dotted: str) -> Any:
        section, name = dotted.split(".")
        return getattr(getattr(self, section), name)


SECTION_HELP = {
    "model": "Which model to fine-tune and how to load it",
    "data": "The training data and how it is formatted",
    "lora": "The low-rank adapters",
    "training": "Optimisation and memory",
    "output": "Where the run directory goes",
}


@dataclass(frozen=True)
class FieldSpec:
    section: str
    name: str
    type: type
    default: Any
    help: str
    min: float | None
    max: float | None
    choices: list[str] | None
    check: Any = None  # a custom check(value) -> (value, problem | None) replacing the type's

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def _type_of(f: dataclasses.Field) -> type:
    return {"str": str, "int": int, "float": float, "bool": bool, "list": list}[str(f.type)]


def field_specs() -> Iterator[FieldSpec]:
    """Every config field in file order, with its default, range and help."""
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            yield FieldSpec(section.name, f.name, _type_of(f), default, f.metadata["help"],
                            f.metadata["min"], f.metadata["max"], f.metadata["choices"],
                            f.metadata["check"])


FIELDS: dict[str, FieldSpec] = {spec.key: spec for spec in field_specs()}


class ConfigError(TuituneError):
    """Every bad field at once, by name."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} invalid field(s):\n{lines}\n"
                         "Fix them (`tuitune init-config` prints every field with its range) and try again.")


def check_value(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """Coerce `value` to the field's type; return (value, problem or None)."""
    name = spec.key
    if spec.check is not None:
        return spec.check(value)
    if spec.type is bool:
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1"), None
        return value, f"{name} must be true or false, got {value!r}"
    if spec.type in (int, float):
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if spec.type is float else int(str(value).strip()) if isinstance(value, str) else value
            if spec.type is int and (isinstance(number, float) and not number.is_integer()):
                raise ValueError
            number = spec.type(number)
        except (TypeError, ValueError):
            kind = "an integer" if spec.type is int else "a number"
            return value, f"{name} must be {kind}, got {value!r}"
        if spec.type is float and not math.isfinite(number):
            return value, f"{name} must be a finite number, got {value!r}"
        if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
            return number, f"{name} must be between {_fmt(spec.min)} and {_fmt(spec.max)}, got {_fmt(number)}"
        return number, None
    if spec.type is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return value, f"{name} must be a list of names, got {value!r}"
        if not value:
            return value, f"{name} must name at least one module"
        return list(value), None
    if not isinstance(value, str):
        return value, f"{name} must be text, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return value, f"{name} must be one of {', '.join(spec.choices)}; got {value!r}"
    return value, None


def _fmt(number: float | None) -> str:
    if number is None:
        return "?"
    if isinstance(number, int):
        return str(number)
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:g}"


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from nested dicts, reporting every unknown or invalid field at once."""
    problems: list[str] = []
    config = Config()
    for section, values in (data or {}).items():
        if section not in SECTION_HELP:
            problems.append(f"[{section}] is not a section (sections: {', '.join(SECTION_HELP)})")
            continue
        if not isinstance(values, dict):
            problems.append(f"[{section}] must be a table of fields")
            continue
        for name, value in values.items():
            spec = FIELDS.get(f"{section}.{name}")
            if spec is None:
                known = ", ".join(k.split(".")[1] for k in FIELDS if k.startswith(section + "."))
                problems.append(f"{section}.{name} is not a field (fields of [{section}]: {known})")
                continue
            coerced, problem = check_value(spec, value)
            if problem:
                problems.append(problem)
            else:
                setattr(getattr(config, section), name, coerced)
    problems.extend(cross_field_problems(config))
    if problems:
        raise ConfigError(problems, source)
    return config


def cross_field_problems(config: Config) -> list[str]:
    problems = []
    has_eval = config.data.eval_fraction > 0 or bool(config.data.eval_path)
    if config.training.eval_steps and not has_eval:
        problems.append("training.eval_steps needs eval data: data.eval_fraction > 0 or data.eval_path")
    if config.training.early_stopping_patience and not has_eval:
        problems.append("training.early_stopping_patience needs eval data: data.eval_fraction > 0 or "
                        "data.eval_path")
    if config.data.eval_path and config.data.eval_fraction > 0:
        problems.append("data.eval_path and data.eval_fraction both set: use one (set eval_fraction to 0)")
    problems.extend(_distributed_problems(config.training))
    if config.training.embedding_learning_rate and config.training.objective in ("sft", "dpo", "orpo"):
        problems.append(f"training.embedding_learning_rate applies to continued pretraining (objective cpt "
                        f"or auto with plain text), not {config.training.objective}; set it to 0")
    return problems


def _distributed_problems(t: TrainingConfig) -> list[str]:
    problems = []
    if (parse_gpus(t.gpus)[0] > 1 or t.nnodes > 1) and t.distributed == "none":
        what = f"training.nnodes = {t.nnodes}" if t.nnodes > 1 else f"training.gpus = {t.gpus}"
        problems.append(f"{what} needs training.distributed (ddp, fsdp, zero2 or zero3) to train on several "
                        "GPUs or machines; or set gpus and nnodes to 1")
    if t.node_rank >= t.nnodes:
        problems.append(f"training.node_rank ({t.node_rank}) must be below training.nnodes ({t.nnodes})")
    if t.nnodes > 1 and not t.rdzv_endpoint:
        problems.append("training.nnodes > 1 needs training.rdzv_endpoint (host:port of node 0, reachable from "
                        "every machine)")
    if t.distributed == "fsdp" and t.device == "cpu":
        problems.append("training.distributed = fsdp needs CUDA GPUs (Accelerate turns FSDP2 on only for GPUs); "
                        "on the CPU ddp, zero2 and zero3 run (over the gloo backend)")
    return problems


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TuituneError(f"Config file {path} does not exist. Create one with "
                           f"`tuitune init-config > {path.name}`.") from None
    except OSError as exc:
        raise TuituneError(f"Config file {path} cannot be read ({exc.strerror}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TuituneError(f"Config file {path} is not valid TOML: {exc}. "
                           "Compare it with `tuitune init-config`.") from None
    return config_from_dict(data, source=str(path))


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy with dotted-key overrides (`{"model.name": ...}`) applied and validated."""
    data = config.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        section, name = key.split(".")
        data.setdefault(section, {})[name] = value
    return config_from_dict(data, source="command-line options")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_toml(config: Config, *, commented: bool = True) -> str:
    """Serialise a config; with `commented`, each field gets its help and range as a comment."""
    lines: list[str] = []
    if commented:
        lines += ["# tuitune run configuration. Every field is optional; shown values are the defaults.", ""]
    for section in SECTION_HELP:
        if commented:
            lines.append(f"# {SECTION_HELP[section]}")
        lines.append(f"[{section}]")
        for spec in FIELDS.values():
            if spec.section != section:
                continue
            if commented:
                lines.append(f"# {spec.help}{_range_text(spec)}")
            lines.append(f"{spec.name} = {_toml_value(config.get(spec.key))}")
        lines.append("")
    return "\n".join(lines)


def _range_text(spec: FieldSpec) -> str:
    if spec.choices:
        return f" ({' | '.join(spec.choices)})"
    if spec.min is not None:
        return f" ({_fmt(spec.min)} to {_fmt(spec.max)})"
    return ""


def save_config(config: Config, path: Path) -> None:
    from tuitune.paths import atomic_write_text

    atomic_write_text(Path(path), to_toml(config, commented=True))
