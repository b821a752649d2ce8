"""Slack's markup and Block Kit drawing: limits and round trips, no I/O."""

from __future__ import annotations

from bot.chat.cards import Action, ActionKind, Card
from bot.chat.options import parse_quota, tokenize
from bot.slack.blocks import blocks, parse_action
from bot.slack.front import plain_ids
from bot.slack.style import STYLE


def test_style_marks_up_what_slack_renders() -> None:
    assert STYLE.user("U1") == "<@U1>" and STYLE.channel("C1") == "<#C1>"
    assert STYLE.bold("x") == "*x*" and STYLE.code("x") == "`x`"
    assert STYLE.command("usage") == "`/wanbot usage`"
    assert STYLE.command("imagine") == "`/imagine`"
    # A date tag each client shows in its own time zone, with a plain fallback.
    tag = STYLE.relative(1_700_003_600, 1_700_000_000)
    assert tag.startswith("<!date^1700003600^{date_short_pretty} {time}|in ")
    assert STYLE.relative(1_700_000_030, 1_700_000_000) == "in 30 s"  # seconds say more
    assert "|2023-11-14" in STYLE.date(1_700_000_000)


def test_buttons_carry_the_job_and_the_image() -> None:
    actions = [
        Action(kind=ActionKind.EDIT, job_id="abc", index=0),
        Action(kind=ActionKind.EDIT, job_id="abc", index=3),
        Action(kind=ActionKind.REROLL, job_id="abc"),
        Action(kind=ActionKind.DELETE, job_id="abc"),
    ]
    drawn = blocks(Card(title="t" * 300, text="x" * 5000, actions=actions))
    header, text, row = drawn[0], drawn[1], drawn[-1]
    assert len(header["text"]["text"]) == 150 and len(text["text"]["text"]) == 3000
    assert row["block_id"] == "wan_result_abc"
    ids = [(e["action_id"], e["value"]) for e in row["elements"]]
    assert ids == [
        ("wan_edit_1", "abc"),
        ("wan_edit_4", "abc"),
        ("wan_reroll", "abc"),
        ("wan_delete", "abc"),
    ]
    assert [parse_action(a, v) for a, v in ids] == [
        ("edit", "abc", 0),
        ("edit", "abc", 3),
        ("reroll", "abc", None),
        ("delete", "abc", None),
    ]
    retry = blocks(Card(title="x", actions=[Action(kind=ActionKind.RETRY, job_id="abc")]))
    assert retry[-1]["block_id"] == "wan_failed_abc"  # never taken for a result post


def test_many_fields_are_split_into_sections_of_ten() -> None:
    card = Card(title="Job")
    for n in range(15):
        card.field(f"f{n}", "v")
    sections = [b for b in blocks(card) if b["type"] == "section" and "fields" in b]
    assert [len(s["fields"]) for s in sections] == [10, 5]


def test_slack_mentions_and_channels_reach_the_quota_parser_as_ids() -> None:
    text = plain_ids("quota set <@U123|alice> 5 day")
    command = parse_quota(tokenize(text)[1:])
    assert command.user_id == "U123" and command.amount == 5
    assert plain_ids("config channels add <#C9|general>") == "config channels add C9"
