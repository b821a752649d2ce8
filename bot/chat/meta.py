"""What the conversation layer keeps with a job, typed (stored in `Job.delivery` next
to the surface's own typed reference; the engine never reads either)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.core.models import Job

INPUT_NOTES = "input_notes"
RETRIED_AS = "retried_as"  # the job its Try again started
RESULTS_DELETED = "results_deleted"  # deleted with the Delete button
ORIGINALS = "originals"  # private input links (fetched with the bot's credentials)
HOSTED = "hosted_inputs"  # the surface's references to input copies it hosted


class ChatMeta(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    notes: list[str] = Field(default_factory=list, alias=INPUT_NOTES)
    retried_as: str | None = Field(default=None, alias=RETRIED_AS)
    results_deleted: bool = Field(default=False, alias=RESULTS_DELETED)
    # The user's own images where the provider got hosted copies of private files: a
    # reroll or a try again fetches these again (ChatSurface.input_sources).
    originals: list[str] = Field(default_factory=list, alias=ORIGINALS)
    # Input copies the surface hosted (HostSession.kept): removed when the job ends, by
    # whichever process ends it.
    hosted: list[str] = Field(default_factory=list, alias=HOSTED)

    @classmethod
    def of(cls, job: Job) -> ChatMeta:
        return cls.model_validate(job.delivery)

    def stored(self) -> dict[str, Any]:
        """The keys to merge into `Job.delivery` (defaults left out)."""
        return self.model_dump(by_alias=True, exclude_defaults=True)
