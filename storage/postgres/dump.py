"""`wanbot backup` on PostgreSQL prints the pg_dump command (it does not run it)."""

from __future__ import annotations

from pathlib import Path


def pg_dump_command(database_url: str, destination: str | Path) -> str:
    """The command that backs up a PostgreSQL database, with the password left out
    (pg_dump reads it from PGPASSWORD or ~/.pgpass), from `user:PASSWORD@` and from
    a `?password=` parameter alike."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(database_url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"],
        safe="/",
    )
    # By hand: urlunsplit turns an empty host ("postgresql:///db?host=/run/postgresql",
    # a Unix socket) into "postgresql:/db", which pg_dump does not read as a URL.
    safe_url = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    return f"pg_dump --format=custom --file={_quote(str(destination))} {_quote(safe_url)}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
