"""User actions and waits shared by the reliability tests."""

from __future__ import annotations

from typing import Any

from bot.core.models import Job, JobState
from tests.fakes.discord import FakeInteraction, FakeUser
from tests.reliability.audit import failure_shown, result_messages
from tests.reliability.world import World


async def imagine(
    world: World, user: FakeUser | None = None, prompt: str = "a red fox in snow", **options: Any
) -> FakeInteraction:
    """A user runs /imagine; returns once the bot has acknowledged it."""
    user = user or world.fake.add_user(f"user{len(world.fake.users)}")
    interaction = await world.fake.slash("imagine", user, {"prompt": prompt, **options})
    await world.fake.wait_callback(interaction)
    return interaction


async def job_for(world: World, interaction: FakeInteraction) -> Job | None:
    """The job an interaction started (its status message is the interaction's answer)."""
    if interaction.original_message_id is None:
        return None
    rows = await world.rows(
        "SELECT id FROM jobs WHERE json_extract(delivery, '$.status_message_id') = ?",
        (interaction.original_message_id,),
    )
    return await world.job(rows[0][0]) if rows else None


def outcome_shown(world: World, job: Job) -> bool:
    """The user has seen how the job ended: results posted, or a failure card."""
    if job.state is JobState.DONE:
        return bool(result_messages(world.fake, job.id))
    return job.state.final and failure_shown(world.fake, job) is not None


async def settled_job(world: World, interaction: FakeInteraction) -> Job | None:
    """The interaction's job once it is final and the user has been shown the outcome."""
    job = await job_for(world, interaction)
    return job if job is not None and outcome_shown(world, job) else None


async def everyone_told(world: World) -> list[Job] | None:
    """Every stored job, once all are final and every user has seen the outcome."""
    jobs = await world.all_final()
    if jobs is None or not all(outcome_shown(world, job) for job in jobs):
        return None
    return jobs


async def finish_every_task(world: World) -> list[Job] | None:
    """A drive check: the provider finishes every task it has (now and later), until
    every job is final and its user told."""
    for task in world.apixo.tasks.values():
        if task.state in ("pending", "running"):
            world.apixo.complete(task.id)
    return await everyone_told(world)
