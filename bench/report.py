"""bench/RESULTS.md from the stored sections (bench/results.json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.common import Section, md_table

TITLE = "# wanbot benchmarks: results"

INTRO = """Figures from a real run of `make bench` (`python -m bench`) on the machine below.
Each benchmark runs in its own process; the ones that drive the bot start the fake
Discord and the fake provider in a second process, on 127.0.0.1. docs/bench.md says
how to run them and what each figure means; the method of each is under its table.
Re-running one benchmark (`python -m bench ack`) replaces its section only; each
section gives the date it ran."""


def render(
    machine: Mapping[str, str], sections: Sequence[Section], kept: Sequence[str] = ()
) -> str:
    """RESULTS.md from the stored sections; `kept`: sections written by standalone
    benchmarks (see `standalone`), appended as they are."""
    parts = [TITLE, "", INTRO, "", "## Machine", ""]
    parts.append(
        md_table(
            ["", ""],
            [
                ["CPU", machine.get("cpu", "?")],
                ["cores available", machine.get("cores", "?")],
                ["RAM", machine.get("ram", "?")],
                ["OS", machine.get("os", "?")],
                ["Python", machine.get("python", "?")],
                ["libraries", machine.get("libraries", "?")],
                ["run", machine.get("date", "?")],
                # Measured: the sum of each section's own run time (one process each).
                ["time, all sections", _duration(sum(s.seconds for s in sections))],
            ],
        )
    )
    parts += ["", "## Targets", ""]
    rows = []
    for section in sections:
        for figure in section.figures:
            if figure.target is not None:
                rows.append(
                    [section.title, figure.label, figure.shown(), figure.target, figure.verdict()]
                )
    parts.append(md_table(["benchmark", "figure", "measured", "target", ""], rows))
    missed = [(s, f) for s in sections for f in s.figures if f.ok is False]
    if missed:
        parts += ["", "### Missed targets: why, and what would fix them", ""]
        for section, figure in missed:
            head = (
                f"**{section.title}: {figure.label}** ({figure.shown()}, target {figure.target})."
            )
            parts.append(f"- {head} {figure.missed}")
    for section in sections:
        parts += ["", f"## {section.title}", ""]
        command = f"`python -m bench {section.name}`"
        parts.append(f"_Ran {section.when or '?'} in {section.seconds:.0f} s ({command})._")
        parts += ["", md_table(["figure", "value", "target", ""], _figure_rows(section)), ""]
        parts.append(section.body.strip())
    for text in kept:
        parts += ["", text.strip()]
    return "\n".join(parts).rstrip() + "\n"


def standalone(current: str, sections: Sequence[Section]) -> list[str]:
    """The sections of an existing RESULTS.md that no stored section renders: those a
    standalone benchmark wrote itself (`python -m bench.storage`), kept on a rewrite."""
    ours = {"Machine", "Targets", *(s.title for s in sections)}
    kept = []
    for chunk in current.split("\n## ")[1:]:
        title = chunk.split("\n", 1)[0].strip()
        if title not in ours:
            kept.append("## " + chunk)
    return kept


def _figure_rows(section: Section) -> list[list[str]]:
    return [[f.label, f.shown(), f.target or "", f.verdict()] for f in section.figures]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:,.0f} s)"
