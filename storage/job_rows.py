"""Jobs as table rows, the same for every backend: which columns, how fields are
validated and encoded (JSON fields as text), and how a row becomes a Job again.

JSON is written compactly (issue 17: database bytes per job): no spaces, and the
requester and request without the fields at their defaults (None, [], False...),
which decoding fills in again. The requester's platform and user id are columns of
the row, and so is its server (scope_id), so its JSON leaves them out; rows written
before migration 0006 still carry them and decode the same.

Since migration 0008 a row also leaves out what nothing reads back from a stored job
and what another column holds (rows written before keep them and decode the same):
  * the requester's role ids and display name: they matter when a request is
    admitted (quota by role) and are taken from the live requester every time
    (admission, /usage, a reroll); a stored job is never checked against them again;
  * the request's image count when it equals the reservation (`reserved`, which
    admit() sets to it and nothing changes): decoding takes it from there;
  * the callback token, once the job is final (see final_values()).

Also the store rules that do not depend on the backend: the row admit() inserts, the
checks of transition() and finish(), and what they report. Pure: no connection, no
SQL dialect.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from bot.core.errors import NotFound
from bot.core.models import ACTIVE_STATES, Job, JobState
from bot.core.quota import DIRECT_SCOPE

log = logging.getLogger(__name__)

JSON_FIELDS = frozenset({"requester", "request", "result_urls", "delivery"})
# Pydantic models among them: stored without their default-valued fields.
_MODEL_FIELDS = frozenset({"requester", "request"})
# Fields that only admit()/finish()/transition() may set: identity, state and money.
PROTECTED = frozenset(
    {"id", "requester", "state", "reserved", "delivered", "unit_price_usd", "created_at"}
)
FINAL_STATES = tuple(state.value for state in JobState if state.final)
ACTIVE_STATE_VALUES = tuple(state.value for state in ACTIVE_STATES)
# One column per Job field (callback_token too, since migration 0007: the token a
# provider's callback must carry is no longer kept in the delivery JSON).
JOB_COLUMNS = tuple(Job.model_fields)
# Columns the store sets at admission, beside the Job's own fields.
EXTRA_COLUMNS = ("platform", "user_id", "scope_id", "admitted_at")
# What a store selects to rebuild a Job: its fields, then the requester's identity.
IDENTITY_COLUMNS = ("platform", "user_id", "scope_id")
# Requester fields a row does not keep (since 0008): its columns, and what only a live
# requester is asked for (see the module's docstring).
_REQUESTER_LEFT_OUT = ("platform", "user_id", "role_ids", "display_name")
READ_COLUMNS = (*JOB_COLUMNS, *IDENTITY_COLUMNS)
# The active states as an SQL list, literally as migration 0006's partial indexes
# name them: a query must repeat it for the index to be usable.
ACTIVE_STATES_SQL = "(" + ", ".join(repr(state) for state in ACTIVE_STATE_VALUES) + ")"


def admitted(job: Job, price_per_image_usd: float | None) -> Job:
    """`job` as admit() stores it: QUEUED, its images reserved, at today's price per
    image (kept with it, so what it costs never follows a later price change)."""
    return job.model_copy(
        update={
            "state": JobState.QUEUED,
            "reserved": job.request.count,
            "delivered": 0,
            "unit_price_usd": price_per_image_usd,
        }
    )


def admitted_at(now: float) -> float:
    """jobs.admitted_at for a job admitted at `now`: whole seconds (floor). Quota periods
    start on whole seconds, so the period a job counts in is the same, and SQLite keeps
    a whole number in 4 bytes instead of 8 (migration 0006)."""
    return float(math.floor(now))


@cache
def _adapter(name: str) -> TypeAdapter[Any]:
    annotation: Any = Job.model_fields[name].annotation
    return TypeAdapter(annotation)


def _dumps(plain: Any) -> str:
    return json.dumps(plain, separators=(",", ":"))


def encode_fields(fields: Mapping[str, Any], allow: Iterable[str] = ()) -> dict[str, Any]:
    """Validate `fields` as Job fields and turn them into column values."""
    allowed = set(allow)
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in Job.model_fields:
            raise ValueError(f"jobs have no field {name!r}")
        if name in PROTECTED and name not in allowed:
            raise ValueError(f"{name!r} cannot be set this way")
        adapter = _adapter(name)
        validated = adapter.validate_python(value)
        plain = adapter.dump_python(validated, mode="json", exclude_defaults=name in _MODEL_FIELDS)
        if name == "request":
            # Always explicit here: a row without a count decodes it as `reserved`.
            plain["count"] = validated.count
        values[name] = _dumps(plain) if name in JSON_FIELDS else plain
    return values


def row_params(job: Job, scope_id: str) -> dict[str, Any]:
    """Every Job field as a column value, for a row whose scope_id is `scope_id`
    (and whose platform and user_id columns are the requester's)."""
    data = job.model_dump(mode="json")
    request = job.request.model_dump(mode="json", exclude_defaults=True)
    if job.request.count == job.reserved:
        request.pop("count", None)  # restored from `reserved` by job_from_row()
    else:
        request["count"] = job.request.count
    data["request"] = request
    requester = job.requester.model_dump(mode="json", exclude_defaults=True)
    # In the row's columns already (restored from them by job_from_row()), or only
    # ever read from a live requester.
    for name in _REQUESTER_LEFT_OUT:
        requester.pop(name, None)
    if requester.get("guild_id") == scope_id != DIRECT_SCOPE:
        del requester["guild_id"]
    data["requester"] = requester
    for name in JSON_FIELDS:
        data[name] = _dumps(data[name])
    return data


def job_from_row(row: Iterable[Any]) -> Job:
    """A Job from the values of READ_COLUMNS, in that order."""
    data = dict(zip(READ_COLUMNS, row, strict=True))
    platform, user_id, scope_id = (data.pop(name) for name in IDENTITY_COLUMNS)
    for name in JSON_FIELDS:
        data[name] = json.loads(data[name])
    # Left out when it equals the reservation (0008). Before 0008 it was left out only
    # when 1 (its default), and then `reserved` is 1 too: admit() sets it to the count.
    data["request"].setdefault("count", data["reserved"])
    requester = data["requester"]
    requester.setdefault("platform", platform)
    requester.setdefault("user_id", user_id)
    if scope_id != DIRECT_SCOPE:
        requester.setdefault("guild_id", scope_id)
    return Job.model_validate(data)


def admission(
    job: Job, price_per_image_usd: float | None, now: float
) -> tuple[Job, dict[str, Any]]:
    """`job` as admit() stores it (see admitted()) and its row: the Job's fields and
    EXTRA_COLUMNS, by column name."""
    requester = job.requester
    scope = requester.space.id
    job = admitted(job, price_per_image_usd)
    params = row_params(job, scope)
    params.update(
        platform=requester.platform,
        user_id=requester.user_id,
        scope_id=scope,
        admitted_at=admitted_at(now),
    )
    return job, params


def expected_states(expected: Iterable[JobState]) -> list[JobState]:
    """transition()'s `expected` states, checked: a final job never changes state."""
    states = [JobState(state) for state in expected]
    if any(state.final for state in states):
        raise ValueError("a final job never changes state")
    return states


def transition_values(new_state: JobState, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The columns transition() sets: `fields` (`delivered` allowed) and the state."""
    values = encode_fields(fields, allow={"delivered"})
    values["state"] = new_state.value
    return final_values(new_state, values)


def final_values(new_state: JobState, values: dict[str, Any]) -> dict[str, Any]:
    """`values`, and for a final state no callback token any more: a callback is
    accepted only for an active job (the engine refuses one for a finished job, and
    one without a token), so the token is dead weight in every kept row (0008)."""
    if new_state.final:
        values["callback_token"] = None
    return values


def finish_values(
    new_state: JobState, delivered: int, fields: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """The columns finish() sets; `new_state` must be final."""
    if not new_state.final:
        raise ValueError(f"finish() needs a final state, not {new_state.value}")
    values = encode_fields(fields)
    values.setdefault("finished_at", now)
    values.update(state=new_state.value, delivered=delivered)
    return final_values(new_state, values)


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"job {job_id} not found", code="job_not_found")


def warn_if_capped(job: Job, delivered: int) -> None:
    """finish() was told of more (or fewer than none) images delivered than it charged:
    the charge is capped to the reservation, by the UPDATE."""
    if job.delivered != delivered:
        log.warning(
            "job %s reports %d delivered of %d reserved; charged %d",
            job.id,
            delivered,
            job.reserved,
            job.delivered,
        )
