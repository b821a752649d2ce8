"""ChatService: every use case once, for every chat front end.

Front ends parse their platform's input into an actor, a place and a request (a
`Conversation`), call the service, and draw the cards it returns; the service
starts jobs, checks permissions and quotas, and says every refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.chat.actions import JobActions
from bot.chat.admin import Admin
from bot.chat.configs import SpaceConfigs
from bot.chat.delivery import ChatDelivery
from bot.chat.starting import ChatDeps, Starter, instant_checks
from bot.chat.surface import ChatSurface
from bot.core.validation import CheckedOptions, ImageSource


class ChatService:
    def __init__(self, deps: ChatDeps) -> None:
        self.deps = deps
        self.configs = SpaceConfigs(deps.quotas)
        self.deliveries: dict[str, ChatDelivery] = {}
        self._surfaces: dict[str, ChatSurface] = {}
        self.starter = Starter(deps, self.configs, self.deliveries)
        self.actions = JobActions(deps, self.starter, self._surfaces)
        self.admin = Admin(deps, self.configs)

    def add_surface(self, surface: ChatSurface) -> ChatDelivery:
        """A front end's surface; its delivery becomes the engine's port for its jobs."""
        delivery = ChatDelivery(surface, self.deps.clock)
        self.deliveries[surface.platform] = delivery
        self._surfaces[surface.platform] = surface
        self.deps.engine.register_delivery(surface.platform, delivery)
        # Input images hosted for a job go when it ends, however it ends.
        self.deps.engine.on_final(delivery.job_ended)
        return delivery

    def check(
        self,
        prompt: str | None,
        negative: str | None = None,
        aspect: str | None = None,
        count: int | None = None,
        sources: Sequence[ImageSource] = (),
        *,
        normalize: bool = True,
    ) -> CheckedOptions:
        """The instant checks (no I/O), every problem at once."""
        return instant_checks(self.deps, prompt, negative, aspect, count, sources, normalize)
