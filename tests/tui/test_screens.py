"""Every screen of the console driven with Pilot against the real API app in process."""

from __future__ import annotations

import re
from pathlib import Path

from support.console import ADMIN, ConsoleEnv, make_env, register_phone
from support.pilot import press, static_text, type_into, until
from textual.widgets import Checkbox, DataTable, Input

from tui.app import ConsoleSettings, make_app
from tui.client import ApiClient
from tui.i18n import EN, RU
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

SIZE = (100, 40)


def _app(env: ConsoleEnv, **settings: object):  # type: ignore[no-untyped-def]
    values = {"refresh_seconds": 0.3, "export_dir": str(env.data_dir / "exports")} | settings
    return make_app(env.client, ConsoleSettings(**values))  # type: ignore[arg-type]


async def _goto(pilot, screen_type) -> None:  # type: ignore[no-untyped-def]
    """A step on its own, with the console logged in as the admin."""
    client = pilot.app.client
    if client.session is None:
        if (await client.welcome()).first_boot:
            await client.bootstrap(*ADMIN)
        else:
            await client.login(*ADMIN)
    await pilot.app.switch_screen(screen_type())
    await until(pilot, lambda: isinstance(pilot.app.screen, screen_type), screen_type.__name__)
    await pilot.pause()


async def test_language_step_switches_to_russian(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LanguageStep), "language step")
        assert "Language  (1/8)" in static_text(pilot, "#title")
        await pilot.click("#lang-ru")
        await until(pilot, lambda: "Язык" in static_text(pilot, "#title"), "Russian title")
        assert str(app.screen.query_one("#next").label) == "Далее"
        await pilot.press("pagedown")
        await until(pilot, lambda: isinstance(app.screen, AdminStep), "admin step")
        assert "Администратор  (2/8)" in static_text(pilot, "#title")
        await type_into(pilot, "#password", ADMIN[1])
        await type_into(pilot, "#password2", ADMIN[1])
        await pilot.press("pagedown")
        await until(pilot, lambda: isinstance(app.screen, NetworkStep), "network step")
        assert "Сеть" in static_text(pilot, "#title")
        assert (await env.client.setup_state()).language == "ru"  # sent once logged in


async def _static_network(pilot, address: str, gateway: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.click("#mode-static")
    await type_into(pilot, "#address", address)
    await type_into(pilot, "#gateway", gateway)
    await type_into(pilot, "#dns", "192.168.1.1")


async def test_network_step_try_keep(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, NetworkStep)
        table = app.screen.query_one("#links", DataTable)
        assert table.row_count == 2
        assert table.get_row_at(0)[:3] == ["eth0", "52:54:00:12:34:56", "up"]
        await _static_network(pilot, "192.168.1.10/24", "192.168.1.1")
        await press(pilot, "try")
        await until(pilot, lambda: "Applied" in static_text(pilot, "#trial"), "pending")
        assert "eth0: add address 192.168.1.10/24" in static_text(pilot, "#trial")
        await pilot.press("pagedown")  # refused while the trial waits for Keep or Revert
        assert "Keep or revert" in static_text(pilot, "#error")
        await press(pilot, "keep")
        await until(pilot, lambda: "kept and saved" in static_text(pilot, "#trial"), "kept")
        assert (await env.client.setup_state()).network_confirmed
        assert app.screen.query_one("#links", DataTable).get_row_at(0)[3] == "192.168.1.10/24"


async def test_network_step_names_the_bad_field(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, NetworkStep)
        await _static_network(pilot, "192.168.1.10/24", "10.0.0.1")
        await press(pilot, "try")
        await until(pilot, lambda: "Gateway:" in static_text(pilot, "#error"), "error")
        assert "10.0.0.1 is outside the interface's subnets" in static_text(pilot, "#error")
        assert app.screen.query_one("#gateway", Input).has_class("-invalid")
        assert not app.screen.query_one("#address", Input).has_class("-invalid")


async def test_network_step_rolls_back_when_the_gateway_is_silent(tmp_path: Path) -> None:
    env = make_env(tmp_path / "data", reachable=set())
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, NetworkStep)
        await _static_network(pilot, "192.168.1.10/24", "192.168.1.1")
        await press(pilot, "try")
        await until(pilot, lambda: "Rolled back" in static_text(pilot, "#trial"), "rolled back")
        assert "192.168.1.1 did not answer" in static_text(pilot, "#trial")
        assert env.backend.state.link("eth0").addresses == frozenset()  # type: ignore[union-attr]
    await env.close()


async def test_system_step(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, SystemStep)
        await type_into(pilot, "#hostname", "bad_name")
        await pilot.press("pagedown")
        await until(pilot, lambda: "Host name:" in static_text(pilot, "#error"), "error")
        await type_into(pilot, "#hostname", "pbx-office1")
        await type_into(pilot, "#timezone", "Europe/Moscow")
        await pilot.press("pagedown")
        await until(pilot, lambda: isinstance(app.screen, KeyStep), "key step")
        state = await env.client.setup_state()
        assert (state.hostname, state.timezone, state.ntp_servers) == (
            "pbx-office1",
            "Europe/Moscow",
            ["pool.ntp.org"],
        )


async def test_admin_step_creates_the_first_admin_and_signs_in(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LanguageStep), "language step")
        await pilot.press("pagedown")
        await until(pilot, lambda: isinstance(app.screen, AdminStep), "admin step")
        await type_into(pilot, "#password", "horse battery 1")
        await type_into(pilot, "#password2", "horse battery 2")
        await pilot.press("pagedown")
        assert "differ" in static_text(pilot, "#error")
        await type_into(pilot, "#password", "short")
        await type_into(pilot, "#password2", "short")
        await pilot.press("pagedown")
        await until(pilot, lambda: "Password:" in static_text(pilot, "#error"), "too short")
        await type_into(pilot, "#password", ADMIN[1])
        await type_into(pilot, "#password2", ADMIN[1])
        await pilot.press("pagedown")
        await until(pilot, lambda: isinstance(app.screen, NetworkStep), "network step")
        assert app.client.session is not None and app.client.session.login == "admin"
        assert (await env.client.setup_state()).admin_user == "admin"
        await pilot.press("pageup")  # back: the account exists, Next just goes on
        await until(pilot, lambda: isinstance(app.screen, AdminStep), "admin again")
        assert "signed in as admin" in static_text(pilot, "#signed_in")
        await pilot.press("pagedown")
        await until(pilot, lambda: isinstance(app.screen, NetworkStep), "network again")


async def test_key_step(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, KeyStep)
        await type_into(pilot, "#passphrase", "a long passphrase")
        await type_into(pilot, "#passphrase2", "a long passphrasE")
        await press(pilot, "create")
        assert "differ" in static_text(pilot, "#error")
        await type_into(pilot, "#passphrase2", "a long passphrase")
        await press(pilot, "create")
        await until(pilot, lambda: "age1" in static_text(pilot, "#recipient"), "recipient")
        recipient = (await env.client.setup_state()).recipient
        assert recipient is not None and recipient in static_text(pilot, "#recipient")
        await press(pilot, "export")
        await until(pilot, lambda: "Exported to" in static_text(pilot, "#exported"), "exported")
        exported = Path(static_text(pilot, "#exported").removeprefix("Exported to "))
        assert exported.read_bytes().startswith(b"age-encryption.org/v1\n-> scrypt ")
        await pilot.press("pagedown")
        assert "Confirm that the backup" in static_text(pilot, "#error")
        app.screen.query_one("#confirm", Checkbox).value = True
        await pilot.press("pagedown")
        await until(pilot, lambda: isinstance(app.screen, PairingStep), "pairing step")
        assert (await env.client.setup_state()).backup_confirmed


async def test_pairing_step(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, PairingStep)
        assert static_text(pilot, "#link") == "Not paired."
        await type_into(pilot, "#code", "ab")
        await press(pilot, "pair")
        await until(pilot, lambda: "Pairing code:" in static_text(pilot, "#error"), "bad code")
        await type_into(pilot, "#code", "ABCD-1234")
        await press(pilot, "pair")
        await until(
            pilot, lambda: "link to cabinet.example is up" in static_text(pilot, "#link"), "up"
        )


async def test_extensions_step(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, ExtensionsStep)
        await type_into(pilot, "#last", "105")
        await press(pilot, "create")
        table = app.screen.query_one("#created", DataTable)
        await until(pilot, lambda: table.row_count == 5, "five rows")
        assert [table.get_row_at(i)[0] for i in range(5)] == ["101", "102", "103", "104", "105"]
        assert "5 extensions created" in static_text(pilot, "#sheet_path")
        await press(pilot, "create")  # the same range again is refused, naming the numbers
        await until(pilot, lambda: "already exist: 101" in static_text(pilot, "#error"), "taken")


async def test_summary_refuses_until_complete(env: ConsoleEnv) -> None:
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _goto(pilot, SummaryStep)
        await until(pilot, lambda: "Administrator" in static_text(pilot, "#summary"), "summary")
        assert str(app.screen.query_one("#next").label) == "Apply"
        await pilot.press("pagedown")
        await until(pilot, lambda: "Still missing" in static_text(pilot, "#error"), "missing")
        assert "host name and time zone, recording key" in static_text(pilot, "#error")


async def _complete_setup(env: ConsoleEnv) -> None:
    await env.client.bootstrap(*ADMIN)
    await _complete_setup_logged_in(env)


async def _complete_setup_logged_in(env: ConsoleEnv) -> None:
    c = env.client
    await c.set_system("pbx-office1", "Europe/Moscow", ["pool.ntp.org"])
    await c.create_identity("a long passphrase")
    await c.export_identity(str(env.data_dir / "exports"))
    await c.confirm_backup()
    assert (await c.finish()).completed
    c.session = None  # the console starts logged out


async def _login(pilot) -> None:  # type: ignore[no-untyped-def]
    await until(pilot, lambda: isinstance(pilot.app.screen, LoginScreen), "login screen")
    await type_into(pilot, "#password", ADMIN[1])
    await pilot.press("enter")


async def test_status_console_live_and_keys(env: ConsoleEnv) -> None:
    await _complete_setup(env)
    register_phone(env.store, "101")
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await _login(pilot)
        await until(pilot, lambda: isinstance(app.screen, StatusScreen), "status")
        phones = app.screen.query_one("#phones", DataTable)
        await until(pilot, lambda: phones.row_count == 1, "one phone")
        assert "Active calls: 2" in static_text(pilot, "#calls")
        assert "not configured" in static_text(pilot, "#sync")
        register_phone(env.store, "102", "baresip")  # refreshed live, no key pressed
        await until(pilot, lambda: phones.row_count == 2, "second phone")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NetworkStep), "network from status")
        assert str(app.screen.query_one("#next").label) == "Done"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, StatusScreen), "back to status")
        for key, screen in (
            ("s", SystemStep),
            ("a", AdminStep),
            ("k", KeyStep),
            ("p", PairingStep),
            ("e", ExtensionsStep),
            ("l", LanguageStep),
        ):
            await pilot.press(key)
            await until(pilot, lambda screen=screen: isinstance(app.screen, screen), key)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, StatusScreen), "status again")


async def test_status_console_in_russian(env: ConsoleEnv) -> None:
    await env.client.bootstrap(*ADMIN)
    await env.client.set_language("ru")
    await _complete_setup_logged_in(env)
    app = _app(env)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "Вход" in static_text(pilot, "#title"), "Russian login")
        await _login(pilot)
        await until(pilot, lambda: isinstance(app.screen, StatusScreen), "status")
        await until(pilot, lambda: "Активные звонки: 2" in static_text(pilot, "#calls"), "ru")
        assert "не настроена" in static_text(pilot, "#sync")
        assert "Тревог нет." in static_text(pilot, "#alarms") or "[" in static_text(
            pilot, "#alarms"
        )


async def test_unreachable_api_is_shown() -> None:
    app = make_app(ApiClient.over_socket("/nonexistent/api.sock"), ConsoleSettings())
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "does not answer" in static_text(pilot, "#error"), "message")
    await app.client.aclose()


def test_catalogs_have_the_same_keys_and_every_used_key() -> None:
    assert EN.keys() == RU.keys()
    assert all(RU.values()) and all(EN.values())
    source = "\n".join(p.read_text() for p in Path("tui").rglob("*.py"))
    used = set(re.findall(r"""\bt\(\s*["']([a-z_0-9.]*[a-z_0-9])["']""", source))
    assert used, "no keys found"
    assert used <= EN.keys(), used - EN.keys()
    for key in EN:  # the same placeholders in both languages
        assert re.findall(r"{\w+}", EN[key]) == re.findall(r"{\w+}", RU[key]), key
