"""What each console command does: parsed here, done by the conversation layer
(bot.chat), the same use cases the Discord bot runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.chat import wording
from bot.chat.meta import ChatMeta
from bot.chat.service import ChatService
from bot.console.commands import (
    HELP,
    CancelCommand,
    ClearCommand,
    Command,
    CommandError,
    HelpCommand,
    ImagineCommand,
    JobsCommand,
    QuitCommand,
    QuotaCommand,
    ShowCommand,
    UsageCommand,
    parse_command,
)
from bot.console.conversation import ConsoleConversation
from bot.console.delivery import PLATFORM, STYLE, ConsoleSurface, output_problem
from bot.console.inputs import checked
from bot.console.render import queued_text, upload_failure_text
from bot.core.errors import ProviderError, WanbotError
from bot.core.models import ServerReport
from bot.reports.chart import save_spend_chart

log = logging.getLogger(__name__)


class ConsoleSession:
    def __init__(
        self,
        service: ChatService,
        conv: ConsoleConversation,
        surface: ConsoleSurface,
        emit: Callable[[str], None],
        *,
        clear: Callable[[], None] | None = None,
    ) -> None:
        self._service = service
        self._conv = conv
        self._surface = surface
        self._emit = emit
        self._clear = clear  # None: not a terminal, nothing to clear

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
        except WanbotError as exc:
            self._emit(wording.refusal(exc, STYLE, self._service.deps.clock.now()))
        except ProviderError as exc:  # an input image upload (EvoLink's file host)
            self._emit(upload_failure_text(self._service.deps.provider.name, exc))
        except Exception:
            # One broken command must not end the session.
            log.exception("console command failed: %s", line)
            self._emit("That failed unexpectedly (a bug in wanbot); the log has the details.")
        return True

    async def run(self, command: Command) -> None:
        service, conv = self._service, self._conv
        if isinstance(command, ImagineCommand):
            await self.imagine(command)
        elif isinstance(command, UsageCommand):
            await conv.answer(await service.admin.usage(conv, command.user_id))
        elif isinstance(command, QuotaCommand):
            await self.quota(command)
        elif isinstance(command, JobsCommand):
            await conv.answer(await service.actions.jobs(conv))
        elif isinstance(command, ShowCommand):
            await conv.answer(await service.actions.show(conv, command.job_id))
        elif isinstance(command, CancelCommand):
            await conv.answer(await service.actions.cancel(conv, command.job_id))
        elif isinstance(command, HelpCommand):
            self._emit(HELP)
        elif isinstance(command, ClearCommand) and self._clear is not None:
            self._clear()

    async def imagine(self, command: ImagineCommand) -> None:
        # Checked again for each job: the folder may have gone since the start, and an
        # image that cannot be saved is paid for all the same.
        if problem := await asyncio.to_thread(output_problem, self._surface.output_dir):
            self._emit(f"Cannot do that: {problem}; nothing was sent or charged.")
            return
        options, sources = await checked(self._service, self._conv, command)
        job = await self._service.starter.start(self._conv, options, sources)
        # No await since the job was admitted: this line comes before its progress.
        self._emit(queued_text(job, ChatMeta.of(job).notes))

    async def quota(self, command: QuotaCommand) -> None:
        admin, conv, user = self._service.admin, self._conv, command.user_id
        action, amount = command.action, command.amount
        text: str | None = None
        if action == "set" and amount is not None:
            text = await admin.set_user_limit(conv, user, amount, command.period)
        elif action == "clear":
            text = await admin.clear_user_limit(conv, user)
        elif action == "grant" and amount is not None:
            text = await admin.grant(conv, user, amount)
        elif action == "block":
            text = await admin.block(conv, user, command.reason)
        elif action == "unblock":
            text = await admin.unblock(conv, user)
        elif action == "default" and amount is not None and command.period is not None:
            text = await admin.set_default(conv, amount, command.period)
        elif action == "budget":
            text = await admin.set_budget(conv, amount)
        elif action == "report":
            card, report = await admin.report(conv)
            await conv.answer(card)
            text = await self._chart(report)
        if text is not None:
            await conv.answer(text)

    async def _chart(self, report: ServerReport) -> str:
        deps = self._service.deps
        try:
            path = await save_spend_chart(
                report, self._surface.output_dir, now=deps.clock.now(), executor=deps.image_executor
            )
        except Exception as exc:  # the numbers above matter more than the picture
            log.warning("could not draw the spend chart", exc_info=True)
            return f"(no chart: {type(exc).__name__})"
        return f"Chart: {path}"

    async def unfinished(self) -> list[str]:
        """Console jobs not ended yet: this session's, and those resumed from an earlier run."""
        active = await self._service.deps.jobs.active_jobs()
        return [job.id for job in active if job.requester.platform == PLATFORM]

    async def wait_all(self) -> None:
        for job_id in await self.unfinished():
            await self._service.deps.engine.wait_final(job_id)
