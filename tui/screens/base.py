"""What every wizard step shares: title, body, field errors, Back / Next, and the way home."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Input, Static

from tui.client import ApiClient, ApiError

if TYPE_CHECKING:
    from tui.app import SetupConsole


class StepScreen(Screen[None]):
    """One step. In the wizard, Next goes on; opened from the status console, it goes back."""

    KEY: ClassVar[str] = ""  # catalog key of the step's title
    # API field path prefix -> input widget id, to mark the input a refusal names
    FIELD_INPUTS: ClassVar[dict[str, str]] = {}
    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: a focused table or list must not swallow the wizard's paging keys
        Binding("pagedown", "next", "next", show=False, priority=True),
        Binding("pageup", "back", "back", show=False, priority=True),
        Binding("escape", "back", "back", show=False),
    ]

    def __init__(self, single: bool = False) -> None:
        super().__init__()
        self.single = single

    @property
    def console(self) -> SetupConsole:
        return cast("SetupConsole", self.app)

    @property
    def client(self) -> ApiClient:
        return self.console.client

    def t(self, key: str, **values: object) -> str:
        return self.console.t(key, **values)

    def compose(self) -> ComposeResult:
        steps = self.console.wizard_steps
        position = "" if self.single else f"  ({steps.index(type(self)) + 1}/{len(steps)})"
        yield Static(f"edgepbx · {self.t(self.KEY)}{position}", id="title")
        with VerticalScroll(id="body", can_focus=False):
            yield from self.body()
        yield Static("", id="error")
        with Horizontal(id="nav"):
            yield Button(self.t("nav.back"), id="back")
            if self.can_skip():
                yield Button(self.t("nav.skip"), id="skip")
            yield Button(
                self.t("nav.done" if self.single else "nav.next"), id="next", variant="primary"
            )

    def body(self) -> ComposeResult:
        yield from ()

    def can_skip(self) -> bool:
        return False

    async def on_mount(self) -> None:
        await self.load()

    async def load(self) -> None:
        """Read what the step shows from the API."""

    async def submit(self) -> bool:
        """Send the step's input to the API; False keeps the installer on the step."""
        return True

    def show_error(self, error: ApiError | str) -> None:
        for widget in self.query(Input):
            widget.remove_class("-invalid")
        if isinstance(error, str):
            self.query_one("#error", Static).update(error)
            return
        lines = []
        for field, message in error.fields.items():
            for prefix, widget_id in self.FIELD_INPUTS.items():
                if field == prefix or field.startswith(prefix + "."):
                    self.query_one(f"#{widget_id}", Input).add_class("-invalid")
                    lines.append(f"{self.t('field.' + widget_id)}: {message}")
                    break
            else:
                lines.append(f"{field}: {message}" if field else message)
        self.query_one("#error", Static).update("\n".join(lines) or str(error))

    def clear_error(self) -> None:
        self.show_error("")

    async def action_next(self) -> None:
        try:
            ok = await self.submit()
        except ApiError as exc:
            self.show_error(exc)
            return
        if ok:
            await self.console.step_done(self, forward=True)

    async def action_back(self) -> None:
        await self.console.step_done(self, forward=False)

    async def action_skip(self) -> None:
        await self.console.step_done(self, forward=True)

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        handlers = {"next": self.action_next, "back": self.action_back, "skip": self.action_skip}
        handler = handlers.get(event.button.id or "")
        if handler is not None:
            event.stop()
            await handler()
        else:
            try:
                await self.pressed(event.button.id or "")
            except ApiError as exc:
                self.show_error(exc)

    async def pressed(self, button_id: str) -> None:
        """A button of the step's own body."""

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        self.focus_next()
