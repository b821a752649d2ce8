"""Console line parsing: both syntaxes, quoting, and clear errors."""

from __future__ import annotations

import pytest

from bot.console.commands import (
    CancelCommand,
    CommandError,
    HelpCommand,
    ImagineCommand,
    JobsCommand,
    QuitCommand,
    QuotaCommand,
    UsageCommand,
    parse_command,
)
from bot.core.models import Period


def test_flag_syntax() -> None:
    command = parse_command(
        "/imagine a cat on a roof --negative blurry, low quality --aspect 16:9 -n 2 "
        "--image ./cat.png --image https://example.com/b.png"
    )
    assert command == ImagineCommand(
        prompt="a cat on a roof",
        negative="blurry, low quality",
        aspect="16:9",
        count=2,
        images=("./cat.png", "https://example.com/b.png"),
    )


def test_discord_key_value_syntax() -> None:
    command = parse_command(
        "/imagine prompt:a cat: the sequel count:2 image1:./x.png negative:dogs aspect:3:4"
    )
    assert command == ImagineCommand(
        prompt="a cat: the sequel", negative="dogs", aspect="3:4", count=2, images=("./x.png",)
    )


def test_words_after_a_value_option_return_to_the_prompt() -> None:
    command = parse_command("/imagine a fox --aspect 16:9 in the snow --count=3")
    assert isinstance(command, ImagineCommand)
    assert command.prompt == "a fox in the snow"
    assert (command.aspect, command.count) == ("16:9", 3)


def test_quotes_group_paths_but_stay_in_prompts() -> None:
    command = parse_command('/imagine a sign that says "OPEN LATE" --image "my photos/cat.png"')
    assert isinstance(command, ImagineCommand)
    assert command.prompt == 'a sign that says "OPEN LATE"'
    assert command.images == ("my photos/cat.png",)
    whole = parse_command('/imagine "a cat" -n 1')
    assert isinstance(whole, ImagineCommand) and whole.prompt == "a cat"
    # An apostrophe or a lone quote is just text.
    odd = parse_command("/imagine a cat's hat with a \" mark")
    assert isinstance(odd, ImagineCommand) and odd.prompt == "a cat's hat with a \" mark"


def test_plain_text_is_a_prompt_and_blank_is_nothing() -> None:
    assert parse_command("a red fox") == ImagineCommand(prompt="a red fox")
    assert parse_command("   ") is None


def test_edit_takes_the_image_first() -> None:
    assert parse_command("/edit ./in.png make it snowy -n 2") == ImagineCommand(
        prompt="make it snowy", count=2, images=("./in.png",)
    )
    assert parse_command("/edit image:./in.png prompt:make it red") == ImagineCommand(
        prompt="make it red", images=("./in.png",)
    )
    with pytest.raises(CommandError, match="needs an image"):
        parse_command("/edit prompt:only words")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/imagine a cat -n two", "count must be a whole number"),
        ("/imagine a cat --aspect", "aspect needs a value"),
        ("/frobnicate", "unknown command /frobnicate"),
        ("/cancel", "usage: /cancel"),
        ("/quota launch", "unknown /quota action"),
        ("/quota set", "needs a limit"),
        ("/quota set bob 5 fortnight", "period must be day, week or month"),
        ("/quota grant bob -3", "cannot be negative"),
        ("/quota grant bob 0", "at least 1"),
    ],
)
def test_errors_say_what_to_type(line: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(line)


def test_quota_commands() -> None:
    assert parse_command("/quota set 10 week") == QuotaCommand(
        action="set", user_id="local", amount=10, period=Period.WEEK
    )
    assert parse_command("/quota set bob 5") == QuotaCommand(action="set", user_id="bob", amount=5)
    assert parse_command("/quota set user:<@42> limit:3 period:month") == QuotaCommand(
        action="set", user_id="42", amount=3, period=Period.MONTH
    )
    assert parse_command("/quota grant bob 4") == QuotaCommand(
        action="grant", user_id="bob", amount=4
    )
    assert parse_command("/quota block bob too many cats") == QuotaCommand(
        action="block", user_id="bob", reason="too many cats"
    )
    assert parse_command("/quota unblock") == QuotaCommand(action="unblock")
    assert parse_command("/quota clear bob") == QuotaCommand(action="clear", user_id="bob")
    assert parse_command("/quota budget 500") == QuotaCommand(action="budget", amount=500)
    assert parse_command("/quota budget off") == QuotaCommand(action="budget", amount=None)
    assert parse_command("/quota default 7 day") == QuotaCommand(
        action="default", amount=7, period=Period.DAY
    )
    assert parse_command("/quota report") == QuotaCommand(action="report")


def test_other_commands() -> None:
    assert parse_command("/usage") == UsageCommand()
    assert parse_command("/usage bob") == UsageCommand(user_id="bob")
    assert parse_command("/jobs") == JobsCommand()
    assert parse_command("/cancel j-123") == CancelCommand(job_id="j-123")
    assert parse_command("/help") == HelpCommand()
    assert parse_command("/QUIT") == QuitCommand()
