"""All configuration, read from the environment and `.env`.

Built once in the entry point (never at import time) and passed down. Every
field here is documented in `.env.example` with its default.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ProviderName(StrEnum):
    APIXO = "apixo"
    EVOLINK = "evolink"
    DASHSCOPE = "dashscope"
    MOCK = "mock"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Discord
    discord_token: SecretStr | None = None
    discord_dev_guild_id: int | None = None
    # Only tests and self-hosted gateways change these.
    discord_api_base_url: str | None = None
    discord_gateway_url: str | None = None
    # Sharding (docs/discord.md): unset, one gateway connection. SHARD_IDS: the shards
    # this process runs (comma-separated); unset, all SHARD_COUNT of them.
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: Annotated[list[int] | None, NoDecode] = None

    # Slack (Socket Mode): the bot token (xoxb-) and the app-level token (xapp-, scope
    # connections:write); both set starts the Slack front end. The API base URL only
    # changes for tests and proxies (keep its trailing slash).
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_base_url: str = "https://slack.com/api/"
    # Slack user ids that are admins here besides the workspace's admins and owners.
    slack_admin_user_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Provider choice; empty means: the first provider with a key, else mock.
    wan_provider: ProviderName | None = None
    apixo_api_key: SecretStr | None = None
    apixo_base_url: str = "https://api.apixo.ai/api/v1"
    evolink_api_key: SecretStr | None = None
    evolink_base_url: str = "https://api.evolink.ai"
    evolink_files_url: str = "https://files-api.evolink.ai"
    dashscope_api_key: SecretStr | None = None
    dashscope_base_url: str = "https://dashscope-intl.aliyuncs.com/api/v1"
    mock_latency_seconds: float = Field(default=3.0, ge=0)
    # USD per generated image, for usage reports; empty means the provider's list price.
    price_per_image_usd: float | None = Field(default=None, ge=0)

    # Storage and output
    database_path: Path = Path("./data/wanbot.sqlite3")
    # postgresql://... selects PostgreSQL instead of SQLite. A secret: it may hold a password.
    database_url: SecretStr | None = None
    # PostgreSQL with several bot processes: how long a process holds a job without
    # renewing it before another process takes the job over (it renews every third).
    lease_seconds: float = Field(default=30.0, ge=1)
    output_dir: Path = Path("./output")

    # Logging
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT

    # Job engine
    job_deadline_seconds: float = Field(default=900.0, gt=0)
    provider_concurrency: int = Field(default=8, ge=1)
    provider_status_rps: float = Field(default=5.0, gt=0)
    max_running_jobs_per_user: int = Field(default=2, ge=1)
    max_queued_jobs_per_user: int = Field(default=5, ge=0)
    # At most one progress message edit per job this often (first and last always sent).
    progress_update_seconds: float = Field(default=3.0, gt=0)
    # Posting results: one try that gets no answer is given up on (and retried) after
    # this long; all tries together may take at most the deadline, then the job fails
    # and is refunded.
    delivery_attempt_timeout_seconds: float = Field(default=120.0, gt=0)
    delivery_deadline_seconds: float = Field(default=600.0, gt=0)

    # Quota defaults for servers that set nothing (images per period)
    default_user_limit: int = Field(default=25, ge=0)
    default_quota_period: str = Field(default="day", pattern="^(day|week|month)$")

    # Provider callbacks (APIXO and EvoLink); polling stays on as a safety net.
    callback_enabled: bool = False
    callback_public_url: str | None = None
    callback_host: str = "0.0.0.0"
    callback_port: int = Field(default=8080, ge=1, le=65535)
    # Input images served by the bot itself (GET /media/...) for providers that only
    # fetch public URLs (APIXO): the public address that reaches CALLBACK_HOST:
    # CALLBACK_PORT. Empty: CALLBACK_PUBLIC_URL; neither: local and private images are
    # refused on APIXO. At most MEDIA_MAX_BYTES are held in memory at once.
    media_public_url: str | None = None
    media_max_bytes: int = Field(default=200 * 1024 * 1024, gt=0)

    # Health and metrics (/healthz, /metrics); no port means off. The same port as
    # CALLBACK_PORT shares the callback server (and its host).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # Finished jobs older than this are deleted (the ledger stays); 0 keeps them all.
    job_retention_days: int = Field(default=90, ge=0)

    # Downloads: only from these hosts (Discord's CDN and the providers'
    # result hosts); private and loopback addresses are refused unless listed.
    download_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "cdn.discordapp.com",
            "media.discordapp.net",
            "*.apixo.ai",
            "*.evolink.ai",
            "*.aliyuncs.com",
        ]
    )
    download_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    # Result bytes held by deliveries at once (downloaded, not yet posted).
    delivery_max_bytes_in_flight: int = Field(default=200 * 1024 * 1024, gt=0)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("download_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("slack_admin_user_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "discord_token",
        "slack_bot_token",
        "slack_app_token",
        "apixo_api_key",
        "evolink_api_key",
        "dashscope_api_key",
        "database_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `KEY=` in .env means "not configured", not "an empty key".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(
        "discord_dev_guild_id",
        "wan_provider",
        "price_per_image_usd",
        "discord_api_base_url",
        "discord_gateway_url",
        "callback_public_url",
        "media_public_url",
        "metrics_port",
        "shard_count",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _split_shard_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            if not parts:
                return None
            if not all(part.isdigit() for part in parts):
                raise ValueError("must be shard numbers separated by commas, like 0,2")
            return [int(part) for part in parts]
        return value

    @field_validator("media_public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// address (the bot's public base URL)")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must start with postgresql:// (empty: SQLite at DATABASE_PATH)")
        return value

    def provider_key(self, provider: ProviderName) -> SecretStr | None:
        return {
            ProviderName.APIXO: self.apixo_api_key,
            ProviderName.EVOLINK: self.evolink_api_key,
            ProviderName.DASHSCOPE: self.dashscope_api_key,
            ProviderName.MOCK: None,
        }[provider]

    def media_base_url(self) -> str | None:
        """Where providers fetch the input images the bot serves: MEDIA_PUBLIC_URL,
        else CALLBACK_PUBLIC_URL (the same HTTP server), else None."""
        return self.media_public_url or self.callback_public_url or None

    def effective_provider(self) -> ProviderName:
        """The provider to use: the configured one, else the first with a key, else mock."""
        if self.wan_provider is not None:
            return self.wan_provider
        for name in (ProviderName.APIXO, ProviderName.EVOLINK, ProviderName.DASHSCOPE):
            if self.provider_key(name) is not None:
                return name
        return ProviderName.MOCK

    def problems(self) -> list[str]:
        """Cross-field problems that single-field validation cannot see."""
        found: list[str] = []
        provider = self.effective_provider()
        if provider is not ProviderName.MOCK and self.provider_key(provider) is None:
            env = f"{provider.value.upper()}_API_KEY"
            found.append(
                f"WAN_PROVIDER={provider.value} needs {env}: set it, or use WAN_PROVIDER=mock"
            )
        if self.callback_enabled and not self.callback_public_url:
            found.append(
                "CALLBACK_ENABLED=true needs CALLBACK_PUBLIC_URL (the https address providers call)"
            )
        found += self._shard_problems()
        return found

    def _shard_problems(self) -> list[str]:
        ids = self.shard_ids
        if ids is None:
            return []
        if self.shard_count is None:
            return ["SHARD_IDS needs SHARD_COUNT (the total number of shards of the bot)"]
        found: list[str] = []
        outside = sorted({i for i in ids if i >= self.shard_count})
        if outside:
            found.append(
                f"SHARD_IDS: {_shards(outside)} outside 0..{self.shard_count - 1} "
                f"(SHARD_COUNT={self.shard_count})"
            )
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            found.append(f"SHARD_IDS: {_shards(twice)} listed twice")
        return found


def _shards(ids: list[int]) -> str:
    listed = ", ".join(map(str, ids))
    return f"shard {listed} is" if len(ids) == 1 else f"shards {listed} are"


class SettingsError(Exception):
    """Settings could not be built; `lines` holds one readable line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build settings, turning validation errors into one line per problem."""
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            secret = "KEY" in name or "TOKEN" in name or name == "DATABASE_URL"
            shown = "" if secret or given is None else f" (got {given!r})"
            lines.append(f"{name}: {message}{shown}")
        raise SettingsError(lines) from None
    problems = settings.problems()
    if problems:
        raise SettingsError(problems)
    return settings


# Prefixes only wanbot's settings use: an unknown name with one is surely meant for us.
_OUR_PREFIXES = ("DISCORD_", "APIXO_", "EVOLINK_", "DASHSCOPE_", "WAN_", "WANBOT_")


def unknown_setting_warnings(env_file: str | Path | None, environ: Mapping[str, str]) -> list[str]:
    """One line per name in `env_file` or `environ` that looks meant for wanbot but is
    not a setting (a typo such as DISCORD_TOKNE is otherwise silently ignored), with the
    closest real setting. Names unlike ours (PATH, HOME, a compose file's POSTGRES_*)
    are left alone: close to a setting, or carrying one of our own prefixes."""
    known = [name.upper() for name in Settings.model_fields]
    sources: list[tuple[str, list[str]]] = []
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        sources.append((f"in {env_file}", list(dotenv_values(env_file, encoding="utf-8"))))
    sources.append(("in the environment", list(environ)))
    lines: list[str] = []
    seen: set[str] = set()
    for where, names in sources:
        for name in names:
            upper = name.upper()
            if upper in known or upper in seen:
                continue
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
            if not close and not upper.startswith(_OUR_PREFIXES):
                continue
            close = close or difflib.get_close_matches(upper, known, n=1, cutoff=0.5)
            seen.add(upper)
            hint = f"did you mean {close[0]}?" if close else "see .env.example for the settings"
            lines.append(f"{name} ({where}) is not a wanbot setting: {hint}")
    return lines
