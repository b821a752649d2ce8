"""Secrets: a full session with a recognisable provider API key and Discord token,
including the paths where secrets usually leak (error bodies that echo the key,
tracebacks, retries, admin alerts). Neither secret may appear in any log line (all
loggers at DEBUG, through the production log setup, text and JSON), any message posted
to Discord, any request body sent to the provider, or the SQLite files (every row,
and the raw bytes of the database, its WAL and shared-memory files).
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.core.clock import FakeClock
from bot.core.models import ErrorKind, JobState
from bot.logging_setup import JsonFormatter, RedactingFilter, setup_logging
from tests.fakes.providers import Fault, make_png
from tests.image_corpus import case
from tests.reliability.audit import check_money, private_answer, result_messages
from tests.reliability.flows import imagine, settled_job
from tests.reliability.world import World, open_world

API_KEY = "sk-CANARY-apixo-123456"
TOKEN = "CANARY.TOKEN.xyz-0123456789abcdefghijklmnopqrstuvwxyz"
SECRETS = (API_KEY, TOKEN)
RESULTS_POST = r"/channels/\d+/messages"


class RawRecords(logging.Handler):
    """Every record as emitted, before any redaction (to learn who logs what)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@contextmanager
def production_logging(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The bot's own log setup (as `wanbot run` does it) writing to buffers, with every
    logger at DEBUG; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    names = ("discord", "discord.http", "discord.gateway", "discord.client", "aiosqlite")
    saved_levels = {name: logging.getLogger(name).level for name in names}
    text, json_lines = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", text)
    setup_logging("DEBUG", "text", secrets=SECRETS)
    as_json = logging.StreamHandler(json_lines)
    as_json.setFormatter(JsonFormatter())
    as_json.addFilter(RedactingFilter(SECRETS))
    root.addHandler(as_json)
    for name in names:  # the setup quiets some libraries: hear everything here
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield text, json_lines
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


async def session(world: World) -> None:
    """A bit of everything a real server sees, good and bad."""
    fake, apixo = world.fake, world.apixo
    alice = fake.add_user("alice")
    owner = fake.owner
    for name, options, sub in [
        ("quota", {"limit": 50, "period": "day"}, "default"),
        ("quota", {"user": alice, "images": 5}, "grant"),
        ("config", {}, "show"),
        ("usage", {}, None),
    ]:
        interaction = await fake.slash(name, owner if name != "usage" else alice, options,
                                       subcommand=sub)  # fmt: skip
        await fake.wait_callback(interaction)
    # Success with a repaired input image, then the buttons and job commands.
    rgba = case("png_rgba")
    photo = fake.upload(rgba.data(), rgba.filename, rgba.content_type)
    ok = await imagine(world, alice, "a lighthouse", count=2, image1=photo)
    job = await world.drive(lambda: settled_job(world, ok))
    assert job.state is JobState.DONE
    [result] = result_messages(fake, job.id)
    info = await fake.click(alice, result["id"], f"wanbot:info:{job.id}")
    await fake.wait_callback(info)
    for name, options in [("jobs", {}), ("show", {"job_id": job.id})]:
        interaction = await fake.slash(name, alice, options)
        await fake.wait_callback(interaction)
    # A provider that echoes the key in its error body (request class and key class).
    echo = f"Incorrect API key provided: {API_KEY}. Authorization: Bearer {API_KEY}"
    apixo.script_submit_fault(Fault.http(400, message=echo))
    refused = await imagine(world, alice, "echo 400")
    assert (await world.drive(lambda: settled_job(world, refused))).error_kind is (
        ErrorKind.PROVIDER_CONFIG  # APIXO's 400 is the bot's malformed request
    )
    apixo.script_submit_fault(Fault.http(401, message=echo))
    denied = await imagine(world, alice, "echo 401")
    assert (await world.drive(lambda: settled_job(world, denied))).error_kind is (
        ErrorKind.PROVIDER_CONFIG
    )
    apixo.script_status_fault(*[Fault.http(500, message=echo)] * 3)
    retried = await imagine(world, alice, "echo 500 on status")
    assert (await world.drive(lambda: settled_job(world, retried))).state is JobState.DONE
    # Discord failing the upload for good: tracebacks get logged.
    fake.fail_next("POST", RESULTS_POST, 503, times=50, message="upstream connect error")
    broken = await imagine(world, alice, "discord down")
    assert (await world.drive(lambda: settled_job(world, broken))).error_kind is (
        ErrorKind.INTERNAL
    )
    # A quota refusal and a bad image.
    bad = fake.upload(b"<html>nope</html>", "x.png", "image/png")
    bad_input = await imagine(world, alice, "bad", image1=bad)
    assert private_answer(fake, bad_input) or await world.drive(
        lambda: private_answer(fake, bad_input)
    )
    fake.upload(make_png(600, 600), "spare.png")
    await check_money(world.rt.db, fake, await world.jobs())


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


async def test_no_secret_leaks_anywhere(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = RawRecords()
    with production_logging(monkeypatch) as (text_log, json_log):
        logging.getLogger().addHandler(raw)
        async with open_world(tmp_path, clock, token=TOKEN, api_key=API_KEY) as world:
            await session(world)
            fake, apixo = world.fake, world.apixo
        db_files = sorted(tmp_path.glob("wanbot.sqlite3*"))

    # The secrets did go where they belong (so the scan below could see them).
    assert all(r.headers.get("Authorization") == f"Bearer {API_KEY}" for r in apixo.requests
               if r.route in ("submit", "status"))  # fmt: skip
    assert len(raw.lines) > 100
    # Logs, as operators see them.
    for name, log in (("text", text_log.getvalue()), ("json", json_log.getvalue())):
        assert log.count("\n") > 100, f"the {name} log captured too little"
        found = [line for line in log.splitlines() if leaks(line)]
        assert found == [], f"secrets in the {name} log:\n" + "\n".join(found[:5])
    for line in json_log.getvalue().splitlines():
        json.loads(line)  # one JSON object per line, tracebacks included
    # Interaction tokens answer as the bot for 15 minutes: discord.py logs them at DEBUG.
    tokens = [interaction.token for interaction in fake.interactions.values()]
    assert len(tokens) > 5
    with_tokens = [
        line for line in text_log.getvalue().splitlines() if any(t in line for t in tokens)
    ]
    assert with_tokens == [], with_tokens[:3]
    # Everything posted to Discord, and every request body sent to either service.
    posted = [json.dumps(message) for message in fake.messages.values()]
    posted += [json.dumps(rec.json) for rec in fake.requests if rec.json is not None]
    posted += [f.data.decode("latin-1") for rec in fake.requests for f in rec.files]
    assert [p for p in posted if leaks(p)] == []
    assert [r.body for r in apixo.requests if leaks(r.body.decode("latin-1"))] == []
    # The database: every value of every row, and the files' raw bytes.
    assert db_files, "no database files"
    with sqlite3.connect(db_files[0]) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                assert not leaks(repr(row)), (table, row)
    for path in db_files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, (path.name, secret)
            assert secret.encode("utf-16-le") not in data, (path.name, secret)
        # Interaction tokens are secrets too (15 minutes): kept in memory only.
        for interaction in fake.interactions.values():
            assert interaction.token.encode() not in data, path.name
    raw_leaks = [line for line in raw.lines if leaks(line)]
    print(f"{len(raw.lines)} log records; {len(raw_leaks)} carried a secret before redaction")
    for line in raw_leaks[:10]:
        print("  raw:", line[:300])


def test_the_log_filter_masks_keys_bearer_and_interaction_tokens() -> None:
    """The redaction the session above relies on, record by record (tracebacks too)."""
    redact = RedactingFilter([API_KEY])
    interaction = "aW50ZXJhY3Rpb246" + "Zm9vYmFy_-xyz0123456789"
    try:
        raise RuntimeError(f"provider said: bad key {API_KEY}")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "discord.webhook.async_", logging.DEBUG, __file__, 1,
            "POST http://h/api/v10/interactions/1/%s/callback with Bot %s",
            (interaction, TOKEN), (type(exc), exc, exc.__traceback__),
        )  # fmt: skip
    assert redact.filter(record)
    shown = record.getMessage()
    assert "Zm9vYmFy" not in shown and TOKEN not in shown and API_KEY not in shown
    assert "/interactions/1/aW50ZXJhY3Rpb246***/callback" in shown
