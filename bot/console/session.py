"""What each console command does, on top of the same core the Discord bot uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from bot.console.commands import (
    HELP,
    LOCAL_USER,
    CancelCommand,
    ClearCommand,
    Command,
    CommandError,
    HelpCommand,
    ImagineCommand,
    JobsCommand,
    QuitCommand,
    QuotaCommand,
    UsageCommand,
    parse_command,
)
from bot.console.delivery import ConsoleDelivery, output_problem
from bot.console.hosting import LocalImageHost
from bot.console.inputs import PreparedRequest, prepare_request
from bot.console.render import (
    jobs_text,
    server_report_text,
    upload_failure_text,
    usage_text,
)
from bot.console.waiting import wait_settled
from bot.core.clock import Clock
from bot.core.errors import ProviderError, QuotaDenied, ValidationFailed, WanbotError
from bot.core.models import Requester, ServerReport
from bot.core.ports import ImageProvider, JobService, JobStore, QuotaAdmin
from bot.core.quota import quota_scope
from bot.core.validation import Fetcher
from bot.reports.chart import save_spend_chart

log = logging.getLogger(__name__)

PLATFORM = "console"
# The person at the keyboard owns the machine, the keys and the bill: the local admin.
LOCAL_REQUESTER = Requester(
    platform=PLATFORM, user_id=LOCAL_USER, guild_id=None, is_admin=True, display_name="you"
)
SCOPE = quota_scope(LOCAL_REQUESTER.guild_id)


@dataclass(frozen=True)
class CoreParts:
    """The pieces of the Runtime the console uses."""

    engine: JobService
    quotas: QuotaAdmin
    jobs: JobStore
    provider: ImageProvider
    downloader: Fetcher
    clock: Clock
    image_executor: Executor | None = None  # Pillow work; None: the loop's default


async def prepare(core: CoreParts, command: ImagineCommand) -> PreparedRequest:
    """Validate the options and images the way the Discord front end does, with the
    scope's image-repair setting. Raises ValidationFailed (or ProviderError when an
    input image upload fails)."""
    config = await core.quotas.guild_config(SCOPE)
    return await prepare_request(
        command,
        core.provider,
        fetch=core.downloader,
        host=LocalImageHost(core.provider),
        normalize=config.normalize_images,
        executor=core.image_executor,
    )


class ConsoleSession:
    def __init__(
        self,
        core: CoreParts,
        delivery: ConsoleDelivery,
        emit: Callable[[str], None],
        *,
        clear: Callable[[], None] | None = None,
    ) -> None:
        self._core = core
        self._delivery = delivery
        self._emit = emit
        self._clear = clear  # None: not a terminal, nothing to clear
        self.submitted: list[str] = []  # job ids started in this session

    async def handle_line(self, line: str) -> bool:
        """Run one line. False when the user asked to quit."""
        try:
            command = parse_command(line)
        except CommandError as exc:
            self._emit(f"{exc}")
            return True
        if command is None:
            return True
        if isinstance(command, QuitCommand):
            return False
        try:
            await self.run(command)
        except ValidationFailed as exc:
            self._emit("Cannot do that: " + "; ".join(exc.problems) + ".")
        except QuotaDenied as exc:
            self._emit(f"Quota: {exc.message}")
        except WanbotError as exc:
            self._emit(exc.message)
        except ProviderError as exc:  # an input image upload (EvoLink's file host)
            self._emit(upload_failure_text(self._core.provider.name, exc))
        except Exception:
            # One broken command must not end the session.
            log.exception("console command failed: %s", line)
            self._emit("That failed unexpectedly (a bug in wanbot); the log has the details.")
        return True

    async def run(self, command: Command) -> None:
        if isinstance(command, ImagineCommand):
            await self.imagine(command)
        elif isinstance(command, UsageCommand):
            is_me = command.user_id == LOCAL_USER
            report = await self._core.quotas.usage(SCOPE, command.user_id, is_admin=is_me)
            self._emit(usage_text(report, self._core.clock.now()))
        elif isinstance(command, QuotaCommand):
            await self.quota(command)
        elif isinstance(command, JobsCommand):
            jobs = await self._core.jobs.user_jobs(PLATFORM, LOCAL_USER, limit=10)
            self._emit(jobs_text(jobs, self._core.clock.now()))
        elif isinstance(command, CancelCommand):
            job = await self._core.engine.cancel(command.job_id, LOCAL_REQUESTER)
            if not job.state.final:
                self._emit(f"[{job.id}] cancelling...")
        elif isinstance(command, HelpCommand):
            self._emit(HELP)
        elif isinstance(command, ClearCommand) and self._clear is not None:
            self._clear()

    async def imagine(self, command: ImagineCommand) -> None:
        # Checked again for each job: the folder may have gone since the start, and an
        # image that cannot be saved is paid for all the same.
        if problem := await asyncio.to_thread(output_problem, self._delivery.output_dir):
            self._emit(f"Cannot do that: {problem}; nothing was sent or charged.")
            return
        prepared = await prepare(self._core, command)
        job = await self._core.engine.submit(LOCAL_REQUESTER, prepared.request)
        self.submitted.append(job.id)
        images = f"{job.request.count} image{'s' if job.request.count != 1 else ''}"
        self._emit(f"[{job.id}] queued: {images}, {job.request.mode.value}")
        for note in prepared.notes:
            self._emit(f"[{job.id}] note: {note}")

    async def quota(self, command: QuotaCommand) -> None:
        quotas, user = self._core.quotas, command.user_id
        action, amount = command.action, command.amount
        if action == "set" and amount is not None:
            await quotas.set_user_limit(SCOPE, user, amount, command.period)
            period = f" per {command.period.value}" if command.period else ""
            self._emit(f"{user} may now generate {amount} images{period}.")
        elif action == "clear":
            await quotas.clear_user_limit(SCOPE, user)
            self._emit(f"{user} is back on the default limit.")
        elif action == "grant" and amount is not None:
            await quotas.grant(SCOPE, user, amount, granted_by=LOCAL_USER)
            self._emit(f"Granted {user} {amount} extra images for this period.")
        elif action == "block":
            await quotas.block(SCOPE, user, command.reason)
            self._emit(f"{user} is blocked from generating images.")
        elif action == "unblock":
            await quotas.unblock(SCOPE, user)
            self._emit(f"{user} may generate images again.")
        elif action == "default" and amount is not None and command.period is not None:
            await quotas.set_server_default(SCOPE, amount, command.period)
            self._emit(
                f"Users without their own limit may generate {amount} per {command.period.value}."
            )
        elif action == "budget":
            await quotas.set_server_budget(SCOPE, amount)
            self._emit(
                "No monthly budget." if amount is None else f"Budget: {amount} images per month."
            )
        elif action == "report":
            report = await quotas.server_report(SCOPE)
            self._emit(server_report_text(report))
            self._emit(await self._chart(report))

    async def _chart(self, report: ServerReport) -> str:
        try:
            path = await save_spend_chart(
                report,
                self._delivery.output_dir,
                now=self._core.clock.now(),
                executor=self._core.image_executor,
            )
        except Exception as exc:  # the numbers above matter more than the picture
            log.warning("could not draw the spend chart", exc_info=True)
            return f"(no chart: {type(exc).__name__})"
        return f"Chart: {path}"

    async def unfinished(self) -> list[str]:
        """Console jobs not ended yet: this session's, and those resumed from an earlier run."""
        stored = [
            job.id
            for job in await self._core.jobs.active_jobs()
            if job.requester.platform == PLATFORM
        ]
        candidates = dict.fromkeys([*self.submitted, *stored])
        return [job_id for job_id in candidates if not self._delivery.finished(job_id)]

    async def wait_all(self) -> None:
        for job_id in await self.unfinished():
            await self._delivery.wait(job_id)
            await wait_settled(self._core.jobs, job_id)
