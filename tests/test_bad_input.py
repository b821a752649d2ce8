"""Every case of the image corpus (tests/image_corpus.py) through the whole /imagine
flow: attachment on the fake Discord's CDN -> the real bot -> validation, download,
normalisation, hosting -> the provider. With image repair on (the default) and off.

Refused images: a clear private answer naming the image and the problem, no job, no
charge, nothing posted. Accepted images reach the provider as they are (their own
URL); repaired ones as a re-hosted image that passes the strict rules, and the user
is told what was changed. Nothing crashes.

All 58 cases run (none skipped): one bot per mode, cases one after another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.core.clock import FakeClock
from bot.core.models import JobState
from bot.core.validation import check_image
from tests.fakes.discord import FakeInteraction
from tests.image_corpus import CASES, ImageCase, Verdict
from tests.reliability.audit import answer_text, check_money, private_answer
from tests.reliability.flows import job_for, settled_job
from tests.reliability.world import World, open_world
from tests.store_backends import space

EPHEMERAL = 1 << 6


def hosted_inputs(world: World) -> list[dict[str, Any]]:
    """Messages the bot posted to host repaired input images."""
    return [
        m
        for m in world.fake.messages.values()
        if m["author"]["id"] == world.fake.bot.id and m["content"].startswith("Input image for")
    ]


async def set_repair(world: World, enabled: bool) -> None:
    command = await world.fake.slash(
        "config", world.fake.owner, {"enabled": enabled}, subcommand="normalization"
    )
    await world.fake.wait_callback(command)

    def applied() -> bool:
        config = world.rt.chat.configs.peek(space(world.fake.guild_id))
        return config is not None and config.normalize_images is enabled

    await world.drive(applied)


async def run_case(world: World, case: ImageCase, normalize: bool) -> list[str]:
    """Push one case through /imagine; the list of what went wrong (empty: fine)."""
    expect = case.expect(normalize)
    fake = world.fake
    attachment = fake.upload(case.data(), case.filename, case.content_type)
    attachment.width, attachment.height = case.reported_dims() or (None, None)
    jobs_before = len(await world.jobs())
    hosted_before = len(hosted_inputs(world))
    submits_before = len(world.apixo.requests_for("submit"))
    user = fake.add_user(f"u-{case.name}")
    interaction = await fake.slash(
        "imagine", user, {"prompt": f"case {case.name}", "image1": attachment}
    )
    await fake.wait_callback(interaction, timeout=30)
    problems: list[str] = []

    if expect.verdict is Verdict.REJECTED:
        answer = await world.drive(lambda: private_answer(fake, interaction))
        if expect.fragment not in answer:
            problems.append(f"answer lacks {expect.fragment!r}: {answer!r}")
        if f"image 1 ({case.filename})" not in answer:
            problems.append(f"answer does not name the image: {answer!r}")
        immediate = interaction.callback_type == 4
        if expect.at_metadata and not immediate:
            problems.append("refused after a download, though the metadata proved it")
        await world.settle()
        if len(await world.jobs()) != jobs_before:
            problems.append("a job was stored for a refused image")
        if len(hosted_inputs(world)) != hosted_before:
            problems.append("a refused image was uploaded")
        if len(world.apixo.requests_for("submit")) != submits_before:
            problems.append("a refused image reached the provider")
        return problems

    job = await world.drive(lambda: settled_job(world, interaction))
    if job.state is not JobState.DONE:
        return [f"job ended {job.state.value}: {job.error_code} {job.error_message}"]
    [submit] = world.apixo.requests_for("submit")[submits_before:]
    [sent] = submit.json["input"]["image_urls"]
    shown = answer_text(fake, interaction)
    if expect.verdict is Verdict.ACCEPTED:
        if sent != attachment.url:
            problems.append(f"an acceptable image was not sent as it is: {sent}")
        if "Notes" in shown:
            problems.append(f"notes for an unchanged image: {shown!r}")
        return problems
    # Repaired: sent as a re-hosted copy the strict rules accept, and the user told.
    if expect.fragment not in shown:
        problems.append(f"the user was not told {expect.fragment!r}: {shown!r}")
    hosted = [a for a in fake.attachments.values() if a.url == sent]
    if len(hosted) != 1 or sent == attachment.url:
        return [*problems, f"the repaired image was not re-hosted: {sent}"]
    strict = check_image(hosted[0].data, normalize=False)
    if strict.changed:
        problems.append("the re-hosted image still needs changes")
    return problems


@pytest.mark.parametrize("normalize", [True, False], ids=["repair-on", "repair-off"])
async def test_the_whole_corpus_through_imagine(
    normalize: bool, tmp_path: Path, clock: FakeClock
) -> None:
    async with open_world(tmp_path, clock, complete_after=1) as world:
        if not normalize:
            await set_repair(world, False)
        failures = {}
        for case in CASES:
            problems = await run_case(world, case, normalize)
            if problems:
                failures[case.name] = problems
        assert failures == {}, "\n".join(f"{name}: {p}" for name, p in failures.items())
        jobs = await world.jobs()
        expected = [c for c in CASES if c.expect(normalize).verdict is not Verdict.REJECTED]
        assert len(jobs) == len(expected)
        totals = await check_money(world.rt.db, world.fake, jobs)
        assert totals.charged == len(expected) and totals.refunded == 0


async def test_a_refused_image_among_good_ones_refuses_the_request_whole(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Three images, the second is HTML: one answer lists the problem; nothing is
    uploaded, stored or charged, even for the two good ones."""
    good = next(c for c in CASES if c.name == "png")
    bad = next(c for c in CASES if c.name == "html_as_png")
    async with open_world(tmp_path, clock) as world:
        fake = world.fake
        files = [fake.upload(c.data(), c.filename, c.content_type) for c in (good, bad, good)]
        interaction: FakeInteraction = await fake.slash(
            "imagine",
            fake.add_user("mixed"),
            {"prompt": "combine", "image1": files[0], "image2": files[1], "image3": files[2]},
        )
        answer = await world.drive(lambda: private_answer(fake, interaction))
        assert "image 2 (cat.png)" in answer and "HTML page" in answer, answer
        await world.settle()
        assert await job_for(world, interaction) is None
        assert await world.jobs() == [] and hosted_inputs(world) == []
        assert await world.rows("SELECT * FROM ledger") == []
