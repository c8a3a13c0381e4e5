"""The first-boot wizard's steps. Each reads and writes through the API client only."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    Static,
)

from appliance.api.schemas.setup import Language, NetworkView, TrialInfo
from tui.i18n import LANGUAGES
from tui.screens.base import StepScreen


def _field(
    label: str, widget_id: str, value: str = "", password: bool = False, placeholder: str = ""
) -> ComposeResult:
    with Horizontal(classes="field"):
        yield Label(label, classes="label")
        yield Input(value=value, id=widget_id, password=password, placeholder=placeholder)


class LanguageStep(StepScreen):
    KEY = "step.language"

    def body(self) -> ComposeResult:
        yield Static(self.t("language.intro"))
        with RadioSet(id="language"):
            for code, name in LANGUAGES:
                yield RadioButton(name, value=code == self.console.language, id=f"lang-{code}")

    async def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        code: Language = "ru" if event.pressed.id == "lang-ru" else "en"
        if code != self.console.language:
            self.console.language = code
            if self.client.session is not None:  # before the first login it is sent later
                await self.client.set_language(code)
            await self.recompose()
            self.query_one(RadioSet).focus()

    async def submit(self) -> bool:
        if self.client.session is not None:
            await self.client.set_language(self.console.language)
        return True


class NetworkStep(StepScreen):
    KEY = "step.network"
    FIELD_INPUTS: ClassVar[dict[str, str]] = {
        "interfaces.0.name": "iface",
        "interfaces.0.voice_vlan.addresses": "vlan_address",
        "interfaces.0.voice_vlan": "vlan_id",
        "interfaces.0.addresses": "address",
        "interfaces.0.gateway": "gateway",
        "interfaces.0.dns": "dns",
    }
    view: NetworkView | None = None

    def can_skip(self) -> bool:
        return True

    def body(self) -> ComposeResult:
        yield DataTable(id="links", cursor_type="row")
        with Horizontal(classes="field tall"):
            yield Label(self.t("network.interface"), classes="label")
            yield Select[str]([], id="iface", allow_blank=True, prompt="-")
        with RadioSet(id="mode"):
            yield RadioButton(self.t("network.dhcp"), value=True, id="mode-dhcp")
            yield RadioButton(self.t("network.static"), id="mode-static")
        yield from _field(self.t("field.address"), "address", placeholder="192.168.1.10/24")
        yield from _field(self.t("field.gateway"), "gateway", placeholder="192.168.1.1")
        yield from _field(self.t("field.dns"), "dns", placeholder="192.168.1.1, 9.9.9.9")
        yield from _field(self.t("field.vlan_id"), "vlan_id", placeholder="1-4094")
        yield from _field(
            self.t("field.vlan_address"), "vlan_address", placeholder=self.t("network.vlan_hint")
        )
        with Horizontal(classes="actions"):
            yield Button(self.t("network.try"), id="try", variant="warning")
            yield Button(self.t("network.keep"), id="keep", disabled=True)
            yield Button(self.t("network.revert"), id="revert", disabled=True)
        yield Static("", id="trial")

    async def load(self) -> None:
        self.view = await self.client.network()
        table = self.query_one("#links", DataTable)
        table.clear(columns=True)
        table.add_columns(
            self.t("network.col.name"),
            self.t("network.col.mac"),
            self.t("network.col.link"),
            self.t("network.col.addresses"),
        )
        for link in self.view.links:
            state = self.t("network.link.up" if link.carrier else "network.link.down")
            table.add_row(link.name, link.mac, state, ", ".join(link.addresses) or "-")
        select = self.query_one("#iface", Select)
        select.set_options([(x.name, x.name) for x in self.view.links if x.kind != "vlan"])
        if self.view.links:
            select.value = self.view.links[0].name
        self._show_trial(self.view.trial)

    def document(self) -> dict[str, Any]:
        """The form as the API's network document (one interface: the one chosen)."""
        name = self.query_one("#iface", Select).value
        iface: dict[str, Any] = {"name": name if isinstance(name, str) else ""}
        value = {w.id: w.value.strip() for w in self.query(Input) if w.id}
        if self.query_one("#mode-dhcp", RadioButton).value:
            iface["dhcp"] = True
        else:
            iface["addresses"] = [value["address"]] if value["address"] else []
            if value["gateway"]:
                iface["gateway"] = value["gateway"]
        iface["dns"] = [s.strip() for s in value["dns"].split(",") if s.strip()]
        if value["vlan_id"]:
            vlan: dict[str, Any] = {"id": value["vlan_id"]}
            if value["vlan_address"]:
                vlan["addresses"] = [value["vlan_address"]]
            else:
                vlan["dhcp"] = True
            iface["voice_vlan"] = vlan
        return {"interfaces": [iface]}

    def _show_trial(self, trial: TrialInfo) -> None:
        text = self.t(f"trial.{trial.outcome}", seconds=f"{trial.confirm_within or 0:.0f}")
        if trial.message and trial.outcome in ("failed", "rolled_back"):
            text += f"\n{trial.message}"
        if trial.steps and trial.outcome == "pending":
            text += "\n" + "\n".join(f"  · {s}" for s in trial.steps)
        self.query_one("#trial", Static).update(text)
        pending = trial.outcome == "pending"
        self.query_one("#keep", Button).disabled = not pending
        self.query_one("#revert", Button).disabled = not pending

    async def pressed(self, button_id: str) -> None:
        if button_id == "try":
            self.clear_error()
            self.query_one("#trial", Static).update(self.t("trial.running"))
            trial = await self.client.try_network(self.document(), self.console.confirm_within)
        elif button_id == "keep":
            trial = await self.client.confirm_network()
        elif button_id == "revert":
            trial = await self.client.revert_network()
        else:
            return
        self._show_trial(trial)
        if button_id != "try":
            await self.load()
        self.query_one("#trial", Static).scroll_visible()

    async def submit(self) -> bool:
        if self.query_one("#keep", Button).disabled is False:
            self.show_error(self.t("network.pending_first"))
            return False
        return True


class SystemStep(StepScreen):
    KEY = "step.system"
    FIELD_INPUTS: ClassVar[dict[str, str]] = {
        "hostname": "hostname",
        "timezone": "timezone",
        "ntp_servers": "ntp",
    }

    def body(self) -> ComposeResult:
        yield from _field(self.t("field.hostname"), "hostname", placeholder="pbx-office")
        yield from _field(self.t("field.timezone"), "timezone", value="UTC")
        yield from _field(self.t("field.ntp"), "ntp", value="pool.ntp.org")

    async def load(self) -> None:
        state = await self.client.setup_state()
        if state.hostname:
            self.query_one("#hostname", Input).value = state.hostname
        if state.timezone:
            self.query_one("#timezone", Input).value = state.timezone
        if state.ntp_servers:
            self.query_one("#ntp", Input).value = ", ".join(state.ntp_servers)
        self.query_one("#hostname", Input).focus()

    async def submit(self) -> bool:
        v = {w.id: w.value.strip() for w in self.query(Input)}
        ntp = [s.strip() for s in v["ntp"].split(",") if s.strip()]
        await self.client.set_system(v["hostname"], v["timezone"], ntp)
        return True


class AdminStep(StepScreen):
    """In the wizard: the box's first admin account (then the console is logged in as it).
    From the status console: another admin account."""

    KEY = "step.admin"
    FIELD_INPUTS: ClassVar[dict[str, str]] = {"login": "username", "password": "password"}

    def body(self) -> ComposeResult:
        yield Static(self.t("admin.intro" if not self.single else "admin.another"))
        yield from _field(self.t("field.username"), "username", value="admin")
        yield from _field(self.t("field.password"), "password", password=True)
        yield from _field(self.t("field.password2"), "password2", password=True)
        yield Static("", id="signed_in")

    async def load(self) -> None:
        session = self.client.session
        if session is not None and not self.single:
            self.query_one("#signed_in", Static).update(
                self.t("admin.signed_in", login=session.login)
            )
            self.query_one("#username", Input).value = session.login
        self.query_one("#password", Input).focus()

    async def submit(self) -> bool:
        v = {w.id: w.value for w in self.query(Input)}
        if self.client.session is not None and not self.single and not v["password"]:
            return True  # created already (Back from a later step)
        if v["password"] != v["password2"]:
            self.show_error(self.t("admin.mismatch"))
            return False
        if self.single:
            await self.client.create_admin(v["username"].strip(), v["password"])
        else:
            await self.client.bootstrap(v["username"].strip(), v["password"])
            await self.client.set_language(self.console.language)
        return True


class KeyStep(StepScreen):
    KEY = "step.key"
    FIELD_INPUTS: ClassVar[dict[str, str]] = {
        "passphrase": "passphrase",
        "directory": "directory",
    }

    def body(self) -> ComposeResult:
        yield Static(self.t("key.intro"))
        yield from _field(self.t("field.passphrase"), "passphrase", password=True)
        yield from _field(self.t("field.passphrase2"), "passphrase2", password=True)
        yield Button(self.t("key.create"), id="create")
        yield Static("", id="recipient")
        yield from _field(self.t("field.directory"), "directory")
        yield Button(self.t("key.export"), id="export")
        yield Static("", id="exported")
        yield Checkbox(self.t("key.confirm"), id="confirm")

    async def load(self) -> None:
        state = await self.client.setup_state()
        directory = self.query_one("#directory", Input)
        if not directory.value:
            directory.value = self.console.export_dir
        if state.recipient:
            self.query_one("#recipient", Static).update(
                self.t("key.recipient", recipient=state.recipient)
            )
        if state.identity_exported_to:
            self.query_one("#exported", Static).update(
                self.t("key.exported", path=state.identity_exported_to)
            )
        self.query_one("#confirm", Checkbox).value = state.backup_confirmed

    async def pressed(self, button_id: str) -> None:
        self.clear_error()
        v = {w.id: w.value for w in self.query(Input)}
        if button_id == "create":
            if v["passphrase"] != v["passphrase2"]:
                self.show_error(self.t("key.mismatch"))
                return
            await self.client.create_identity(v["passphrase"])
        elif button_id == "export":
            await self.client.export_identity(v["directory"].strip())
        await self.load()
        # an 80x25 console shows the result below the fold otherwise
        self.query_one("#exported" if button_id == "export" else "#recipient").scroll_visible()

    async def submit(self) -> bool:
        if not self.query_one("#confirm", Checkbox).value:
            self.show_error(self.t("key.confirm_first"))
            return False
        if not (await self.client.setup_state()).backup_confirmed:
            await self.client.confirm_backup()
        return True


class PairingStep(StepScreen):
    KEY = "step.pairing"
    FIELD_INPUTS: ClassVar[dict[str, str]] = {"code": "code"}

    def can_skip(self) -> bool:
        return True

    def body(self) -> ComposeResult:
        yield Static(self.t("pairing.intro"))
        yield from _field(self.t("field.code"), "code", placeholder="ABCD-1234")
        yield Button(self.t("pairing.pair"), id="pair")
        yield Static("", id="link")

    async def load(self) -> None:
        state = await self.client.pairing()
        text = self.t(f"pairing.{state.state}", cabinet=state.cabinet or "")
        if state.message and state.state != "paired":
            text += f" ({state.message})"
        self.query_one("#link", Static).update(text)

    async def pressed(self, button_id: str) -> None:
        if button_id == "pair":
            self.clear_error()
            await self.client.pair(self.query_one("#code", Input).value.strip())
            await self.load()


class ExtensionsStep(StepScreen):
    KEY = "step.extensions"
    FIELD_INPUTS: ClassVar[dict[str, str]] = {"first": "first", "last": "last"}

    def can_skip(self) -> bool:
        return True

    def body(self) -> ComposeResult:
        yield Static(self.t("extensions.intro"))
        yield from _field(self.t("field.first"), "first", value="101")
        yield from _field(self.t("field.last"), "last", value="120")
        yield Button(self.t("extensions.create"), id="create")
        yield Static("", id="sheet_path")
        yield DataTable(id="created")

    async def pressed(self, button_id: str) -> None:
        if button_id != "create":
            return
        self.clear_error()
        v = {w.id: w.value.strip() for w in self.query(Input)}
        try:
            first, last = int(v["first"]), int(v["last"])
        except ValueError:
            self.show_error(self.t("extensions.numbers"))
            return
        result = await self.client.create_extensions(first, last)
        table = self.query_one("#created", DataTable)
        table.clear(columns=True)
        table.add_columns(self.t("extensions.col.number"), self.t("extensions.col.password"))
        for ext in result.extensions:
            table.add_row(ext.number, ext.password)
        self.query_one("#sheet_path", Static).update(
            self.t("extensions.sheet", count=len(result.extensions), path=result.sheet_path)
        )
        self.query_one("#sheet_path", Static).scroll_visible()


class SummaryStep(StepScreen):
    KEY = "step.summary"

    def body(self) -> ComposeResult:
        yield Static("", id="summary")

    async def load(self) -> None:
        s = await self.client.setup_state()
        yes, no = self.t("yes"), self.t("no")
        rows = [
            ("summary.language", dict(LANGUAGES)[s.language]),
            ("summary.network", yes if s.network_confirmed else self.t("summary.unchanged")),
            ("summary.hostname", s.hostname or no),
            ("summary.timezone", f"{s.timezone or no}; NTP {', '.join(s.ntp_servers) or no}"),
            ("summary.admin", s.admin_user or no),
            ("summary.key", s.recipient or no),
            ("summary.backup", yes if s.backup_confirmed else no),
            (
                "summary.pairing",
                self.t(f"pairing.{s.pairing.state}", cabinet=s.pairing.cabinet or ""),
            ),
            ("summary.extensions", self._numbers(s.extensions)),
        ]
        width = max(len(self.t(k)) for k, _ in rows) + 2
        text = "\n".join(f"{self.t(k):<{width}}{v}" for k, v in rows)
        self.query_one("#summary", Static).update(text)
        self.query_one("#next", Button).label = self.t("nav.apply")

    @staticmethod
    def _numbers(numbers: list[str]) -> str:
        if not numbers:
            return "-"
        return f"{numbers[0]}-{numbers[-1]} ({len(numbers)})" if len(numbers) > 1 else numbers[0]

    async def submit(self) -> bool:
        result = await self.client.finish()
        if not result.completed:
            missing = ", ".join(self.t(f"missing.{m}") for m in result.missing)
            self.show_error(self.t("summary.missing", missing=missing))
            return False
        return True


class LoginScreen(StepScreen):
    """A box that is set up already: the console logs in before it shows anything."""

    KEY = "step.login"
    FIELD_INPUTS: ClassVar[dict[str, str]] = {"login": "username", "password": "password"}

    def compose(self) -> ComposeResult:
        yield Static(f"edgepbx · {self.t(self.KEY)}", id="title")
        with VerticalScroll(id="body", can_focus=False):
            yield from _field(self.t("field.username"), "username", value="admin")
            yield from _field(self.t("field.password"), "password", password=True)
        yield Static("", id="error")
        with Horizontal(id="nav"):
            yield Button(self.t("login.sign_in"), id="next", variant="primary")

    async def load(self) -> None:
        self.query_one("#password", Input).focus()

    async def submit(self) -> bool:
        v = {w.id: w.value for w in self.query(Input)}
        await self.client.login(v["username"].strip(), v["password"])
        return True

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "password":
            await self.action_next()
        else:
            self.focus_next()
