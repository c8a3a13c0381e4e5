"""The status console: phones, calls, gateways, sync lag, disk and alarms, refreshed live."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from appliance.api.schemas.setup import Overview
from tui.client import ApiError

if TYPE_CHECKING:
    from tui.app import SetupConsole

GIB = 1024**3


class StatusScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "open('network')", "network", show=False),
        Binding("s", "open('system')", "system", show=False),
        Binding("a", "open('admin')", "admin", show=False),
        Binding("k", "open('key')", "key", show=False),
        Binding("p", "open('pairing')", "pairing", show=False),
        Binding("e", "open('extensions')", "extensions", show=False),
        Binding("l", "open('language')", "language", show=False),
        Binding("r", "refresh_now", "refresh", show=False),
        Binding("q", "app.quit", "quit", show=False),
    ]

    @property
    def console(self) -> SetupConsole:
        return cast("SetupConsole", self.app)

    def t(self, key: str, **values: object) -> str:
        return self.console.t(key, **values)

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        with Horizontal(id="numbers"):
            yield Static("", id="calls", classes="number")
            yield Static("", id="sync", classes="number")
            yield Static("", id="disk", classes="number")
        with Horizontal(id="tables"):
            with Vertical(id="phones-box"):
                yield Static(self.t("status.phones"), classes="section")
                yield DataTable(id="phones", cursor_type="none")
            with Vertical(id="gateways-box"):
                yield Static(self.t("status.gateways"), classes="section")
                yield DataTable(id="gateways", cursor_type="none")
        yield Static(self.t("status.alarms"), classes="section")
        yield Static("", id="alarms")
        yield Static(self.t("status.keys"), id="keys")

    async def on_mount(self) -> None:
        phones = self.query_one("#phones", DataTable)
        phones.add_columns(
            self.t("status.col.extension"), self.t("status.col.contact"), self.t("status.col.agent")
        )
        gateways = self.query_one("#gateways", DataTable)
        gateways.add_columns(
            self.t("status.col.gateway"),
            self.t("status.col.state"),
            self.t("status.col.signal"),
            self.t("status.col.sim"),
        )
        await self.refresh_data()
        self.set_interval(self.console.refresh_seconds, self.refresh_data)

    async def on_screen_resume(self) -> None:
        await self.refresh_data()

    async def action_refresh_now(self) -> None:
        await self.refresh_data()

    async def action_open(self, area: str) -> None:
        await self.console.open_area(area)

    async def refresh_data(self) -> None:
        try:
            overview = await self.console.client.overview()
        except ApiError as exc:
            self.query_one("#alarms", Static).update(self.t("status.unreachable", error=str(exc)))
            return
        self.show(overview)

    def show(self, o: Overview) -> None:
        self.query_one("#title", Static).update(
            f"edgepbx · {o.hostname or '-'} · {self.t('status.title')}"
        )
        self.query_one("#calls", Static).update(
            f"{self.t('status.calls')}: {'-' if o.active_calls is None else o.active_calls}\n"
            f"{self.t('status.registered')}: {len(o.phones)}"
        )
        lag = (
            self.t("status.sync_off")
            if o.sync_lag_seconds is None
            else self.t("status.sync_lag", seconds=f"{o.sync_lag_seconds:.1f}")
        )
        self.query_one("#sync", Static).update(f"{self.t('status.sync')}: {lag}")
        self.query_one("#disk", Static).update(
            self.t(
                "status.disk",
                used=f"{o.disk_used_percent:.0f}",
                free=f"{o.disk_free_bytes / GIB:.1f}",
            )
        )
        phones = self.query_one("#phones", DataTable)
        phones.clear()
        for p in o.phones:
            phones.add_row(p.extension, p.contact, p.user_agent or "-")
        gateways = self.query_one("#gateways", DataTable)
        gateways.clear()
        for g in o.gateways:
            signal = f"{g.signal}%" if g.signal is not None else "-"
            gateways.add_row(f"{g.name} ({g.kind})", g.state, signal, g.sim or "-")
        alarms = [f"[{self.t('severity.' + a.severity)}] {self.t_alarm(a.text)}" for a in o.alarms]
        self.query_one("#alarms", Static).update("\n".join(alarms) or self.t("status.no_alarms"))

    def t_alarm(self, text: str) -> str:
        key = "alarm." + text
        translated = self.t(key)
        return text if translated == key else translated
