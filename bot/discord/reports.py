"""The spend chart of `/quota report` as a Discord attachment."""

from __future__ import annotations

import io
import logging

import discord

from bot.chat.starting import ChatDeps
from bot.core.models import ServerReport
from bot.reports.chart import FILENAME, spend_chart

log = logging.getLogger(__name__)


async def spend_chart_file(
    client: discord.Client, deps: ChatDeps, guild: discord.Guild | None, report: ServerReport
) -> discord.File | None:
    """The chart, drawn in the image pool; None (the report goes out without it) if
    drawing fails: the numbers in the embed matter more than the picture."""
    names: dict[str, str] = {}
    for row in report.users:
        if not row.user_id.isdigit():
            continue
        # From the caches only (no member intent, no REST per user): else the id is shown.
        user_id = int(row.user_id)
        person = (guild.get_member(user_id) if guild else None) or client.get_user(user_id)
        if person is not None:
            names[row.user_id] = person.display_name
    try:
        png = await spend_chart(
            report, names=names, now=deps.clock.now(), executor=deps.image_executor
        )
    except Exception:
        log.exception("could not draw the spend chart of server %s", report.guild_id)
        return None
    return discord.File(io.BytesIO(png), filename=FILENAME)
