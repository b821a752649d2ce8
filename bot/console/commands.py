"""Parsing console lines into commands: the console's own commands (/help, /quit,
/clear, bare words) on top of the option syntax every text front end shares
(bot/chat/options.py, which documents it)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.chat.options import (
    END_OF_OPTIONS,
    LOCAL_USER,
    CommandError,
    ImagineCommand,
    QuotaCommand,
    Token,
    _misspelt,
    _option,
    _user,
    parse_imagine,
    parse_quota,
    tokenize,
)

HELP = """\
Commands (Discord-style key:value options work too, e.g. /imagine prompt:a cat count:2):
  /imagine PROMPT [--negative TEXT] [--aspect 16:9] [-n 1-4] [--image PATH_OR_URL]...
  /edit PATH_OR_URL PROMPT [options]     change an image (image-to-image)
  /usage [USER]                          images used and left in this period
  /quota set [USER] LIMIT [day|week|month]   a user's limit
  /quota clear [USER]                    back to the default limit
  /quota grant [USER] IMAGES             extra images for this period
  /quota block [USER] [REASON]  /quota unblock [USER]
  /quota default LIMIT day|week|month    the limit for users without their own
  /quota budget IMAGES|off               images per month for everyone together
  /quota report                          this month's images and cost per user
  /jobs                                  your recent jobs
  /show JOB_ID                           a job's saved images, or what became of it
  /cancel JOB_ID                         stop a queued or running job
  /clear                                 clear the screen
  /help   /quit                          (`help`, `clear`, `exit` and `quit` work without the slash)
A line without a command is a prompt: typing `a red fox` is `/imagine a red fox`.
Text that starts with dashes: put it after `--` (/imagine neon sign -- --open late--)
or in double quotes. USER defaults to you (`local`)."""


@dataclass(frozen=True)
class UsageCommand:
    user_id: str = LOCAL_USER


@dataclass(frozen=True)
class JobsCommand:
    pass


@dataclass(frozen=True)
class CancelCommand:
    job_id: str


@dataclass(frozen=True)
class ShowCommand:
    job_id: str


@dataclass(frozen=True)
class HelpCommand:
    pass


@dataclass(frozen=True)
class QuitCommand:
    pass


@dataclass(frozen=True)
class ClearCommand:
    pass


Command = (
    ImagineCommand
    | UsageCommand
    | QuotaCommand
    | JobsCommand
    | CancelCommand
    | ShowCommand
    | HelpCommand
    | QuitCommand
    | ClearCommand
)


def parse_edit(tokens: list[Token]) -> ImagineCommand:
    """`/edit PATH prompt...`: the first word is the image unless given as an option."""
    first_is_image = (
        bool(tokens)
        and _option(tokens[0])[0] is None
        and tokens[0].raw != END_OF_OPTIONS
        and _misspelt(tokens[0]) is None
    )
    command = parse_imagine(tokens[1:] if first_is_image else tokens)
    if first_is_image:
        command = ImagineCommand(
            prompt=command.prompt,
            negative=command.negative,
            aspect=command.aspect,
            count=command.count,
            images=(tokens[0].value, *command.images),
        )
    if not command.images:
        raise CommandError("/edit needs an image: /edit ./photo.png make it snowy")
    return command


# Typed without the slash these are commands, never prompts: a paid image of the
# word "exit" is nobody's intent. `/imagine exit` still draws it.
_BARE_COMMANDS = {"exit": "quit", "quit": "quit", "help": "help", "clear": "clear"}


def parse_command(line: str) -> Command | None:
    """One console line -> a command; None for a blank line. Raises CommandError."""
    text = line.strip()
    if not text:
        return None
    bare = _BARE_COMMANDS.get(text.lower().rstrip("!."))
    if bare is not None:
        text = "/" + bare
    if not text.startswith("/"):
        return parse_imagine(tokenize(text))
    name, _, rest = text[1:].partition(" ")
    name = name.lower()
    tokens = tokenize(rest)
    if name in ("imagine", "i", "generate"):
        return parse_imagine(tokens)
    if name == "edit":
        return parse_edit(tokens)
    if name == "usage":
        return UsageCommand(user_id=_user(tokens[0].value) if tokens else LOCAL_USER)
    if name == "quota":
        return parse_quota(tokens)
    if name == "jobs":
        return JobsCommand()
    if name in ("cancel", "show"):
        if not tokens:
            raise CommandError(f"usage: /{name} JOB_ID (see /jobs for ids)")
        job_class = CancelCommand if name == "cancel" else ShowCommand
        return job_class(job_id=tokens[0].value)
    if name in ("help", "h", "?"):
        return HelpCommand()
    if name in ("quit", "exit", "q"):
        return QuitCommand()
    if name in ("clear", "cls"):
        return ClearCommand()
    raise CommandError(f"unknown command /{name}: type /help for the list")
