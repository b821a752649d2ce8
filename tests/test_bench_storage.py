"""bench/storage.py writes only its own section of RESULTS.md."""

from __future__ import annotations

from pathlib import Path

from bench.storage import HEADING, write_section


def test_the_storage_section_is_replaced_or_appended_and_nothing_else_moves(
    tmp_path: Path,
) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n## Ack\n\nack text\n")
    write_section(f"{HEADING}\n\nfirst\n", results)
    assert results.read_text() == f"# results\n\n## Ack\n\nack text\n\n{HEADING}\n\nfirst\n"

    results.write_text(results.read_text() + "\n## Scale\n\nscale text\n")
    write_section(f"{HEADING}\n\nsecond\n", results)
    text = results.read_text()
    assert text == (
        f"# results\n\n## Ack\n\nack text\n\n{HEADING}\n\nsecond\n\n## Scale\n\nscale text\n"
    )
    assert text.count(HEADING) == 1
