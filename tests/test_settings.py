from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ProviderName, SettingsError, load_settings


def test_defaults_pick_mock_without_keys() -> None:
    settings = load_settings(env_file=None)
    assert settings.effective_provider() is ProviderName.MOCK
    assert str(settings.database_path).endswith("wanbot.sqlite3")


def test_first_provider_with_a_key_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLINK_API_KEY", "ek-123456")
    settings = load_settings(env_file=None)
    assert settings.effective_provider() is ProviderName.EVOLINK
    assert "ek-123456" not in repr(settings)


def test_blank_key_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIXO_API_KEY", "  ")
    assert load_settings(env_file=None).apixo_api_key is None


def test_broken_settings_give_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    monkeypatch.setenv("JOB_DEADLINE_SECONDS", "-3")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    lines = info.value.lines
    assert len(lines) == 2
    assert any(line.startswith("LOG_FORMAT:") for line in lines)
    assert any(line.startswith("JOB_DEADLINE_SECONDS:") for line in lines)


def test_provider_without_key_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAN_PROVIDER", "dashscope")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert info.value.lines == [
        "WAN_PROVIDER=dashscope needs DASHSCOPE_API_KEY: set it, or use WAN_PROVIDER=mock"
    ]


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("LOG_LEVEL=debug\nDOWNLOAD_ALLOWED_HOSTS=a.example, 127.0.0.1\n")
    settings = load_settings(env_file=env)
    assert settings.log_level == "DEBUG"
    assert settings.download_allowed_hosts == ["a.example", "127.0.0.1"]


def test_cli_exits_2_without_traceback(tmp_path: Path) -> None:
    env = dict(__import__("os").environ)
    env["LOG_LEVEL"] = "loud"
    env["DISCORD_TOKEN"] = "tok-SECRET-abcdef"
    env["WAN_PROVIDER"] = "nope"
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "doctor"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "LOG_LEVEL:" in proc.stderr and "WAN_PROVIDER:" in proc.stderr
    assert "tok-SECRET-abcdef" not in proc.stderr + proc.stdout


def test_env_example_lists_every_setting_and_loads() -> None:
    from bot.settings import Settings

    example = Path(__file__).resolve().parents[1] / ".env.example"
    names = {
        line.split("=", 1)[0].strip()
        for line in example.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    fields = {name.upper() for name in Settings.model_fields}
    assert names == fields
    # The documented defaults are valid settings as they stand.
    assert load_settings(env_file=example).effective_provider() is ProviderName.MOCK
