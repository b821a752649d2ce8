"""Console line parsing: both syntaxes, quoting, and clear errors."""

from __future__ import annotations

import pytest

from bot.cli import build_parser
from bot.console.commands import (
    CancelCommand,
    ClearCommand,
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


# --- words that are commands, options that are typos ------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("exit", QuitCommand()),
        ("quit", QuitCommand()),
        ("  Exit  ", QuitCommand()),
        ("QUIT.", QuitCommand()),
        ("help", HelpCommand()),
        ("Help!", HelpCommand()),
        ("clear", ClearCommand()),
        ("/clear", ClearCommand()),
    ],
)
def test_bare_command_words_are_commands_not_prompts(line: str, command: object) -> None:
    assert parse_command(line) == command


def test_the_same_words_can_still_be_drawn() -> None:
    assert parse_command("/imagine exit") == ImagineCommand(prompt="exit")
    assert parse_command("help me") == ImagineCommand(prompt="help me")
    assert parse_command("exit sign") == ImagineCommand(prompt="exit sign")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/imagine a dog --aspcet 16:9", "unknown option --aspcet; did you mean --aspect?"),
        ("a dog --aspct=16:9", "unknown option --aspct; did you mean --aspect?"),
        ("a dog --cout 2", "unknown option --cout; did you mean --count?"),
        ("a dog --negativ blur", "unknown option --negativ; did you mean --negative?"),
        ("a dog --imgae x.png", "unknown option --imgae; did you mean --image?"),
        ("a dog -x", "unknown option -x; the options are --negative, --aspect"),
        ("a dog aspcet:16:9", "unknown option aspcet:; did you mean aspect:?"),
        ("a dog cout:2", "unknown option cout:; did you mean count:?"),
        ("/edit ./in.png red --aspcet 1:1", "unknown option --aspcet; did you mean --aspect?"),
        ("/edit --aspcet 1:1 ./in.png red", "unknown option --aspcet; did you"),
    ],
)
def test_unknown_options_are_refused_with_the_closest_one(line: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(line)
    assert str(caught.value).startswith(message)
    assert "--" in str(caught.value)  # and how to write such text on purpose


@pytest.mark.parametrize(
    ("line", "prompt"),
    [
        ("/imagine a neon sign -- --open late--", "a neon sign --open late--"),
        ('/imagine a neon sign reading "--open--"', 'a neon sign reading "--open--"'),
        ("a poster -n 2 -- -n 3 --aspect 1:1", "a poster -n 3 --aspect 1:1"),
        ("/imagine art:deco poster, note:free", "art:deco poster, note:free"),
        ("a well--known face - 5 -5 degrees", "a well--known face - 5 -5 degrees"),
    ],
)
def test_text_with_dashes_or_colons_can_be_a_prompt(line: str, prompt: str) -> None:
    command = parse_command(line)
    assert isinstance(command, ImagineCommand) and command.prompt == prompt


def test_generate_refuses_an_unknown_option_with_the_closest_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["generate", "a dog", "--aspcet", "16:9"])
    assert caught.value.code == 2
    assert "unknown option --aspcet; did you mean --aspect?" in capsys.readouterr().err
    # A prompt that starts with dashes: after `--`.
    args = build_parser().parse_args(["generate", "-n", "2", "--", "--open late--"])
    assert (args.prompt, args.count) == ("--open late--", 2)


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--", "--open late", "--out", "o"],  # a real option after `--`
        ["invite", "--guild", "1"],  # another command's option
    ],
)
def test_a_real_option_in_the_wrong_place_is_not_suggested_as_itself(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Found in review: "unknown option --out; did you mean --out?"
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"{argv[-2]} is not an option here" in err
    assert "did you mean" not in err
