"""Who is an admin on Slack: workspace admins and owners (`users.info`: is_admin,
is_owner, is_primary_owner; scope users:read), plus SLACK_ADMIN_USER_IDS (Slack has
no public API for channel managers [python-slack-sdk#1728]). Answers are cached a
few minutes: a command must be acked within 3 s and users.info is Tier 4."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.clock import Clock

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0
_CACHE_LIMIT = 10_000


class SlackAdmins:
    def __init__(self, client: AsyncWebClient, clock: Clock, allowlist: Iterable[str] = ()) -> None:
        self._client = client
        self._clock = clock
        self._allowlist = frozenset(allowlist)
        self._cache: OrderedDict[str, tuple[bool, float]] = OrderedDict()

    async def is_admin(self, user_id: str) -> bool:
        if user_id in self._allowlist:
            return True
        now = self._clock.monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            user = (await self._client.users_info(user=user_id))["user"]
        except SlackApiError as exc:
            # Not knowing means not an admin: admin powers are never granted by an error.
            log.warning("users.info for %s failed (%s): treated as a member", user_id, exc)
            return False
        admin = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        self._cache[user_id] = (admin, now + CACHE_SECONDS)
        self._cache.move_to_end(user_id)
        while len(self._cache) > _CACHE_LIMIT:
            self._cache.popitem(last=False)
        return admin
