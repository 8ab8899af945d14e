"""A wrong setting fails at start with a message naming the setting and the value."""

from __future__ import annotations

import pytest

from config.settings import InvalidSettings, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read here come from the test's own variables only."""
    import os

    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"CONVEYOR_BROKER__URL": "kafka://127.0.0.1:9092"}, ["broker.url", "'kafka'", "kafka://"]),
        ({"CONVEYOR_BROKER__URL": "sqs://x"}, ["broker.url", "'sqs'"]),
        ({"CONVEYOR_DATABASE__URL": "mysql://root@127.0.0.1/x"}, ["database.url", "'mysql'"]),
        (
            {"CONVEYOR_WORKER__TIME_LIMIT_S": "-5"},
            ["worker.time_limit_s", "'-5'", "CONVEYOR_WORKER__TIME_LIMIT_S"],
        ),
        ({"CONVEYOR_WORKER__CONCURRENCY": "zero"}, ["worker.concurrency", "zero"]),
        (
            {"CONVEYOR_WORKER__SOFT_TIME_LIMIT_S": "400", "CONVEYOR_WORKER__TIME_LIMIT_S": "300"},
            ["worker.soft_time_limit_s=400", "worker.time_limit_s=300"],
        ),
        (
            {"CONVEYOR_BROKER__VISIBILITY_TIMEOUT_S": "200"},
            ["worker.time_limit_s=360", "broker.visibility_timeout_s=200"],
        ),
        ({"CONVEYOR_PROFILE": "production"}, ["web.secret_key"]),
        ({"CONVEYOR_PROFILE": "staging"}, ["profile", "staging"]),
    ],
)
def test_wrong_value_names_the_setting_and_the_value(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: list[str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings) as failed:
        load_settings()
    message = str(failed.value)
    for fragment in expected:
        assert fragment in message, message


def test_password_in_a_bad_broker_url_is_masked_in_our_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_BROKER__URL", "kafka://user:hunter2@broker:9092")
    with pytest.raises(InvalidSettings) as failed:
        load_settings()
    assert "hunter2" not in str(failed.value)
    assert "kafka://user:***@broker:9092" in str(failed.value)


def test_nested_sections_are_read_through_double_underscores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_BROKER__URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("CONVEYOR_DATABASE__URL", "postgresql://app@db:5432/jobs")
    monkeypatch.setenv("CONVEYOR_WORKER__MAX_RETRIES", "7")
    settings = Settings(_env_file=None)
    assert settings.broker_url == "amqp://guest:guest@127.0.0.1:5672//"
    assert not settings.broker.is_redis
    assert settings.database_url == "postgresql+psycopg://app@db:5432/jobs"
    assert settings.worker.max_retries == 7
    assert not settings.embedded_broker and not settings.embedded_database


def test_no_urls_means_embedded_servers() -> None:
    settings = Settings(_env_file=None)
    assert settings.embedded_broker and settings.embedded_database
    assert settings.broker_url == f"redis://127.0.0.1:{settings.embedded.redis_port}/0"
    assert f":{settings.embedded.postgres_port}/conveyor" in settings.database_url


def test_flower_refuses_to_listen_off_loopback_without_auth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.__main__ import main
    from config.settings import get_settings

    monkeypatch.setenv("CONVEYOR_FLOWER__HOST", "0.0.0.0")
    get_settings.cache_clear()
    try:
        assert main(["flower"]) == 2
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "CONVEYOR_FLOWER__BASIC_AUTH" in capsys.readouterr().err
