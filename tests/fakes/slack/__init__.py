"""A fake Slack (Web API, Socket Mode, file hosting) for running the real Bolt offline."""

from tests.fakes.slack.hosting import SIGN_IN_PAGE
from tests.fakes.slack.server import FakeSlack
from tests.fakes.slack.wire import Ack, Envelope, RecordedCall, RecordedFetch
from tests.fakes.slack.world import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    TEAM_ID,
    SlackChannel,
    SlackFile,
    SlackUser,
)

__all__ = [
    "APP_TOKEN",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "SIGN_IN_PAGE",
    "TEAM_ID",
    "Ack",
    "Envelope",
    "FakeSlack",
    "RecordedCall",
    "RecordedFetch",
    "SlackChannel",
    "SlackFile",
    "SlackUser",
]
