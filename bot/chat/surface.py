"""What the conversation layer needs from a chat platform.

`ChatSurface`: one per front end, long-lived; it shows a job's cards and posts its
images wherever the job's stored reference says. `Conversation`: one per incoming
request (a slash command, a button, a mention); it knows who asked, where, and how
to answer them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from bot.chat.cards import Card
from bot.chat.style import Style
from bot.chat.throttle import Tuning
from bot.core.models import GuildConfig, Job, Requester, ResultImage, UserError
from bot.core.ports import ImageHost
from bot.core.validation import Fetcher, ImageSource


class Posted(BaseModel):
    """A job's result posts: how many images they hold (what the job is charged) and
    the reference to store with the job (message ids, thread)."""

    images: int
    ref: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class InputSources:
    """A job's input images as the platform can fetch them again (its originals, not
    the copies hosted for the provider), and how."""

    sources: list[ImageSource]
    fetch: Fetcher


class DeliveryProblem(Exception):
    """The surface cannot post the results; `error` says why, in facts the user reads."""

    def __init__(self, error: UserError) -> None:
        super().__init__(error.message or error.code or "delivery failed")
        self.error = error


class HostSession(ImageHost, Protocol):
    """Hosts one request's repaired input images for the provider."""

    async def withdraw(self) -> None:
        """The request was refused: remove what was hosted."""
        ...

    def bind(self, job_id: str) -> None:
        """The job exists: what was hosted lives until `ChatSurface.release_inputs`."""
        ...

    def kept(self) -> list[str]:
        """References to what was hosted that outlives this process (stored with the
        job, so whichever process ends it, or the next start, can remove it)."""
        ...


class ChatSurface(Protocol):
    @property
    def platform(self) -> str: ...

    @property
    def style(self) -> Style: ...

    @property
    def tuning(self) -> Tuning:
        """The platform's progress throttle numbers."""
        ...

    async def show_status(self, job: Job, card: Card) -> None:
        """Edit the job's status card (cosmetic: the caller logs a failure)."""
        ...

    async def show_failure(self, job: Job, card: Card) -> None:
        """Show a failed job: on its status card, else in a new post naming the user."""
        ...

    async def post_results(
        self, job: Job, images: list[ResultImage], card: Card, *, look_first: bool
    ) -> Posted:
        """Post the images with `card`, once: with `look_first`, an earlier post of the
        job (before a crash) is found and reused. Raises DeliveryProblem."""
        ...

    async def find_posted(self, job: Job) -> Posted | None:
        """Every result post of `job` made before a restart, without posting anything."""
        ...

    def results_link(self, job: Job, posted: Posted) -> str | None:
        """Where the results are, as the done card shows it."""
        ...

    async def show_done(self, job: Job, card: Card) -> None:
        """The status card once the results are up (no buttons)."""
        ...

    async def release_inputs(self, job: Job) -> None:
        """The job ended: input images hosted for it go."""
        ...

    def timeout_error(self, job: Job) -> UserError:
        """Why a job failed whose posting the engine gave up waiting for."""
        ...

    async def input_sources(self, job: Job) -> InputSources | None:
        """The job's original input images for a reroll or a try again; None: the
        links stored with the request are the originals."""
        ...

    async def result_urls(self, job: Job) -> list[str] | None:
        """Fresh links to the job's posted images (None: they were deleted)."""
        ...


class Conversation(Protocol):
    """One request from a person, and the way back to them."""

    @property
    def requester(self) -> Requester: ...

    @property
    def style(self) -> Style: ...

    def check_place(self, config: GuildConfig | None) -> None:
        """Raise NotAllowed when a job can't be made here (channel, bot permissions).
        With `config` None (not cached), only what every setting needs."""
        ...

    def image_host(self) -> HostSession: ...

    async def post_status(self, card: Card) -> dict[str, Any]:
        """Post the job's public status card; the reference to store with the job."""
        ...

    async def answer(self, card: Card | str, *, files: Sequence[Any] = ()) -> None:
        """Answer the person privately."""
        ...
