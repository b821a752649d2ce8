"""Which of the bot's channel permissions a job needs, and which are missing."""

from __future__ import annotations

import discord

from bot.core.errors import NotAllowed


def is_thread(channel: object) -> bool:
    return isinstance(channel, discord.Thread)


def missing_for_job(
    perms: discord.Permissions, *, in_thread: bool, creates_thread: bool
) -> list[str]:
    """Names (as the Discord UI shows them) of permissions the bot lacks to run a job:
    post a status message, create the results thread, upload images with embeds."""
    needed: list[tuple[bool, str]] = [
        (perms.view_channel, "View Channel"),
        (
            perms.send_messages_in_threads if in_thread else perms.send_messages,
            "Send Messages in Threads" if in_thread else "Send Messages",
        ),
        (perms.attach_files, "Attach Files"),
        (perms.embed_links, "Embed Links"),
    ]
    if creates_thread:
        needed += [
            (perms.create_public_threads, "Create Public Threads"),
            (perms.send_messages_in_threads, "Send Messages in Threads"),
        ]
    missing: list[str] = []
    for granted, name in needed:
        if not granted and name not in missing:
            missing.append(name)
    return missing


def require_job_permissions(
    perms: discord.Permissions, *, in_thread: bool, creates_thread: bool
) -> None:
    """Raise NotAllowed naming what an admin must grant, before anything is spent."""
    missing = missing_for_job(perms, in_thread=in_thread, creates_thread=creates_thread)
    if missing:
        names = ", ".join(f"**{name}**" for name in missing)
        raise NotAllowed(
            f"I can't post images here: I'm missing {names} in this channel. "
            "Ask a server admin to grant them to the bot (or use another channel).",
            code="bot_missing_permissions",
        )


def is_admin(perms: discord.Permissions) -> bool:
    return perms.administrator or perms.manage_guild
