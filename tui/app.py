"""The setup console: the first-boot wizard, then the status console.

`make_app` builds it from an API client and settings; it never reaches into the box other
than through that client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static

from appliance.api.schemas.setup import Language
from tui.client import ApiClient, ApiError
from tui.i18n import translate
from tui.screens.base import StepScreen
from tui.screens.status import StatusScreen
from tui.screens.wizard import (
    AdminStep,
    ExtensionsStep,
    KeyStep,
    LanguageStep,
    LoginScreen,
    NetworkStep,
    PairingStep,
    SummaryStep,
    SystemStep,
)

AREAS: dict[str, type[StepScreen]] = {
    "language": LanguageStep,
    "network": NetworkStep,
    "system": SystemStep,
    "admin": AdminStep,
    "key": KeyStep,
    "pairing": PairingStep,
    "extensions": ExtensionsStep,
}

CSS = """
#title { background: $primary; color: $text; padding: 0 1; text-style: bold; }
#body { padding: 1 2; }
#error { color: $error; padding: 0 2; height: auto; }
#nav { height: 3; align-horizontal: right; }
#nav Button { margin: 0 1; }
.field { height: 1; margin-bottom: 1; }
.field .label { width: 26; padding: 0 1 0 0; }
.field Input { width: 1fr; height: 1; border: none; padding: 0 1; background: $boost; }
.field Input:focus { background: $primary 40%; }
.field Select { width: 1fr; }
.field.tall { height: 3; }
Input.-invalid { background: $error 40%; }
.actions { height: 3; }
#links { height: auto; max-height: 8; }
#created { height: auto; max-height: 12; }
.section { text-style: bold; padding: 1 1 0 1; }
#numbers { height: 4; }
.number { width: 1fr; border: round $primary; padding: 0 1; }
#alarms { padding: 0 1; height: auto; }
#keys { dock: bottom; padding: 0 1; color: $text-muted; }
#tables { height: auto; max-height: 16; }
#tables Vertical { height: auto; }
#phones, #gateways { height: auto; max-height: 12; }
#phones-box { width: 3fr; }
#gateways-box { width: 2fr; }
"""


@dataclass
class ConsoleSettings:
    refresh_seconds: float = 2.0
    confirm_within: float = 120.0  # seconds to keep a tried network before it rolls back
    export_dir: str = "/media/usb"


class SetupConsole(App[None]):
    CSS = CSS
    TITLE = "edgepbx"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", "quit", show=False)]
    wizard_steps: ClassVar[list[type[StepScreen]]] = [
        LanguageStep,
        AdminStep,  # first: every later step needs the admin's login
        NetworkStep,
        SystemStep,
        KeyStep,
        PairingStep,
        ExtensionsStep,
        SummaryStep,
    ]

    def __init__(self, client: ApiClient, settings: ConsoleSettings) -> None:
        super().__init__()
        self.client = client
        self.language: Language = "en"
        self.refresh_seconds = settings.refresh_seconds
        self.confirm_within = settings.confirm_within
        self.export_dir = settings.export_dir

    def t(self, key: str, **values: object) -> str:
        return translate(self.language, key, **values)

    async def on_mount(self) -> None:
        try:
            welcome = await self.client.welcome()
        except ApiError as exc:
            await self.push_screen(_Unreachable(self.t("status.unreachable", error=str(exc))))
            return
        self.language = welcome.language
        await self.push_screen(LanguageStep() if welcome.first_boot else LoginScreen())

    async def step_done(self, screen: StepScreen, forward: bool) -> None:
        if isinstance(screen, LoginScreen):
            state = await self.client.setup_state()
            self.language = state.language
            # not awaited: the old screen's own handler is what runs this
            self.switch_screen(StatusScreen() if state.completed else NetworkStep())
            return
        if screen.single:
            self.pop_screen()
            return
        steps = self.wizard_steps
        index = steps.index(type(screen)) + (1 if forward else -1)
        if index < 0:
            return
        if index >= len(steps):
            self.switch_screen(StatusScreen())
            return
        self.switch_screen(steps[index]())

    async def open_area(self, area: str) -> None:
        self.push_screen(AREAS[area](single=True))


class _Unreachable(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "app.quit", "quit", show=False)]

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        yield Static(self.message, id="error")


def make_app(client: ApiClient, settings: ConsoleSettings | None = None) -> SetupConsole:
    return SetupConsole(client, settings or ConsoleSettings())
