"""The console's endpoints through the typed client against the real FastAPI app in process."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest
from support.api import cloud
from support.console import ADMIN, ConsoleEnv, register_phone

from tui.client import ApiClient, ApiError


@pytest.fixture
async def admin(env: ConsoleEnv) -> ConsoleEnv:
    await env.client.bootstrap(*ADMIN)
    return env


async def test_first_boot_welcome_bootstrap_and_login(env: ConsoleEnv) -> None:
    c = env.client
    welcome = await c.welcome()
    assert welcome.first_boot and welcome.language == "en"
    with pytest.raises(ApiError) as err:
        await c.setup_state()
    assert err.value.status == 401
    session = await c.bootstrap(*ADMIN)
    assert session.role == "admin"
    assert not (await c.welcome()).first_boot
    assert (await c.setup_state()).admin_user == "admin"
    with pytest.raises(ApiError) as err:
        await c.bootstrap("second", "another long password")
    assert err.value.status == 409


async def test_keys_never_over_the_cloud_link(admin: ConsoleEnv) -> None:
    token = admin.client.session.token  # type: ignore[union-attr]
    via_cloud = ApiClient.in_process(cloud(admin.app))
    via_cloud.session = admin.client.session
    for call in (via_cloud.create_identity("long enough pass"), via_cloud.confirm_backup()):
        with pytest.raises(ApiError) as err:
            await call
        assert err.value.status == 403 and "never allowed over the cloud link" in str(err.value)
    with pytest.raises(ApiError) as err:
        await via_cloud.create_extensions(101, 102)  # generated passwords are LAN only
    assert err.value.status == 403
    assert (await via_cloud.setup_state()).recipient is None  # reading the state is allowed
    await via_cloud.aclose()
    denied = admin.store.audit.events(action="policy.denied", limit=10)
    assert len(denied) == 3 and token not in repr(denied)


async def test_setup_flow_through_the_api(admin: ConsoleEnv) -> None:
    env = admin
    c = env.client
    assert (await c.setup_state()).completed is False
    assert (await c.set_language("ru")).language == "ru"
    state = await c.set_system("pbx-office1", "Europe/Moscow", ["pool.ntp.org", "192.168.1.1"])
    assert (state.hostname, state.timezone) == ("pbx-office1", "Europe/Moscow")
    assert (await c.welcome()).language == "ru"
    finish = await c.finish()
    assert finish.completed is False and finish.missing == ["recording key"]


@pytest.mark.parametrize(
    ("call", "field", "words"),
    [
        (("bad_host!", "Europe/Moscow", []), "hostname", "not a valid label"),
        (("pbx", "Mars/Olympus", []), "timezone", "unknown time zone"),
        (("pbx", "UTC", ["ok.example", "no way"]), "ntp_servers.1", "not a host name"),
    ],
)
async def test_system_refused_with_field(
    admin: ConsoleEnv, call: tuple[str, str, list[str]], field: str, words: str
) -> None:
    with pytest.raises(ApiError) as err:
        await admin.client.set_system(*call)
    assert err.value.status == 422
    assert words in err.value.fields[field]
    assert (await admin.client.setup_state()).hostname is None  # nothing changed


async def test_first_admin_password_too_short(env: ConsoleEnv) -> None:
    with pytest.raises(ApiError) as err:
        await env.client.bootstrap("admin", "short")
    assert "password" in err.value.fields
    assert (await env.client.welcome()).first_boot


async def test_site_identity_export_decrypts_with_age(admin: ConsoleEnv, tmp_path: Path) -> None:
    env = admin
    c = env.client
    with pytest.raises(ApiError) as err:
        await c.export_identity(str(env.data_dir / "exports"))
    assert err.value.status == 409
    with pytest.raises(ApiError) as err:
        await c.create_identity("short")
    assert "passphrase" in err.value.fields
    created = await c.create_identity("long enough pass")
    assert created.created and created.recipient.startswith("age1")
    again = await c.create_identity("another passphrase")
    assert again.recipient == created.recipient and not again.created
    with pytest.raises(ApiError) as err:
        await c.confirm_backup()
    assert err.value.status == 409
    with pytest.raises(ApiError) as err:
        await c.export_identity("/etc")
    assert "directory" in err.value.fields
    with pytest.raises(ApiError) as err:
        await c.export_identity(str(env.data_dir / "exports") + "\x00")  # found by schemathesis
    assert err.value.status == 422 and "directory" in err.value.fields
    exported = await c.export_identity(str(env.data_dir / "exports"))
    assert (await c.confirm_backup()).backup_confirmed
    # the stock age tool decrypts the export with the passphrase (typed on a terminal)
    out = tmp_path / "identity.txt"
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp("age", ["age", "-d", "-o", str(out), exported.path])
    seen = b""
    while b"passphrase" not in seen.lower():
        seen += os.read(fd, 1024)
    os.write(fd, b"long enough pass\n")
    while True:
        try:
            if not os.read(fd, 1024):
                break
        except OSError:
            break
    assert os.waitpid(pid, 0)[1] == 0
    assert "AGE-SECRET-KEY-1" in out.read_text()
    # and that identity opens what is encrypted to the recipient the box records to
    secret = subprocess.run(
        ["age", "-r", created.recipient], input=b"call audio", capture_output=True, check=True
    ).stdout
    plain = subprocess.run(
        ["age", "-d", "-i", str(out)], input=secret, capture_output=True, check=True
    ).stdout
    assert plain == b"call audio"


async def test_extension_range_with_sheet(admin: ConsoleEnv) -> None:
    env = admin
    result = await env.client.create_extensions(101, 120)
    assert [e.number for e in result.extensions] == [str(n) for n in range(101, 121)]
    assert len({e.password for e in result.extensions}) == 20
    sheet = Path(result.sheet_path).read_text()
    assert sheet == result.sheet
    assert all(f"{e.number:<12}{e.number:<12}{e.password}" in sheet for e in result.extensions)
    assert env.store.directory.get("120") is not None
    assert env.store.directory.ha1("101", "MD5") is not None
    assert env.store.audit.events(action="extension.range_created", limit=5)
    with pytest.raises(ApiError) as err:
        await env.client.create_extensions(118, 125)
    assert err.value.status == 409 and "first: already exist: 118, 119, 120" in str(err.value)
    with pytest.raises(ApiError) as err:
        await env.client.create_extensions(130, 120)
    assert "below" in err.value.fields["last"]


async def test_pairing(admin: ConsoleEnv) -> None:
    env = admin
    with pytest.raises(ApiError) as err:
        await env.client.pair("12")
    assert "code" in err.value.fields
    assert (await env.client.pair("abcd-1234")).state == "paired"
    assert (await env.client.pairing()).cabinet == "cabinet.example"


async def test_network_try_confirm_and_refusals(admin: ConsoleEnv) -> None:
    env = admin
    view = await env.client.network()
    assert [x.name for x in view.links] == ["eth0", "eth1"]
    assert view.links[0].mac == "52:54:00:12:34:56"
    doc = {
        "interfaces": [{"name": "eth0", "addresses": ["192.168.1.10/24"], "gateway": "192.168.1.1"}]
    }
    trial = await env.client.try_network(doc, 60)
    assert trial.outcome == "pending"
    assert "eth0: add address 192.168.1.10/24" in trial.steps
    assert (await env.client.confirm_network()).outcome == "confirmed"
    assert (await env.client.setup_state()).network_confirmed
    assert (await env.client.network()).saved == {"version": 1, **doc} | {
        "interfaces": [
            doc["interfaces"][0]
            | {"dhcp": False, "routes": [], "dns": [], "mtu": None, "voice_vlan": None}
        ]
    }
    with pytest.raises(ApiError) as err:
        await env.client.try_network(
            {
                "interfaces": [
                    {"name": "eth0", "addresses": ["192.168.1.10/24"], "gateway": "10.0.0.1"}
                ]
            },
            60,
        )
    assert "outside" in err.value.fields["interfaces.0.gateway"]
    with pytest.raises(ApiError) as err:
        await env.client.try_network({"interfaces": [{"name": "wlan0", "dhcp": True}]}, 60)
    assert "no interface wlan0" in err.value.fields["interfaces.0.name"]


async def test_overview(admin: ConsoleEnv) -> None:
    env = admin
    register_phone(env.store, "101")
    register_phone(env.store, "102", "baresip")
    overview = await env.client.overview()
    assert [p.extension for p in overview.phones] == ["101", "102"]
    assert overview.active_calls == 2
    assert overview.sync_lag_seconds is None
    assert 0 <= overview.disk_used_percent <= 100
    assert any(a.text == "setup not finished" for a in overview.alarms)
    assert overview.phones[0].user_agent == "Yealink SIP-T46U"


async def test_unreachable_api_is_a_clear_error() -> None:
    client = ApiClient.over_socket("/nonexistent/api.sock")
    with pytest.raises(ApiError, match="cannot reach the box's management API"):
        await client.setup_state()
    await client.aclose()
