"""Config loading: TOML, environment overrides, durations, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeqd import config as cfgmod


def test_defaults_give_a_working_daemon() -> None:
    c = cfgmod.load(None, environ={})
    assert c.actors.ingress.bind == "127.0.0.1:8080"
    assert c.store.mode == "embedded" and c.auth.mode == "dev"
    assert c.store.appendfsync == "everysec" and c.store.shards == 1


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5),
        ("2m", 120),
        ("1h", 3600),
        ("1d", 86400),
        (3, 3),
        (0.5, 0.5),
        (" 10 s ", 10),
    ],
)
def test_durations(raw: object, seconds: float) -> None:
    assert cfgmod.Duration.parse(raw, "k") == seconds


@pytest.mark.parametrize("raw", ["5 parsecs", -1, True, "", "1.2.3s", None])
def test_bad_durations_name_the_key(raw: object) -> None:
    with pytest.raises(cfgmod.ConfigError, match=r"^actors\.reaper\.interval: "):
        cfgmod.Duration.parse(raw, "actors.reaper.interval")


def test_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[actors.reaper]\ninterval = "2s"\nbatch = 10\n[store]\nprefix = "a"\n')
    c = cfgmod.load(
        f,
        environ={
            "CODEQD_ACTORS__REAPER__BATCH": "20",
            "CODEQD_ACTORS__INGRESS__BIND": "0.0.0.0:9000",
            "CODEQD_STATE_DIR": "/tmp/x",
            "CODEQD_AUTH__PRODUCER__TOKENS": "a,b",
            "CODEQD_URL": "http://ignored",  # the CLI's client settings are not config keys
        },
    )
    assert c.actors.reaper.interval == 2 and c.actors.reaper.batch == 20
    assert c.actors.ingress.bind == "0.0.0.0:9000" and c.state_dir == "/tmp/x"
    assert c.store.prefix == "a" and c.auth.producer.tokens == ["a", "b"]
    assert c.source == str(f)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CODEQD_ACTORS__REAPER__BATCH": "0"},
            "actors.reaper.batch: must be between 1 and 100000",
        ),
        ({"CODEQD_ACTORS__REAPER__BATCH": '"x"'}, "actors.reaper.batch: expected an integer"),
        ({"CODEQD_STORE__MODE": "cloud"}, "store.mode: must be one of 'embedded', 'external'"),
        ({"CODEQD_STORE__MODE": "external"}, "store.url: required when store.mode = 'external'"),
        ({"CODEQD_STORE__URL": "http://x"}, "store.url: must start with redis://"),
        ({"CODEQD_ACTORS__INGRESS__BIND": "nowhere"}, "actors.ingress.bind: expected host:port"),
        ({"CODEQD_ACTORS__REAPER__COLOUR": "1"}, "actors.reaper.colour: unknown key"),
        ({"CODEQD_STORE__SHARDS": "0"}, "store.shards: must be between 1 and 256"),
        ({"CODEQD_TRACING__SAMPLE_RATIO": "1.5"}, "tracing.sample_ratio: must be between 0"),
        ({"CODEQD_TRACING__ENDPOINT": "collector:4318"}, "tracing.endpoint: expected an http"),
        ({"CODEQD_TRACING__SERVICE_NAME": '""'}, "tracing.service_name: must not be empty"),
    ],
)
def test_errors_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(None, environ=env)
    assert str(e.value).startswith(message)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(cfgmod.ConfigError, match="does not exist"):
        cfgmod.load(tmp_path / "missing.toml", environ={})
    f = tmp_path / "bad.toml"
    f.write_text("[store\n")
    with pytest.raises(cfgmod.ConfigError, match="not valid TOML"):
        cfgmod.load(f, environ={})


def test_per_command_backoff(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[backoff.commands.email]\npolicy = "fixed"\nbase = "30s"\n')
    c = cfgmod.load(f, environ={})
    assert c.backoff.for_command("email").policy == "fixed"
    assert c.backoff.for_command("email").base == 30
    assert c.backoff.for_command("other").policy == "exp_full_jitter"


def test_secrets_are_masked() -> None:
    c = cfgmod.load(
        None,
        environ={
            "CODEQD_AUTH__DEV_SECRET": "s3cret",
            "CODEQD_WEBHOOKS__HMAC_SECRET": "h",
            "CODEQD_AUTH__WORKER__TOKENS": "t1,t2",
        },
    )
    shown = cfgmod.as_dict(c)
    assert shown["auth"]["dev_secret"] == "***" and shown["webhooks"]["hmac_secret"] == "***"
    assert shown["auth"]["worker"]["tokens"] == ["***", "***"]
    assert "s3cret" not in repr(shown)


def test_tracing_from_the_environment_and_its_headers_masked() -> None:
    c = cfgmod.load(
        None,
        environ={
            "CODEQD_TRACING__ENABLED": "true",
            "CODEQD_TRACING__ENDPOINT": "https://otel.example.com/v1/traces",
            "CODEQD_TRACING__HEADERS": '{ "x-api-key" = "k3y" }',
            "CODEQD_TRACING__SAMPLE_RATIO": "0.25",
        },
    )
    assert c.tracing.enabled and c.tracing.sample_ratio == 0.25
    assert c.tracing.headers == {"x-api-key": "k3y"} and c.tracing.service_name == "codeqd"
    shown = cfgmod.as_dict(c)
    assert shown["tracing"]["headers"] == {"x-api-key": "***"} and "k3y" not in repr(shown)
    assert not cfgmod.load(None, environ={}).tracing.enabled  # off by default
