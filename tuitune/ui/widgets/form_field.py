"""One config field in the hyperparameters form: its name, editor, help text, range and problem.

The editor follows the field's type: a Switch for booleans, a Select for fields with choices, an
Input with a validator (tuitune.config.check_value, the same rule the config loader applies) for
everything else. The field posts `FormField.Changed` with the coerced value and its problem (None
when valid) whenever the user edits it.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select, Static, Switch

from tuitune.config import FieldSpec, check_value


def number_text(number: float | None) -> str:
    """1 for 1.0, 1e-07 for 1e-7, ? for no bound."""
    if number is None:
        return "?"
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:g}" if isinstance(number, float) else str(number)


def range_text(spec: FieldSpec) -> str:
    """The allowed values of a field, for the form and for messages."""
    if spec.choices:
        return "one of " + ", ".join(spec.choices)
    if spec.type is bool:
        return "on or off"
    if spec.min is not None or spec.max is not None:
        return f"{number_text(spec.min)} to {number_text(spec.max)}"
    if spec.type is list:
        return "comma-separated names"
    return "text"


def value_to_text(value: Any) -> str:
    """How a config value is shown in an Input."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return number_text(value)
    return "" if value is None else str(value)


class ConfigValueValidator(Validator):
    """Validates Input text with the config's own check for one field."""

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__()
        self.spec = spec

    def validate(self, value: str) -> ValidationResult:
        _, problem = check_value(self.spec, value)
        return self.failure(problem) if problem else self.success()


class FormField(Vertical):
    """A labelled editor for one FieldSpec."""

    DEFAULT_CSS = """
    FormField {
        height: auto;
        padding: 0 1;
    }
    FormField > Horizontal {
        height: auto;
    }
    FormField .field-name {
        width: 22;
        text-style: bold;
    }
    FormField Input, FormField Select {
        width: 1fr;
    }
    FormField Switch {
        width: auto;
        height: 1;
        border: none;
        padding: 0;
    }
    FormField .field-help {
        padding-left: 22;
        color: $text-muted;
    }
    FormField.-invalid .field-help {
        color: $error;
    }
    """

    class Changed(Message):
        """The user changed a field: `value` is coerced when `problem` is None."""

        def __init__(self, field: "FormField", value: Any, problem: str | None) -> None:
            super().__init__()
            self.field = field
            self.value = value
            self.problem = problem

        @property
        def control(self) -> "FormField":
            return self.field

    def __init__(self, spec: FieldSpec, value: Any, **kwargs: Any) -> None:
        kwargs.setdefault("id", self.id_for(spec.key))
        super().__init__(**kwargs)
        self.spec = spec
        self._initial = value
        self.problem: str | None = None

    @staticmethod
    def id_for(key: str) -> str:
        """The widget id of the row of the field `key` ("training.batch_size" -> "field-training-batch_size")."""
        return "field-" + key.replace(".", "-")

    @property
    def editor_id(self) -> str:
        return "edit-" + self.spec.key.replace(".", "-")

    @property
    def editor(self) -> Input | Select | Switch:
        """The Switch (booleans), Select (choices) or Input (everything else) that edits the value."""
        return self.query_one(f"#{self.editor_id}", (Switch, Select, Input))

    @property
    def help_line(self) -> Static:
        """The field's help, or its problem while the value is invalid."""
        return self.query_one(".field-help", Static)

    def compose(self) -> ComposeResult:
        spec = self.spec
        with Horizontal():
            yield Label(spec.name, classes="field-name")
            if spec.type is bool:
                yield Switch(value=bool(self._initial), id=self.editor_id, animate=False)
            elif spec.choices:
                yield Select([(c, c) for c in spec.choices], value=self._initial, allow_blank=False,
                             id=self.editor_id, compact=True)
            else:
                yield Input(value_to_text(self._initial), id=self.editor_id,
                            validators=[ConfigValueValidator(spec)],
                            tooltip=f"{spec.help} ({range_text(spec)})", compact=True)
        yield Static(self.help_text, classes="field-help", markup=False)

    @property
    def help_text(self) -> str:
        return f"{self.spec.help} [{range_text(self.spec)}]"

    # reading and writing
    def current(self) -> tuple[Any, str | None]:
        """The editor's value coerced to the field's type, and its problem (None when valid)."""
        spec = self.spec
        if spec.type is bool:
            return bool(self.editor.value), None
        return check_value(spec, self.editor.value)

    def set_value(self, value: Any) -> None:
        """Show `value` in the editor (presets, loaded configs).

        The editor's own change message follows later and posts an equal Changed, which is harmless.
        """
        editor = self.editor
        if isinstance(editor, Switch):
            editor.value = bool(value)
        elif isinstance(editor, Select):
            editor.value = value
        else:
            editor.value = value_to_text(value)
        self._show_problem(self.current()[1])

    def _show_problem(self, problem: str | None) -> None:
        """The help line turns into the problem while the value is invalid."""
        if problem == self.problem:
            return
        self.problem = problem
        self.set_class(problem is not None, "-invalid")
        self.help_line.update(problem or self.help_text)

    def _report(self) -> None:
        value, problem = self.current()
        self._show_problem(problem)
        self.post_message(self.Changed(self, value, problem))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._report()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._report()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._report()
