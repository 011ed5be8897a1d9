"""Settings from the environment: numbers are checked, and each refusal names
the variable and what it must be."""

from __future__ import annotations

import pytest

from atomchat_server.config import ConfigError, Settings


def test_durations_and_rates_are_read_as_numbers() -> None:
    settings = Settings.from_environment(
        {"ATOMCHAT_HEARTBEAT_SECONDS": "2.5", "ATOMCHAT_MESSAGE_RATE": "0"}
    )
    assert settings.heartbeat_seconds == 2.5
    assert settings.limits.message_rate == 0


def test_an_empty_variable_means_the_default() -> None:
    assert Settings.from_environment({"ATOMCHAT_HEARTBEAT_SECONDS": ""}).heartbeat_seconds == (
        Settings().heartbeat_seconds
    )


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("ATOMCHAT_HEARTBEAT_SECONDS", "soon", "ATOMCHAT_HEARTBEAT_SECONDS must be a number"),
        ("ATOMCHAT_HEARTBEAT_SECONDS", "0", "ATOMCHAT_HEARTBEAT_SECONDS must be positive"),
        ("ATOMCHAT_DATABASE_TIMEOUT", "-1", "ATOMCHAT_DATABASE_TIMEOUT must be positive"),
        ("ATOMCHAT_MESSAGE_RATE", "fast", "ATOMCHAT_MESSAGE_RATE must be a number"),
        ("ATOMCHAT_MESSAGE_RATE", "-1", "must not be negative (0 turns the limit off)"),
        ("ATOMCHAT_STREAM_BUFFER", "many", "ATOMCHAT_STREAM_BUFFER must be a whole number"),
        ("ATOMCHAT_TRUSTED_PROXIES", "envoy", "ATOMCHAT_TRUSTED_PROXIES"),
    ],
)
def test_a_malformed_value_is_refused_by_name(name: str, raw: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_environment({name: raw})
