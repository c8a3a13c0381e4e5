"""The console in a real terminal (tmux), driven with keys as an installer would, against
`edgepbx serve-api` on a unix socket (a separate process, as on the box)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.tmux import Tmux

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]
EDGEPBX = str(Path(sys.executable).with_name("edgepbx"))
PASSWORD = "correct horse battery"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (make deb)")
    data = tmp_path / "data"
    sock = tmp_path / "api.sock"
    server = subprocess.Popen(
        [EDGEPBX, "serve-api", "--data", str(data), "--socket", str(sock), "--network", "memory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(200):  # bounded: the server imports FastAPI and opens the store
            if sock.exists():
                try:
                    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as c:
                        if c.get("http://box/system/health").status_code == 200:
                            break
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        else:
            raise AssertionError("the API did not come up")
        yield sock
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_first_boot_in_tmux(api: Path, tmp_path: Path) -> None:
    exports = tmp_path / "data" / "exports"  # inside the data folder: allowed as a target
    command = f"{EDGEPBX} setup --socket {api} --export-dir {exports} --refresh 0.5"
    term = Tmux(command)
    try:
        term.wait_for("Language  (1/8)")
        term.keys("Down", "Enter")  # Русский
        term.wait_for("Язык  (1/8)")
        term.keys("NPage")
        term.wait_for("Администратор  (2/8)")
        term.type(PASSWORD)
        term.wait_for(r"Пароль\s+•{21}", regex=True)  # look before typing on
        term.keys("Tab")
        term.type(PASSWORD)
        term.wait_for(r"Пароль ещё раз\s+•{21}", regex=True)
        term.keys("NPage")
        screen = term.wait_for("Сеть  (3/8)")
        assert "52:54:00:12:34:56" in screen and "нет кабеля" in screen
        term.keys("NPage")
        term.wait_for("Имя узла и время  (4/8)")
        term.type("pbx-office1")
        term.wait_for("pbx-office1")
        term.keys("Tab", "C-u")
        term.wait_for(r"Часовой пояс\s*\n", regex=True)
        term.type("Europe/Moscow")
        term.wait_for("Europe/Moscow")
        term.keys("NPage")
        term.wait_for("Ключ записей  (5/8)")
        term.type("a long passphrase")  # the passphrase field has the focus
        term.wait_for(r"Парольная фраза\s+•{17}", regex=True)
        term.keys("Tab")
        term.type("a long passphrase")
        term.wait_for(r"Фраза ещё раз\s+•{17}", regex=True)
        term.keys("Tab", "Enter")  # "create site key"
        term.wait_for(r"Получатель ключа площадки:\s+age1", regex=True)
        term.keys("Tab", "Tab", "Enter")  # past the folder to "export"
        term.wait_for("Выгружено в")
        term.keys("Tab", "Space", "NPage")
        term.wait_for("Привязка к облаку  (6/8)")
        term.keys("NPage")
        term.wait_for("Внутренние номера  (7/8)")
        term.keys("Tab", "Tab", "Enter")  # 101..120 as proposed, then "create"
        term.wait_for("Создано номеров: 20")
        term.keys("NPage")
        screen = term.wait_for("Итог  (8/8)")
        term.keys("NPage")
        screen = term.wait_for("pbx-office1 · состояние")
        assert "Синхронизация: не настроена" in screen
        assert "n сеть  s имя/время" in screen
        term.keys("n")
        term.wait_for("edgepbx · Сеть")
        term.keys("Escape")
        term.wait_for("состояние")
        term.keys("q")
        for _ in range(50):
            if "состояние" not in term.screen():
                break
            time.sleep(0.1)
        (exported,) = exports.glob("pbx-office1-site-*.age")
        assert exported.read_bytes().startswith(b"age-encryption.org/v1\n-> scrypt ")
    finally:
        term.close()
