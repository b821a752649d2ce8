"""The app manifest parses back to the same data and subscribes what the adapter needs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from bot.slack.manifest import (
    EDIT_SHORTCUT,
    EVENT_SCOPES,
    IMAGINE,
    WANBOT,
    build_manifest,
    listeners,
    manifest_yaml,
    to_yaml,
)


def parsed() -> dict[str, Any]:
    data = yaml.safe_load(manifest_yaml())
    assert isinstance(data, dict)
    return data


def test_yaml_parses_back_to_the_manifest() -> None:
    assert parsed() == build_manifest()
    assert yaml.safe_load(manifest_yaml("Wan Images")) == build_manifest("Wan Images")


def test_every_entry_point_is_in_the_manifest() -> None:
    assert listeners(parsed()) == {
        ("command", IMAGINE),
        ("command", WANBOT),
        ("shortcut", EDIT_SHORTCUT),
        ("event", "app_mention"),
        # message.channels/groups/im/mpim all arrive as "message": one listener, which
        # also sees the file_share form of an upload that mentions the bot.
        ("event", "message"),
    }
    [shortcut] = parsed()["features"]["shortcuts"]
    assert shortcut["type"] == "message" and shortcut["name"] == "Edit image"


def test_every_subscription_has_its_scope_and_socket_mode_is_on() -> None:
    data = parsed()
    scopes = set(data["oauth_config"]["scopes"]["bot"])
    events = data["settings"]["event_subscriptions"]["bot_events"]
    assert events and all(EVENT_SCOPES[event] in scopes for event in events)
    # Commands and shortcuts, results in threads, user files, admin checks.
    assert {"commands", "chat:write", "files:read", "files:write", "users:read"} <= scopes
    assert data["settings"]["socket_mode_enabled"] is True
    assert data["settings"]["interactivity"]["is_enabled"] is True
    text = manifest_yaml()
    assert "url" not in text  # Socket Mode: no request URL, no public endpoint


@pytest.mark.parametrize(
    "value",
    [
        "yes",
        "no",
        "null",
        "",
        "123",
        "1.5",
        "a: b",
        "x #y",
        "#x",
        "-x",
        "[x]",
        "{x}",
        "*x",
        "&x",
        "!x",
        "%x",
        "@x",
        "`x",
        "'x'",
        '"x"',
        "x:",
        "trailing ",
        "é ünïcode",
        "two\nlines",
        "tab\there",
        "/imagine",
        "chat:write",
    ],
)
def test_emitter_keeps_every_string(value: str) -> None:
    data = {"key": value, "list": [value, {"inner": value}], "empty": [], "none": {}}
    assert yaml.safe_load(to_yaml(data)) == data


def test_cli_prints_the_manifest(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import run_command

    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    assert run_command(["slack", "manifest"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == build_manifest()
