"""schemathesis against the OpenAPI description, in process: generated requests (valid and
invalid) with an admin token from the LAN must never get a 5xx, and every answer must match
the description (status codes and bodies). Bounded so it stays well under a minute."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import positive_data_acceptance
from support.api import Box, make_box

from appliance.api.accounts import Role
from appliance.api.calls import CoreGuard
from appliance.api.console_app import ConsoleSettings, build_console_services
from appliance.api.context import ActiveCallView
from appliance.api.vault import IdentityVault
from pbx.guard import Guard
from pbx.recording.keys import Keyring
from pbx.store import Extension

pytestmark = pytest.mark.timeout(300)
# Examples per operation: small by default (the suite stays fast); raise it for a deeper run.
EXAMPLES = int(os.environ.get("EDGEPBX_SCHEMATHESIS_EXAMPLES", "8"))


class IdleCalls:
    """A SIP core with no calls (the calls endpoints are tested against a real one)."""

    def active(self) -> list[ActiveCallView]:
        return []

    async def hangup(self, call_id: str) -> bool:
        return False


class IdleSync:
    def status(self) -> IdleSync:
        return self

    def to_json(self) -> dict[str, Any]:
        return {"state": "disabled", "target": "", "alarms": []}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    # Every part runs, so a 503 would be a real failure.
    where = Path(tmp_path_factory.mktemp("schemathesis"))
    keyring = Keyring(where / "keys", work_factor=10)
    keyring.initialize("the site passphrase")
    box = make_box(where, calls=IdleCalls(), sync=IdleSync(), guard=CoreGuard(Guard()))
    box.ctx.vault = IdentityVault(keyring.unlock, clock=box.clock)
    console = ConsoleSettings(data_dir=where / "console", network="memory", key_work_factor=10)
    box.ctx.console = build_console_services(console, box.store)
    box.account("admin", Role.ADMIN)
    box.store.directory.create(Extension("101"))
    box.recordings.add("rec-1", b"RIFF" + bytes(4000), call_id="c1", started_at=1.0)
    yield box
    box.store.close()


def test_no_server_errors_and_answers_match_the_description(rig: Box) -> None:
    # schemathesis' own pytest plugin does not run under pytest 9; drive hypothesis directly,
    # one bounded run per operation.
    schema = schemathesis.openapi.from_asgi("/openapi.json", rig.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    calls = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            # A fresh token each time: a generated logout may end the previous one.
            token, _ = rig.accounts.open_session("admin")
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"},
                # Semantic rules (a port inside the RTP range, duplicate numbers...) refuse
                # some schema-valid documents by design, with 422 naming the field.
                excluded_checks=[positive_data_acceptance],
            )

        run()
    assert calls >= 3 * len(operations)
