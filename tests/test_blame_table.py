"""Issue 13, rule 3: the right party is blamed, and each failure is said once.

The rows come from the table in docs/providers.md, so the documentation, the code's
tables and the behaviour cannot drift apart: every row is played through the
provider's fake (the real engine, store and adapter) and the job must end with that
row's blame, in words that ask for a new prompt or image only when the prompt or image
was refused, with "not charged" said exactly once (bot/chat/wording.py says it for every
front end; the Discord card draws it as it is).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.chat import cards, wording
from bot.chat.style import PlainStyle
from bot.chat.wording import CHANGE_REQUEST
from bot.core.clock import FakeClock
from bot.core.engine.failures import KIND_FOR_CATEGORY, for_category
from bot.core.models import ErrorKind, FailureCategory, JobState, UserError
from bot.core.providers import apixo, dashscope, evolink
from bot.core.providers.base import category_for_status, lookup_category
from bot.discord import embeds
from storage.sqlite.db import Database
from tests.engine_doubles import request, requester
from tests.fakes.providers import Fault
from tests.provider_engine import World, provider_world

DOC = Path(__file__).resolve().parents[1] / "docs" / "providers.md"
BLAMES = {
    "user's prompt or image": FailureCategory.USER,
    "bot's request or setup": (FailureCategory.REQUEST, FailureCategory.CONFIG),
    "provider's outage": (
        FailureCategory.TRANSIENT,
        FailureCategory.GONE,
        FailureCategory.CANCELLED,
    ),
}
TABLES: Mapping[str, Mapping[str, FailureCategory]] = {
    "apixo": apixo.FAIL_CODES,
    "evolink": evolink.ERROR_CODES,
    "dashscope": dashscope.ERROR_CODES,
}


@dataclass(frozen=True)
class Row:
    provider: str
    where: str
    http: int | None
    code: str | None
    blame: str
    category: FailureCategory

    @property
    def id(self) -> str:
        return f"{self.provider}-{self.where}-{self.http or ''}-{self.code or ''}"


def table_rows() -> list[Row]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- blame-table:start -->", 1)[1].split("<!-- blame-table:end -->", 1)[0]
    rows = []
    for line in body.strip().splitlines()[2:]:  # past the header and its rule
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        provider, where, http, code, _meaning, blame, category = cells
        rows.append(
            Row(
                provider=provider,
                where=where,
                http=int(http) if http != "-" else None,
                code=code if code != "-" else None,
                blame=blame,
                category=FailureCategory(category),
            )
        )
    return rows


ROWS = table_rows()


def test_the_table_is_complete_and_consistent() -> None:
    assert len(ROWS) > 50
    for row in ROWS:
        allowed = BLAMES[row.blame]
        assert row.category in (allowed if isinstance(allowed, tuple) else (allowed,)), row
    # Every code the adapters know is in the table (and so is tested below).
    for provider, table in TABLES.items():
        documented = {row.code for row in ROWS if row.provider == provider and row.code}
        missing = set(table) - documented
        assert not missing, f"{provider} codes missing from docs/providers.md: {missing}"


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_the_code_tables_follow_the_doc(row: Row) -> None:
    if row.where == "state":
        return  # task states are mapped in code (to_status); played through the fake below
    if row.code is not None:
        assert lookup_category(row.code, TABLES[row.provider]) is row.category
    elif row.where == "submit" and row.http is not None:
        assert category_for_status(row.http) is row.category


def _said_once(error: UserError, world: World, job_id: str) -> None:
    """Discord's card and the console line carry the cause once, "charged" once."""
    cause, _ = wording.failure_cause(error)
    discord_text = wording.failure_text(error, embeds.STYLE)
    embed = embeds.embed(cards.failure_card(request(), error, embeds.STYLE))
    console_text = wording.failure_text(error, PlainStyle())
    for text in (discord_text, embed.description or "", console_text):
        assert text.count(cause) == 1, text
        assert text.lower().count("charged") == 1, text
        assert text.count(CHANGE_REQUEST) == (error.kind is ErrorKind.USER_INPUT), text
    assert job_id in discord_text


async def _play(world: World, row: Row) -> str:
    """Make the fake answer as the row says; the job's id."""
    fake = world.fake
    if row.where == "submit":
        assert row.http is not None
        # Enough for every resend a 429 allows.
        fake.script_submit_fault(*[Fault.http(row.http, code=row.code)] * 5)
    elif row.where == "status":
        assert row.http is not None
        fake.script_status_fault(*[Fault.http(row.http, code=row.code)] * 20)
    elif row.where == "task":
        assert row.code is not None
        fake.fail_new_tasks(row.code, "refused by the model service")
    job = await world.engine.submit(requester(), request(count=2))
    if row.where == "state":
        await world.until(lambda: len(fake.tasks) == 1)
        if row.code == "UNKNOWN":
            fake.expire()
        else:
            fake.cancel()
    return job.id


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_each_row_through_the_fake(row: Row, db: Database, clock: FakeClock) -> None:
    async with provider_world(row.provider, db, clock) as world:
        job_id = await _play(world, row)
        final = await world.final(job_id)
        assert final.state is JobState.FAILED
        assert final.error_kind is KIND_FOR_CATEGORY[row.category], final.error_message
        [error] = world.port.failed(job_id)
        message = wording.failure_text(error)
        assert (CHANGE_REQUEST in message) is (row.category is FailureCategory.USER), message
        if row.category in (FailureCategory.REQUEST, FailureCategory.CONFIG):
            assert "not your fault" in message or "not with your prompt" in message
        _said_once(error, world, job_id)
        assert await world.ledger(job_id) == {"reserve": 2, "charge": 0, "refund": 2}


def test_the_reported_double_wording_is_gone() -> None:
    # "...You were not charged. (`BadRequest`). Nothing was charged." (issue 13)
    error = UserError(
        kind=ErrorKind.PROVIDER_CONFIG,
        category=FailureCategory.REQUEST,
        detail="x",
        code="BadRequest",
        job_id="k3f9x2m7qa",
    )
    text = wording.failure_text(error, embeds.STYLE)
    assert not re.search(r"charged.*charged", text, re.IGNORECASE | re.DOTALL), text
    assert "(`BadRequest`)" in text


def test_a_code_without_a_message_is_named_once() -> None:
    # Found in review: a failCode without a failMsg read "...your prompt or image (NSFW).
    # ... (`NSFW`)": the cause named twice.
    error = for_category(FailureCategory.USER, "NSFW", "", job_id="k3f9x2m7qa")
    text = wording.failure_text(error, embeds.STYLE)
    assert text.count("NSFW") == 1, text
    with_message = for_category(FailureCategory.USER, "NSFW", "content refused", job_id="k3")
    assert "(`NSFW`)" in wording.failure_text(with_message, embeds.STYLE)
