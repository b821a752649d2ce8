"""The throttle on discord.py's rate-limit bucket sweeps."""

from __future__ import annotations

import discord.http

from bot.discord.ratelimits import throttle_bucket_sweeps


class _Http:
    def __init__(self) -> None:
        self.sweeps = 0

    def _try_clear_expired_ratelimits(self) -> None:
        self.sweeps += 1


def test_sweeps_run_at_most_once_per_interval() -> None:
    http = _Http()
    assert throttle_bucket_sweeps(http, interval=3600.0)
    for _ in range(100):
        http._try_clear_expired_ratelimits()
    assert http.sweeps == 1
    assert throttle_bucket_sweeps(http, interval=3600.0)  # twice: not wrapped again
    http._try_clear_expired_ratelimits()
    assert http.sweeps == 1


def test_a_client_without_the_sweep_is_left_alone() -> None:
    assert not throttle_bucket_sweeps(object())
    assert not throttle_bucket_sweeps(None)


def test_the_installed_discord_py_still_has_the_sweep() -> None:
    # If an upgrade renames it, the throttle silently does nothing: catch that here.
    assert callable(getattr(discord.http.HTTPClient, "_try_clear_expired_ratelimits", None))
