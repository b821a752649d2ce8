"""Command-line style options for /imagine and /quota, for every text front end (the
console's lines, Slack's `/imagine` and `/wanbot quota` text). Moved here from the
console so each front end parses the same way.

Two syntaxes are accepted and may be mixed:

    /imagine a cat on a roof --negative blurry --aspect 16:9 -n 2 --image ./cat.png
    /imagine prompt:a cat on a roof negative:blurry aspect:16:9 count:2 image1:./cat.png

Words belong to the prompt unless an option took them: `--negative`/`negative:`
take every word up to the next option, the other options take one value.
Double quotes group words (`--image "my cat.png"`); they are kept inside the
prompt, where they often mean text to draw.

A word that looks like an option but is none (`--aspcet`, `aspcet:16:9`) is
refused with the closest real one rather than sent, and paid for, as part of the
prompt. Text that must start with dashes goes after a lone `--` (everything after
it is prompt text) or in double quotes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.core.models import Period

# The user a command names when it names none (the console's local user; other front
# ends put the asker in its place).
LOCAL_USER = "local"

CLOSE_ENOUGH = 0.6  # difflib's default: "--aspcet" -> "--aspect", "--cout" -> "--count"


def closest(name: str, known: Iterable[str], cutoff: float = CLOSE_ENOUGH) -> str | None:
    found = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=cutoff)
    return found[0] if found else None


def unknown_option_text(name: str, known: Iterable[str]) -> str:
    """`unknown option --aspcet; did you mean --aspect?`"""
    match = closest(name.split("=", 1)[0], known)
    return f"unknown option {name}" + (f"; did you mean {match}?" if match else "")


class CommandError(Exception):
    """The line cannot be understood; the message says what to type instead."""


@dataclass(frozen=True)
class ImagineCommand:
    prompt: str
    negative: str | None = None
    aspect: str | None = None  # None: the default (1:1)
    count: int = 1
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuotaCommand:
    action: str  # one of QUOTA_ACTIONS
    user_id: str = LOCAL_USER
    amount: int | None = None  # a limit, a grant or a budget (None: budget off)
    period: Period | None = None
    reason: str | None = None


QUOTA_ACTIONS = ("set", "clear", "grant", "block", "unblock", "default", "budget", "report")


@dataclass(frozen=True)
class Token:
    raw: str  # as typed, quotes included

    @property
    def value(self) -> str:
        return self.raw.replace('"', "")


_TOKEN = re.compile(r'(?:[^\s"]+|"[^"]*")+')
_KEY = re.compile(r"^([a-z_0-9]+):(.*)$", re.IGNORECASE | re.DOTALL)


def tokenize(text: str) -> list[Token]:
    if text.count('"') % 2:
        # An unmatched quote is part of the text, not a grouping.
        return [Token(part) for part in text.split()]
    return [Token(match.group(0)) for match in _TOKEN.finditer(text)]


# Option names -> the field they set. Text options take many words.
_TEXT_OPTIONS = {"prompt": "prompt", "negative": "negative", "negative_prompt": "negative"}
_VALUE_OPTIONS = {
    "aspect": "aspect",
    "aspect_ratio": "aspect",
    "ar": "aspect",
    "count": "count",
    "n": "count",
    "image": "image",
    "image1": "image",
    "image2": "image",
    "image3": "image",
}
_FLAGS = {
    "--prompt": "prompt",
    "--negative": "negative",
    "--no": "negative",
    "--aspect": "aspect",
    "--ar": "aspect",
    "-n": "count",
    "--count": "count",
    "--image": "image",
    "-i": "image",
}


def _option(token: Token) -> tuple[str | None, str | None]:
    """(field, inline value) when the token starts an option, else (None, None)."""
    raw = token.raw
    flag, _, inline = raw.partition("=")
    if flag.lower() in _FLAGS:
        return _FLAGS[flag.lower()], (inline if "=" in raw else None)
    match = _KEY.match(raw)
    if match:
        key = match.group(1).lower()
        name = _TEXT_OPTIONS.get(key) or _VALUE_OPTIONS.get(key)
        if name is not None:
            return name, match.group(2)
    return None, None


# A lone `--` ends the options: every word after it is prompt text.
END_OF_OPTIONS = "--"
_FLAG_LIKE = re.compile(r"^(--[^\s=\-][^\s=]*|-[a-z])(=.*)?$", re.IGNORECASE | re.DOTALL)
_KEYS = sorted({*_TEXT_OPTIONS, *_VALUE_OPTIONS})
# For `key:value`, much closer: "note:" or "art:deco" inside a prompt are not typos.
_KEY_CLOSE_ENOUGH = 0.82


def _misspelt(token: Token) -> str | None:
    """Why `token` is refused, when it looks like an option but is none."""
    raw = token.raw
    flag = _FLAG_LIKE.match(raw)
    if flag:
        name = flag.group(1)
        text = unknown_option_text(name, _FLAGS)
        if closest(name, _FLAGS) is None:
            text += f"; the options are {_FLAG_LIST}"
        return (
            f"{text} (text that starts with dashes goes after `{END_OF_OPTIONS}` "
            "or in double quotes)"
        )
    key = _KEY.match(raw)
    if key and key.group(2) and not key.group(1).isdigit():
        near = closest(key.group(1), _KEYS, cutoff=_KEY_CLOSE_ENOUGH)
        if near:
            return (
                f"unknown option {key.group(1)}:; did you mean {near}:? "
                f"(if it is prompt text, put it after `{END_OF_OPTIONS}` or in double quotes)"
            )
    return None


_FLAG_LIST = "--negative, --aspect, -n/--count, --image"


def _unquote_whole(text: str) -> str:
    """`"a cat"` -> `a cat`, but `a sign saying "OPEN"` stays as it is."""
    if len(text) >= 2 and text[0] == text[-1] == '"' and text.count('"') == 2:
        return text[1:-1]
    return text


def parse_imagine(tokens: list[Token]) -> ImagineCommand:
    words: dict[str, list[str]] = {"prompt": [], "negative": []}
    negative_given = False
    values: dict[str, str] = {}
    images: list[str] = []
    current = "prompt"
    i = 0
    while i < len(tokens):
        if tokens[i].raw == END_OF_OPTIONS:
            words["prompt"] += [token.raw for token in tokens[i + 1 :]]
            break
        name, inline = _option(tokens[i])
        i += 1
        if name is None:
            if problem := _misspelt(tokens[i - 1]):
                raise CommandError(problem)
            words[current].append(tokens[i - 1].raw)
            continue
        if name in words:
            current = name
            negative_given = negative_given or name == "negative"
            if inline:
                words[name].append(inline)
            continue
        if inline:
            value = Token(inline).value
        elif i < len(tokens):
            value = tokens[i].value
            i += 1
        else:
            raise CommandError(f"{name} needs a value (e.g. {_EXAMPLES[name]})")
        current = "prompt"
        if name == "image":
            images.append(value)
        else:
            values[name] = value
    count = 1
    if "count" in values:
        try:
            count = int(values["count"])
        except ValueError:
            raise CommandError(
                f"count must be a whole number from 1 to 4, not {values['count']!r}"
            ) from None
    negative = _unquote_whole(" ".join(words["negative"]).strip())
    return ImagineCommand(
        prompt=_unquote_whole(" ".join(words["prompt"]).strip()),
        negative=negative if negative_given and negative else None,
        aspect=values.get("aspect"),
        count=count,
        images=tuple(images),
    )


_EXAMPLES = {"aspect": "--aspect 16:9", "count": "-n 2", "image": "--image ./photo.png"}


@dataclass
class _Args:
    keyed: dict[str, str] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)


_QUOTA_KEYS = {"user", "limit", "images", "amount", "period", "reason", "budget"}


def _split_args(tokens: list[Token]) -> _Args:
    args = _Args()
    for token in tokens:
        match = _KEY.match(token.raw)
        if match and match.group(1).lower() in _QUOTA_KEYS:
            args.keyed[match.group(1).lower()] = Token(match.group(2)).value
        else:
            args.positional.append(token.value)
    return args


def _user(value: str) -> str:
    # Accept Discord-style mentions out of habit: <@123> -> 123.
    return value.removeprefix("<@").removeprefix("!").removesuffix(">") or LOCAL_USER


def _number(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"{what} must be a whole number, not {value!r}") from None
    if number < 0:
        raise CommandError(f"{what} cannot be negative")
    return number


def _period(value: str) -> Period:
    try:
        return Period(value.lower())
    except ValueError:
        raise CommandError(f"period must be day, week or month, not {value!r}") from None


def _is_number(value: str) -> bool:
    return value.isdigit()


_NO_USER = ("default", "budget", "report")


def parse_quota(tokens: list[Token]) -> QuotaCommand:
    if not tokens:
        raise CommandError("usage: /quota set|clear|grant|block|unblock|default|budget|report ...")
    action = tokens[0].value.lower()
    if action not in QUOTA_ACTIONS:
        choices = ", ".join(QUOTA_ACTIONS)
        raise CommandError(f"unknown /quota action {action!r}: use one of {choices}")
    args = _split_args(tokens[1:])
    rest = list(args.positional)
    user = args.keyed.get("user")
    # A leading word that is not a number or a period is the user.
    if user is None and rest and not _is_number(rest[0]) and action not in _NO_USER:
        user = rest.pop(0)
    user_id = _user(user) if user else LOCAL_USER

    if action in ("set", "default"):
        limit = args.keyed.get("limit") or (rest.pop(0) if rest else None)
        if limit is None:
            raise CommandError(f"/quota {action} needs a limit, e.g. /quota {action} 10 day")
        period_text = args.keyed.get("period") or (rest.pop(0) if rest else None)
        if action == "default" and period_text is None:
            raise CommandError("/quota default needs a period: /quota default 10 day")
        return QuotaCommand(
            action=action,
            user_id=user_id,
            amount=_number(limit, "limit"),
            period=_period(period_text) if period_text else None,
        )
    if action == "grant":
        images = args.keyed.get("images") or args.keyed.get("amount")
        images = images or (rest.pop(0) if rest else None)
        if images is None:
            raise CommandError("/quota grant needs a number of images, e.g. /quota grant local 5")
        amount = _number(images, "images")
        if amount < 1:
            raise CommandError("grant at least 1 image")
        return QuotaCommand(action=action, user_id=user_id, amount=amount)
    if action == "budget":
        budget = args.keyed.get("budget") or args.keyed.get("images") or (rest[0] if rest else None)
        if budget is None:
            raise CommandError("/quota budget needs images per month, or `off`")
        if budget.lower() in ("off", "none", "unlimited"):
            return QuotaCommand(action=action, amount=None)
        return QuotaCommand(action=action, amount=_number(budget, "budget"))
    if action == "block":
        reason = args.keyed.get("reason") or " ".join(rest) or None
        return QuotaCommand(action=action, user_id=user_id, reason=reason)
    return QuotaCommand(action=action, user_id=user_id)
