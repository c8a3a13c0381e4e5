"""The whole first-boot wizard as an installer goes through it, then the status console;
and the main screens' text against stored snapshots (tests/tui/snapshots, masked)."""

from __future__ import annotations

from pathlib import Path

from support.console import ADMIN, ConsoleEnv, register_phone
from support.pilot import press, static_text, type_into, until
from support.screen import check_snapshot, screen_text
from textual.widgets import Checkbox, DataTable

from tui.app import ConsoleSettings, make_app
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

SIZE = (100, 36)
# numbers that change from run to run; a mask takes the padding after it too, so that the
# masked lines keep one width whatever the digits
MASKS = {
    r"age1[0-9a-z]{58}": "age1<recipient>",
    r"\d+% used *": "N% used ",
    r"[\d.]+ GiB free *": "N GiB free ",
    r"свободно [\d.]+ ГиБ *": "свободно N ГиБ ",
    r"занято \d+% *": "занято N% ",
}


async def _next(pilot, screen_type) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("pagedown")
    await until(pilot, lambda: isinstance(pilot.app.screen, screen_type), screen_type.__name__)
    await pilot.pause()


async def test_whole_wizard_in_russian_then_status(env: ConsoleEnv) -> None:
    settings = ConsoleSettings(refresh_seconds=0.3, export_dir=str(env.data_dir / "exports"))
    app = make_app(env.client, settings)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LanguageStep), "language")
        check_snapshot("language", screen_text(app), MASKS)
        await pilot.click("#lang-ru")
        await until(pilot, lambda: "Язык" in static_text(pilot, "#title"), "Russian")
        await _next(pilot, AdminStep)
        await type_into(pilot, "#password", ADMIN[1])
        await type_into(pilot, "#password2", ADMIN[1])
        await _next(pilot, NetworkStep)
        await pilot.click("#mode-static")
        await type_into(pilot, "#address", "192.168.1.10/24")
        await type_into(pilot, "#gateway", "192.168.1.1")
        await type_into(pilot, "#dns", "192.168.1.1")
        await press(pilot, "try")
        await until(pilot, lambda: "шлюз отвечает" in static_text(pilot, "#trial"), "pending")
        check_snapshot("network-pending-ru", screen_text(app), MASKS)
        await press(pilot, "keep")
        await until(pilot, lambda: "сохранены" in static_text(pilot, "#trial"), "kept")
        await _next(pilot, SystemStep)
        await type_into(pilot, "#hostname", "pbx-office1")
        await type_into(pilot, "#timezone", "Europe/Moscow")
        await _next(pilot, KeyStep)
        await type_into(pilot, "#passphrase", "a long passphrase")
        await type_into(pilot, "#passphrase2", "a long passphrase")
        await press(pilot, "create")
        await until(pilot, lambda: "age1" in static_text(pilot, "#recipient"), "key")
        await press(pilot, "export")
        await until(pilot, lambda: "Выгружено" in static_text(pilot, "#exported"), "exported")
        app.screen.query_one("#confirm", Checkbox).toggle()
        await _next(pilot, PairingStep)
        await type_into(pilot, "#code", "ABCD-1234")
        await press(pilot, "pair")
        await until(pilot, lambda: "Привязано" in static_text(pilot, "#link"), "paired")
        await _next(pilot, ExtensionsStep)
        await press(pilot, "create")
        await until(
            pilot, lambda: app.screen.query_one("#created", DataTable).row_count == 20, "20"
        )
        await _next(pilot, SummaryStep)
        await until(pilot, lambda: "pbx-office1" in static_text(pilot, "#summary"), "summary")
        check_snapshot("summary-ru", screen_text(app), MASKS)
        await _next(pilot, StatusScreen)
        state = await env.client.setup_state()
        assert state.completed and state.language == "ru" and state.network_confirmed
        assert state.extensions == [str(n) for n in range(101, 121)]
        assert state.pairing.state == "paired" and state.backup_confirmed
        assert env.backend.state.link("eth0").addresses  # type: ignore[union-attr]
        sheet = env.data_dir / "exports" / "extensions-101-120.txt"
        assert sheet.read_text().count("\n1") == 20
        register_phone(env.store, "101")
        register_phone(env.store, "102", "baresip 1.0")
        phones = app.screen.query_one("#phones", DataTable)
        await until(pilot, lambda: phones.row_count == 2, "phones")
        check_snapshot("status-ru", screen_text(app), MASKS)


async def test_status_snapshot_in_english(env: ConsoleEnv) -> None:
    c = env.client
    await c.bootstrap(*ADMIN)
    await c.set_system("pbx-office1", "Europe/Moscow", ["pool.ntp.org"])
    await c.create_identity("a long passphrase")
    await c.export_identity(str(env.data_dir / "exports"))
    await c.confirm_backup()
    await c.finish()
    register_phone(env.store, "101")
    register_phone(env.store, "102", "baresip 1.0")
    app = make_app(c, ConsoleSettings(refresh_seconds=0.3))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LoginScreen), "login")
        await app.switch_screen(StatusScreen())  # the client is logged in already
        phones = app.screen.query_one("#phones", DataTable)
        await until(pilot, lambda: phones.row_count == 2, "phones")
        await pilot.pause()
        text = screen_text(app)
        check_snapshot("status-en", text, MASKS)
        svg = app.export_screenshot()
        assert "Registered&#160;phones" in svg and "Yealink&#160;SIP-T46U" in svg


def test_snapshot_files_are_committed() -> None:
    names = {p.stem for p in (Path(__file__).parent / "snapshots").glob("*.txt")}
    assert {"language", "network-pending-ru", "summary-ru", "status-ru", "status-en"} <= names
