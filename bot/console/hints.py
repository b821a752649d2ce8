"""Did you mean...? For options typed wrong, in the console and on the command line.

A mistyped option must never become part of a paid prompt, and the refusal should
say what was meant (difflib's similarity, as Python's own `NameError` hints do).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import NoReturn

from bot.chat.options import unknown_option_text


def _misplaced_text(word: str, known: Iterable[str]) -> str:
    """A real option argparse could not take here (after `--`, or another command's)
    must not be answered with "did you mean" itself."""
    if word.split("=", 1)[0] in known:
        return (
            f"{word} is not an option here (every word after `--` is text; "
            "`wanbot COMMAND --help` lists a command's options)"
        )
    return unknown_option_text(word, known)


class HintingParser(argparse.ArgumentParser):
    """argparse, but an unrecognized option is answered with the closest real one."""

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            words = message[len(prefix) :].split()
            dashed = [word for word in words if word.startswith("-") and len(word) > 1]
            if dashed:
                known = sorted(self._option_names())
                message = "; ".join(_misplaced_text(word, known) for word in dashed)
        super().error(message)

    def _option_names(self) -> set[str]:
        names: set[str] = set()
        for action in self._actions:
            names.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    names.update(o for a in parser._actions for o in a.option_strings)
        return names - {"-h", "--help"}
