"""Models screen: the catalog and local models, with the VRAM fit of QLoRA, LoRA and full fine-tuning.

The fit is pure arithmetic (tuitune.fit) against a memory budget: a GPU's free memory picked in the
Select, or any number typed into the VRAM field. Changing sequence length, batch or rank recomputes
every row at once. Enter on a row makes that model the run's model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.validation import Integer, Number
from textual.widgets import DataTable, Footer, Header, Input, Label, Select, Static

from tuitune.preflight import gpu_plan
from tuitune.ui.widgets.theme_colors import theme_colors

METHOD_LABELS = {"qlora": "QLoRA", "lora": "LoRA", "full": "Full"}
CUSTOM = "custom"
DEFAULT_VRAM_GB = 24.0  # what the VRAM field says with no GPU: a common consumer card
SHORT_PARTS = {"gradients": "grads", "optimizer": "optim", "activations": "acts", "overhead": "other"}
NAME_WIDTH = 24  # longer model names (local folders) are shortened in the table, shown whole below


@dataclass(frozen=True)
class FitQuery:
    free_gb: float
    seq: int
    batch: int
    rank: int
    checkpointing: str = "standard"
    kernels: bool = True          # training.use_kernels: the fused path where the architecture has it
    optimizer: str = "adamw_8bit"
    config: Any = None            # the run's config: under auto, each row is planned as the trainer plans it


@dataclass
class FitCell:
    status: str  # fits | tight | does not fit | n/a
    total_gb: float | None
    largest: tuple[int, int] | None
    breakdown: dict[str, float] | None = None
    checkpointing: str = ""  # the recomputation mode estimated (auto's pick for this model and method)
    policy: str = ""  # under auto: the whole pick in words (mode, CUDA graphs, base weights kept dequantized)


def compute_fits(spec: Any, query: FitQuery) -> dict[str, FitCell]:
    """Every method for one model against the budget (n/a where the model's shape is unknown)."""
    from tuitune import fit

    row = fit.fit_row(spec, query.free_gb, batch=query.batch, seq=query.seq, rank=query.rank,
                      checkpointing=query.checkpointing, fused_loss=None if query.kernels else False,
                      optimizer=query.optimizer)
    cells = {}
    for method, result in row.methods.items():
        if result.status == "unknown":
            cells[method] = FitCell("n/a", result.estimate.total_gb, None)
        elif query.checkpointing == "auto" and query.config is not None and method in ("qlora", "lora"):
            cells[method] = planned_cell(spec, method, query, result.largest)
        else:
            cells[method] = FitCell(result.status, result.estimate.total_gb, result.largest,
                                    dict(result.estimate.breakdown), result.checkpointing)
    return cells


def planned_cell(spec: Any, method: str, query: FitQuery, largest: tuple[int, int] | None) -> FitCell:
    """The cell of what the trainer would pick under `auto` for this model in the budget: besides the
    recomputation mode, CUDA graphs for a launch-bound step and QLoRA's base weights kept dequantized,
    each with its memory. The largest shape is still the most any mode fits."""
    from tuitune import fit
    from tuitune.preflight import memory_policy, planned_fit_for_model

    config = query.config
    config = replace(config, model=replace(config.model, max_seq_length=query.seq),
                     training=replace(config.training, batch_size=query.batch), lora=replace(config.lora, r=query.rank))
    plan, estimate = planned_fit_for_model(config, spec, model_ref(spec), method, query.free_gb)
    return FitCell(fit.fit_status(estimate.total_gb, query.free_gb), estimate.total_gb, largest,
                   dict(estimate.breakdown), plan.checkpointing, memory_policy(plan))


def spec_key(spec: Any) -> str:
    return f"{spec.name}|{spec.path or ''}"


def model_ref(spec: Any) -> str:
    """What goes into config.model.name: the catalog name, or the folder/file of a local model."""
    return spec.path if spec.source == "local" and spec.path else spec.name


class ModelsScreen(Screen):
    """Catalog + local models with per-method fit for the chosen memory budget."""

    TITLE = "Models"
    BINDINGS = [
        Binding("enter", "choose", "Use model", id="models.choose", show=False),
        Binding("ctrl+r", "rescan", "Rescan", id="models.rescan", tooltip="Look for local models again"),
        Binding("ctrl+f", "focus_folder", "Folder", id="models.folder", show=False,
                tooltip="Type a folder to scan for models"),
    ]

    def __init__(self) -> None:
        super().__init__(id="models-screen")
        self.specs: list[Any] = []
        self.fits: dict[str, dict[str, FitCell]] = {}
        self.query_values: FitQuery | None = None
        self._gpus: list[Any] = []

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        config = self.app.config
        yield Header(icon="▣")
        with Horizontal(id="models-controls", classes="controls"):
            yield Label("GPU", classes="control-label")
            yield Select([("Custom VRAM", CUSTOM)], value=CUSTOM, allow_blank=False, id="gpu-select",
                         compact=True)
            yield Label("VRAM GiB", classes="control-label")
            yield Input(str(DEFAULT_VRAM_GB), id="vram", compact=True, validators=[Number(0.1, 100000)],
                        tooltip="Memory budget in GiB (a GPU's free memory, or any size to plan for)")
        with Horizontal(id="models-shape", classes="controls"):
            yield Label("Seq", classes="control-label")
            yield Input(str(config.model.max_seq_length), id="seq", compact=True,
                        validators=[Integer(16, 131072)], tooltip="Sequence length in tokens")
            yield Label("Batch", classes="control-label")
            yield Input(str(config.training.batch_size), id="batch", compact=True,
                        validators=[Integer(1, 4096)], tooltip="Examples per forward pass")
            yield Label("Rank", classes="control-label")
            yield Input(str(config.lora.r), id="rank", compact=True,
                        validators=[Integer(1, 1024)], tooltip="LoRA rank")
            yield Label("Folder", classes="control-label")
            yield Input(placeholder="more models: a folder or .gguf, Enter", id="folder", compact=True)
        yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="model-detail")
        yield Footer()

    # ------------------------------------------------------------------ widgets
    @property
    def table(self) -> DataTable:
        return self.query_one("#models-table", DataTable)

    @property
    def detail(self) -> Static:
        return self.query_one("#model-detail", Static)

    @property
    def gpu_select(self) -> Select:
        return self.query_one("#gpu-select", Select)

    def shape_input(self, name: str) -> Input:
        """One of the budget and shape fields: vram, seq, batch, rank or folder."""
        return self.query_one(f"#{name}", Input)

    def on_mount(self) -> None:
        table = self.table
        # the fit columns come right after the size, so at 80 columns they are on screen
        table.add_column(" ", key="chosen", width=1)
        table.add_column("Model", key="name", width=NAME_WIDTH)
        table.add_column("Params", key="params")
        for method, label in METHOD_LABELS.items():
            table.add_column(label, key=method)
        table.add_column("Ctx", key="context")
        table.add_column("Source", key="source")
        table.focus()
        self.theme_signal = self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refill())
        self.app.config_changed_signal.subscribe(self, lambda _config: self.refill())
        self.load_gpus()
        self.load_models()

    # ------------------------------------------------------------------ data
    @work(thread=True, exclusive=True, group="models-gpus", name="GPU list", exit_on_error=False)
    def load_gpus(self) -> None:
        snapshot = self.app.gpu_source.snapshot()
        self.app.call_from_thread(self.show_gpus, list(snapshot.gpus or []))

    def show_gpus(self, gpus: list[Any]) -> None:
        self._gpus = gpus
        select = self.gpu_select
        options = [(f"{g.index}: {g.name} ({_gb(g.memory_free_gb)} free)", str(g.index)) for g in gpus]
        select.set_options(options + [("Custom VRAM", CUSTOM)])
        if gpus:
            select.value = str(gpus[0].index)  # fills the VRAM field via on_select_changed
        else:
            self.recompute()

    @work(thread=True, exclusive=True, group="models-scan", name="model scan", exit_on_error=False)
    def load_models(self, folder: str = "") -> None:
        from tuitune.catalog import all_models

        specs = all_models([folder] if folder else [])
        self.app.call_from_thread(self.show_models, specs, folder)

    def show_models(self, specs: list[Any], folder: str) -> None:
        local = sum(1 for s in specs if s.source == "local")
        self.specs = specs
        self.fits = {}
        if folder:
            self.notify(f"{local} local model(s) found (HF cache, converted, {folder})", title="Models")
        self.refill()
        self.recompute()

    def current_query(self) -> FitQuery | None:
        """The budget and shape typed in, or None while a field is invalid."""
        values = {}
        for field in ("vram", "seq", "batch", "rank"):
            widget = self.shape_input(field)
            result = widget.validate(widget.value)
            if result is not None and not result.is_valid:
                return None
            values[field] = widget.value
        plan = gpu_plan(self.app.config)  # what the trainer picks for `auto` on a GPU
        # auto checkpointing depends on each model's fit, so each row resolves it against the budget
        mode = self.app.config.training.gradient_checkpointing
        return FitQuery(float(values["vram"]), int(values["seq"]), int(values["batch"]), int(values["rank"]),
                        mode if mode == "auto" else plan.checkpointing, self.app.config.training.use_kernels,
                        plan.optimizer, self.app.config)

    def recompute(self) -> None:
        query = self.current_query()
        if query is None:
            self.detail.update(
                "[b]Fix the highlighted field[/b]: VRAM 0.1–100000 GiB, seq 16–131072, batch 1–4096, rank 1–1024.")
            return
        self.query_values = query
        self.fit_all(list(self.specs), query)

    @work(thread=True, exclusive=True, group="models-fit", name="fit estimate", exit_on_error=False)
    def fit_all(self, specs: list[Any], query: FitQuery) -> None:
        fits = {spec_key(s): compute_fits(s, query) for s in specs}
        self.app.call_from_thread(self.show_fits, fits, query)

    def show_fits(self, fits: dict[str, dict[str, FitCell]], query: FitQuery) -> None:
        if query != self.query_values:
            return  # an older computation finished late
        self.fits = fits
        self.refill()

    # ------------------------------------------------------------------ table
    def refill(self) -> None:
        table = self.table
        colors = theme_colors(self.app)
        chosen_name = self.app.config.model.name
        cursor_key = None
        if table.row_count and table.cursor_row < table.row_count:
            cursor_key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        table.clear()
        for index, spec in enumerate(self.specs):
            cells = self.fits.get(spec_key(spec), {})
            chosen = "●" if model_ref(spec) == chosen_name or spec.name == chosen_name else ""
            row = [chosen, Text(_short(spec.name)), spec.params_label]  # a local folder's name is not markup
            row += [fit_text(cells.get(m), colors) for m in METHOD_LABELS]
            row += [_ctx(spec.context), Text(spec.source)]
            table.add_row(*row, key=str(index))
        if cursor_key is not None and cursor_key.isdigit() and int(cursor_key) < table.row_count:
            table.move_cursor(row=int(cursor_key))
        self.show_detail()

    def highlighted_spec(self) -> Any:
        table = self.table
        if not self.specs or not table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.specs[int(key)]

    def show_detail(self) -> None:
        spec = self.highlighted_spec()
        detail = self.detail
        if spec is None:
            detail.update("Looking for models…")
            return
        query = self.query_values
        cells = self.fits.get(spec_key(spec), {})
        colors = theme_colors(self.app)
        text = Text.assemble((spec.name, "bold"), f"  {spec.family} · {spec.params_label} · "
                             f"context {_ctx(spec.context)}  ", (spec.path or spec.hf_id or "", colors["muted"]))
        if query is not None:
            text.append(f"\nBudget {query.free_gb:g} GiB · seq {query.seq} · batch {query.batch} · rank {query.rank}")
            text.append("  (Enter: use this model)", style=colors["muted"])
            for method, label in METHOD_LABELS.items():
                cell = cells.get(method)
                text.append(f"\n  {label:<6}")
                text.append_text(fit_text(cell, colors, long=True))
            qlora = cells.get("qlora")
            if qlora is not None and qlora.breakdown:
                parts = " · ".join(f"{SHORT_PARTS.get(name, name)} {gb:.1f}"
                                   for name, gb in qlora.breakdown.items() if gb >= 0.05)
                text.append(f"\n  QLoRA GiB: {parts}", style=colors["muted"])
            if query.checkpointing == "auto" and qlora is not None and qlora.checkpointing:
                text.append(f"\n  Auto picks {qlora.policy or qlora.checkpointing + ' checkpointing'} for QLoRA "
                            "(the fastest that fits this budget)", style=colors["muted"])
            several = several_gpus_text(spec, self.app.config, query)
            if several:
                text.append(f"\n  {several}")
        detail.update(text)

    # ------------------------------------------------------------------ events
    @on(DataTable.RowHighlighted, "#models-table")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    @on(DataTable.RowSelected, "#models-table")
    def _selected(self, _event: DataTable.RowSelected) -> None:
        self.action_choose()

    @on(Select.Changed, "#gpu-select")
    def _gpu_changed(self, event: Select.Changed) -> None:
        if event.value == CUSTOM or event.value is Select.BLANK:
            return
        gpu = next((g for g in self._gpus if str(g.index) == event.value), None)
        if gpu is not None and gpu.memory_free_gb is not None:
            vram = self.shape_input("vram")
            with vram.prevent(Input.Changed):
                vram.value = f"{gpu.memory_free_gb:.1f}"
        self.recompute()

    @on(Input.Changed, "#vram")
    def _vram_typed(self, _event: Input.Changed) -> None:
        select = self.gpu_select
        if select.value != CUSTOM:
            with select.prevent(Select.Changed):
                select.value = CUSTOM
        self.recompute()

    @on(Input.Changed, "#seq, #batch, #rank")
    def _shape_typed(self, _event: Input.Changed) -> None:
        self.recompute()

    @on(Input.Submitted, "#folder")
    def _folder_submitted(self, event: Input.Submitted) -> None:
        self.load_models(event.value.strip())

    def action_choose(self) -> None:
        spec = self.highlighted_spec()
        if spec is None:
            return
        self.app.config.model.name = model_ref(spec)
        self.app.config_edited()
        self.notify(f"The run will fine-tune {spec.name}", title="Model chosen")

    def action_rescan(self) -> None:
        self.load_models(self.shape_input("folder").value.strip())

    def action_focus_folder(self) -> None:
        self.shape_input("folder").focus()


def fit_text(cell: FitCell | None, colors: dict[str, str], *, long: bool = False) -> Text:
    """"fits 9.2G 8×2048" coloured by status; long form for the detail panel."""
    if cell is None:
        return Text("…", style="dim")
    if cell.status == "n/a":
        return Text("n/a (shape unknown)" if long else "n/a", style="dim")
    color = {"fits": colors["fits"], "tight": colors["tight"]}.get(cell.status, colors["no_fit"])
    status = "no fit" if cell.status == "does not fit" and not long else cell.status
    text = Text(status, style=f"bold {color}")
    text.append(f" {cell.total_gb:.1f}G" if not long else f", needs {cell.total_gb:.1f} GiB")
    if cell.largest:
        batch, seq = cell.largest
        text.append(f" {batch}×{seq}" if not long else f"; largest that fits: batch {batch} × seq {seq}")
    elif long:
        text.append("; nothing fits at any batch or length")
    return text


def several_gpus_text(spec: Any, config: Any, query: FitQuery) -> str | None:
    """The per-GPU fit line when the run's config asks for several GPUs (training.gpus x nnodes)."""
    from tuitune import fit
    from tuitune.distributed_fields import parse_gpus
    from tuitune.parallel_fit import several_gpus_line

    gpus = parse_gpus(config.training.gpus)[0] * config.training.nnodes
    method = config.model.method if config.model.method in ("lora", "qlora") else "qlora"
    checkpointing = query.checkpointing if query.checkpointing != "auto" else "standard"
    return several_gpus_line(spec, method, gpus, config.training.distributed, query.free_gb, batch=query.batch,
                             seq=query.seq, rank=query.rank, checkpointing=checkpointing,
                             optimizer=query.optimizer, fused_loss=query.kernels and fit.kernels_supported(spec))


def _short(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def _gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} GiB"


def _ctx(tokens: int) -> str:
    if not tokens:
        return "?"
    return f"{tokens // 1024}k" if tokens >= 1024 and tokens % 1024 == 0 else str(tokens)
