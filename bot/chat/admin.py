"""/usage, /quota and /config: the same rules on every platform. Admin checks are
made here, in code, whatever the platform's own permissions hide or show."""

from __future__ import annotations

from collections.abc import Sequence

from bot.chat import cards, wording
from bot.chat.configs import SpaceConfigs
from bot.chat.starting import ChatDeps
from bot.chat.surface import Conversation
from bot.core.errors import NotAllowed
from bot.core.models import GuildConfig, Period, ServerReport


class Admin:
    def __init__(self, deps: ChatDeps, configs: SpaceConfigs) -> None:
        self._deps = deps
        self._configs = configs

    @staticmethod
    def require_admin(conv: Conversation) -> None:
        if not conv.requester.is_admin:
            raise NotAllowed(wording.admin_only(conv.style), code="admin_only")

    async def usage(self, conv: Conversation, user_id: str | None = None) -> cards.Card:
        """The asker's quota; another user's for an admin."""
        requester = conv.requester
        if user_id is not None and user_id != requester.user_id:
            self.require_admin(conv)
            report = await self._deps.quotas.usage(requester.space, user_id)
        else:
            report = await self._deps.quotas.usage(
                requester.space, requester.user_id, requester.role_ids, requester.is_admin
            )
        return cards.usage_card(report, conv.style, self._deps.clock.now())

    # ------------------------------------------------------------------- /quota
    async def set_user_limit(
        self, conv: Conversation, user_id: str, limit: int, period: Period | None
    ) -> str:
        self.require_admin(conv)
        await self._deps.quotas.set_user_limit(conv.requester.space, user_id, limit, period)
        return wording.user_limit_set(conv.style.user(user_id), limit, period)

    async def clear_user_limit(self, conv: Conversation, user_id: str) -> str:
        self.require_admin(conv)
        await self._deps.quotas.clear_user_limit(conv.requester.space, user_id)
        return wording.user_limit_cleared(conv.style.user(user_id))

    async def set_role_limit(
        self, conv: Conversation, role_id: str, role: str, limit: int | None, period: Period | None
    ) -> str:
        """`role`: how the platform names it; `limit` None removes the role's limit."""
        self.require_admin(conv)
        space = conv.requester.space
        if limit is None:
            await self._deps.quotas.clear_role_limit(space, role_id)
            return wording.role_limit_cleared(role)
        await self._deps.quotas.set_role_limit(space, role_id, limit, period)
        return wording.role_limit_set(role, limit, period)

    async def grant(self, conv: Conversation, user_id: str, images: int) -> str:
        self.require_admin(conv)
        space = conv.requester.space
        await self._deps.quotas.grant(space, user_id, images, conv.requester.user_id)
        return wording.granted(conv.style.user(user_id), images)

    async def block(self, conv: Conversation, user_id: str, reason: str | None) -> str:
        self.require_admin(conv)
        await self._deps.quotas.block(conv.requester.space, user_id, reason)
        return wording.blocked(conv.style.user(user_id))

    async def unblock(self, conv: Conversation, user_id: str) -> str:
        self.require_admin(conv)
        await self._deps.quotas.unblock(conv.requester.space, user_id)
        return wording.unblocked(conv.style.user(user_id))

    async def set_default(self, conv: Conversation, limit: int, period: Period) -> str:
        self.require_admin(conv)
        await self._deps.quotas.set_server_default(conv.requester.space, limit, period)
        return wording.default_set(limit, period)

    async def set_budget(self, conv: Conversation, images: int | None) -> str:
        self.require_admin(conv)
        await self._deps.quotas.set_server_budget(conv.requester.space, images)
        return wording.budget_set(images)

    async def report(self, conv: Conversation) -> tuple[cards.Card, ServerReport]:
        """This month's images and cost per user (the caller may attach a chart)."""
        self.require_admin(conv)
        report = await self._deps.quotas.server_report(conv.requester.space)
        return cards.report_card(report, conv.style), report

    # ------------------------------------------------------------------ /config
    async def config(self, conv: Conversation) -> GuildConfig:
        self.require_admin(conv)
        return await self._configs.get(conv.requester.space)

    async def show_config(self, conv: Conversation) -> str:
        cfg = await self.config(conv)
        style = conv.style
        channels = ", ".join(style.channel(c) for c in cfg.allowed_channel_ids) or "everywhere"
        alerts = wording.alerts_place(
            style.channel(cfg.alerts_channel_id) if cfg.alerts_channel_id else None
        )
        return wording.config_text(
            cfg.delivery_mode, cfg.normalize_images, channels, cfg.admin_exempt, alerts, style
        )

    async def _change(self, conv: Conversation, **fields: object) -> GuildConfig:
        cfg = (await self.config(conv)).model_copy(update=fields)
        await self._configs.save(cfg)
        return cfg

    async def set_delivery(self, conv: Conversation, mode: str) -> str:
        await self._change(conv, delivery_mode=mode)
        return wording.delivery_mode_set(mode)

    async def set_normalization(self, conv: Conversation, enabled: bool) -> str:
        await self._change(conv, normalize_images=enabled)
        return wording.normalization_set(enabled)

    async def set_exempt(self, conv: Conversation, enabled: bool) -> str:
        await self._change(conv, admin_exempt=enabled)
        return wording.exempt_set(enabled)

    async def set_alerts(
        self, conv: Conversation, channel_id: str | None, *, fallback: str | None = None
    ) -> str:
        """`fallback`: where alerts go without a channel on this platform."""
        await self._change(conv, alerts_channel_id=channel_id)
        place = conv.style.channel(channel_id) if channel_id else fallback
        return wording.alerts_set(wording.alerts_place(place))

    async def change_channels(self, conv: Conversation, action: str, channel_id: str | None) -> str:
        """`action`: add, remove or clear (everywhere)."""
        cfg = await self.config(conv)
        allowed: Sequence[str] = list(cfg.allowed_channel_ids)
        if action == "clear":
            allowed = []
        elif channel_id is None:
            return f"Pick the channel to {action}."
        elif action == "add" and channel_id not in allowed:
            allowed = [*allowed, channel_id]
        elif action == "remove":
            allowed = [c for c in allowed if c != channel_id]
        await self._change(conv, allowed_channel_ids=list(allowed))
        listed = ", ".join(conv.style.channel(c) for c in allowed) or "every channel"
        return wording.channels_set(listed)
