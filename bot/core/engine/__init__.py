"""The job engine (see engine.py) and the parts it is built from."""

from bot.core.engine.engine import (
    CALLBACK_TOKEN,
    EngineConfig,
    EngineStats,
    JobEngine,
)
from bot.core.engine.polling import PollPolicy

__all__ = [
    "CALLBACK_TOKEN",
    "EngineConfig",
    "EngineStats",
    "JobEngine",
    "PollPolicy",
]
