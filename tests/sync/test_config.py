"""Sync settings and the rendered Litestream configuration (pure, no processes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.store import LOCAL_DB
from appliance.sync import (
    FileTarget,
    RuntimePaths,
    S3Target,
    SettingsError,
    SyncService,
    SyncSettings,
    SyncState,
)
from appliance.sync.config import (
    describe_target,
    go_duration,
    litestream_env,
    render_config,
    render_text,
)
from appliance.sync.settings import SETTINGS_FILE, load_settings
from appliance.sync.status import ALARM_DOWN

SECRET = "s3cr3t/Key+With=Chars"


def s3_settings(**target: object) -> SyncSettings:
    fields: dict[str, object] = {
        "bucket": "office-bucket",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": SECRET,
        "endpoint": "http://127.0.0.1:9000",
    }
    fields.update(target)
    return SyncSettings(target=S3Target.model_validate(fields))


def test_default_target_is_the_cloud_folder_in_the_data_folder(tmp_path: Path) -> None:
    paths = RuntimePaths.for_data(tmp_path / "data")
    config = render_config(SyncSettings(), paths)
    (db,) = config["dbs"]
    assert db["path"] == str(tmp_path / "data" / "metadata.db")
    assert db["replica"] == {
        "type": "file",
        "path": str(tmp_path / "data" / "cloud" / "metadata"),
        "sync-interval": "1000ms",
    }
    assert config["socket"] == {"enabled": True, "path": str(paths.socket)}
    assert describe_target(SyncSettings().target, paths.data_dir) == (
        f"file://{tmp_path}/data/cloud/metadata"
    )


def test_one_replica_and_only_metadata_db(tmp_path: Path) -> None:
    for settings in (SyncSettings(), s3_settings()):
        text = render_text(render_config(settings, RuntimePaths.for_data(tmp_path)))
        config = json.loads(text)
        assert len(config["dbs"]) == 1
        assert "replicas" not in config["dbs"][0]  # v0.5 takes one replica per database
        assert LOCAL_DB not in text and "local" not in text
        assert "recordings" not in text


def test_s3_config_holds_no_credentials(tmp_path: Path) -> None:
    settings = s3_settings(path="/site-7/metadata/", region="eu-central-1")
    text = render_text(render_config(settings, RuntimePaths.for_data(tmp_path)))
    assert SECRET not in text and "AKIAEXAMPLE" not in text
    replica = json.loads(text)["dbs"][0]["replica"]
    assert replica == {
        "type": "s3",
        "bucket": "office-bucket",
        "path": "site-7/metadata",
        "region": "eu-central-1",
        "endpoint": "http://127.0.0.1:9000",
        "force-path-style": True,
        "sync-interval": "1000ms",
    }


def test_credentials_go_by_environment_and_inherited_aws_variables_do_not() -> None:
    base = {
        "PATH": "/usr/bin",
        "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
        "AWS_SECRET_ACCESS_KEY": "someone-elses",
        "LITESTREAM_ACCESS_KEY_ID": "stale",
    }
    env = litestream_env(s3_settings(), base)
    assert env == {
        "PATH": "/usr/bin",
        "LITESTREAM_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "LITESTREAM_SECRET_ACCESS_KEY": SECRET,
    }
    assert litestream_env(SyncSettings(), base) == {"PATH": "/usr/bin"}


def test_the_secret_is_never_in_repr_str_or_json_dumps() -> None:
    settings = s3_settings()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in shown
    assert "**********" in settings.model_dump_json()


def test_intervals_become_go_durations(tmp_path: Path) -> None:
    settings = SyncSettings(monitor_interval=0.1, sync_interval=0.1, checkpoint_interval=30)
    db = render_config(settings, RuntimePaths.for_data(tmp_path))["dbs"][0]
    assert db["monitor-interval"] == "100ms"
    assert db["checkpoint-interval"] == "30000ms"
    assert db["replica"]["sync-interval"] == "100ms"


@given(st.floats(min_value=0.0001, max_value=86_400))
def test_go_duration_is_whole_positive_milliseconds(seconds: float) -> None:
    text = go_duration(seconds)
    assert text.endswith("ms")
    millis = int(text[:-2])
    assert millis >= 1
    assert abs(millis - seconds * 1000) <= 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {
                "target": {
                    "kind": "s3",
                    "bucket": "Bad_Bucket",
                    "access_key_id": "a",
                    "secret_access_key": "b",
                }
            },
            "target.s3.bucket",
        ),
        (
            {
                "target": {
                    "kind": "s3",
                    "bucket": "good-bucket",
                    "access_key_id": "a",
                    "secret_access_key": "",
                }
            },
            "target.s3.secret_access_key",
        ),
        (
            {
                "target": {
                    "kind": "s3",
                    "bucket": "good-bucket",
                    "access_key_id": "a",
                    "secret_access_key": "b",
                    "endpoint": "ftp://x",
                }
            },
            "target.s3.endpoint",
        ),
        (
            {
                "target": {
                    "kind": "s3",
                    "bucket": "good-bucket",
                    "access_key_id": "a",
                    "secret_access_key": "b",
                    "path": "a/../b",
                }
            },
            "target.s3.path",
        ),
        ({"target": {"kind": "ftp"}}, "target"),
        ({"sync_interval": 0}, "sync_interval"),
        ({"alarm_after": 1, "behind_after": 5}, "behind_after must not exceed alarm_after"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, fields: dict[str, object], named: str) -> None:
    path = tmp_path / SETTINGS_FILE
    path.write_text(json.dumps(fields))
    os.chmod(path, 0o600)
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    assert named in str(info.value)
    assert "b'" not in str(info.value)


def test_settings_file_with_a_secret_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / SETTINGS_FILE
    path.write_text(
        json.dumps(
            {
                "target": {
                    "kind": "s3",
                    "bucket": "good-bucket",
                    "access_key_id": "a",
                    "secret_access_key": SECRET,
                }
            }
        )
    )
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="chmod 600") as info:
        load_settings(tmp_path)
    assert SECRET not in str(info.value)
    os.chmod(path, 0o600)
    settings = load_settings(tmp_path)
    assert isinstance(settings.target, S3Target)
    assert settings.target.secret_access_key.get_secret_value() == SECRET


def test_no_settings_file_means_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings == SyncSettings()
    assert isinstance(settings.target, FileTarget)
    assert settings.target.folder(tmp_path) == tmp_path.absolute() / "cloud"


async def test_a_missing_litestream_is_an_alarm_not_a_dead_box(tmp_path: Path) -> None:
    service = SyncService(SyncSettings(litestream=tmp_path / "no-such-binary"), tmp_path)
    await service.start()  # does not raise: calls go on without the cloud copy
    status = service.status()
    assert status.state is SyncState.RESTARTING
    (alarm,) = status.alarms
    assert alarm.code == ALARM_DOWN and "no-such-binary" in alarm.message
    await service.stop()
    assert service.status().state is SyncState.STOPPED and not service.status().alarms
