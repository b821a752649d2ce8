"""`/wanbot usage | jobs | show | cancel | quota ... | config ... | help`: the words of
the command mapped onto the chat layer's use cases (which check who may do what)."""

from __future__ import annotations

from bot.chat.options import LOCAL_USER, CommandError, parse_quota, tokenize
from bot.chat.service import ChatService
from bot.slack.conversation import SlackConversation
from bot.slack.front import Card_or_None, SlackFront, plain_ids

USAGE = (
    "usage: `/wanbot usage [@user]` · `/wanbot jobs` · `/wanbot show JOB_ID` · "
    "`/wanbot cancel JOB_ID` · `/wanbot quota set|clear|grant|block|unblock|default|budget|"
    "report ...` · `/wanbot config [normalize on|off | exempt on|off | "
    "channels add|remove #channel | channels clear | alerts #channel|off]` · "
    "`/wanbot help`"
)
ALERTS_FALLBACK = "the admins listed in SLACK_ADMIN_USER_IDS, by direct message"
_SWITCH = {"on": True, "off": False, "yes": True, "no": False, "true": True, "false": False}


def _user(value: str) -> str:
    return value.removeprefix("<@").removesuffix(">")


async def run_wanbot(front: SlackFront, conv: SlackConversation, text: str) -> Card_or_None:
    tokens = tokenize(plain_ids(text))
    if not tokens:
        return front.help_card()
    name, args = tokens[0].value.lower(), [t.value for t in tokens[1:]]
    chat = front.chat
    if name == "help":
        return front.help_card()
    if name == "usage":
        return await chat.admin.usage(conv, _user(args[0]) if args else None)
    if name == "jobs":
        return await chat.actions.jobs(conv)
    if name in ("show", "cancel"):
        if not args:
            raise CommandError(f"`/wanbot {name}` needs a job id (`/wanbot jobs` lists them)")
        if name == "show":
            return await chat.actions.show(conv, args[0])
        return await chat.actions.cancel(conv, args[0])
    if name == "quota":
        return await _quota(front, conv, text)
    if name == "config":
        return await _config(chat, conv, args)
    raise CommandError(f"unknown command {name!r}. {USAGE}")


async def _quota(front: SlackFront, conv: SlackConversation, text: str) -> Card_or_None:
    chat = front.chat
    chat.admin.require_admin(conv)  # before saying anything about the arguments
    command = parse_quota(tokenize(plain_ids(text))[1:])
    admin = chat.admin
    user = conv.user_id if command.user_id == LOCAL_USER else _user(command.user_id)
    action = command.action
    if action == "set":
        assert command.amount is not None
        return await admin.set_user_limit(conv, user, command.amount, command.period)
    if action == "clear":
        return await admin.clear_user_limit(conv, user)
    if action == "grant":
        assert command.amount is not None
        return await admin.grant(conv, user, command.amount)
    if action == "block":
        return await admin.block(conv, user, command.reason)
    if action == "unblock":
        return await admin.unblock(conv, user)
    if action == "default":
        assert command.amount is not None and command.period is not None
        return await admin.set_default(conv, command.amount, command.period)
    if action == "budget":
        return await admin.set_budget(conv, command.amount)
    card, report = await admin.report(conv)
    front.send_chart(conv.user_id, report)  # by direct message: ephemerals carry no files
    return card


async def _config(chat: ChatService, conv: SlackConversation, args: list[str]) -> Card_or_None:
    admin = chat.admin
    if not args or args[0].lower() == "show":
        return await admin.show_config(conv)
    what, rest = args[0].lower(), [a.lower() for a in args[1:]]
    if what in ("normalize", "exempt"):
        if not rest or rest[0] not in _SWITCH:
            raise CommandError(f"`/wanbot config {what} on` or `off`")
        if what == "normalize":
            return await admin.set_normalization(conv, _SWITCH[rest[0]])
        return await admin.set_exempt(conv, _SWITCH[rest[0]])
    if what == "alerts":
        if not rest or (rest[0] != "off" and not args[1].startswith("C")):
            raise CommandError("`/wanbot config alerts #channel` or `off`")
        channel = None if rest[0] == "off" else args[1]
        return await admin.set_alerts(conv, channel, fallback=ALERTS_FALLBACK)
    if what == "channels":
        if not rest or rest[0] not in ("add", "remove", "clear"):
            raise CommandError("`/wanbot config channels add|remove #channel` or `clear`")
        channel = args[2] if len(args) > 2 else None
        return await admin.change_channels(conv, rest[0], channel)
    raise CommandError(f"unknown setting {what!r}. {USAGE}")
