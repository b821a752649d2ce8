"""Job ids users can read aloud and type: 10 characters of Crockford base32.

50 random bits: unguessable (a callback or a button cannot be aimed at someone
else's job by counting), short enough to type. Crockford's alphabet has no
I, L, O or U, so `normalize_job_id` can forgive the usual typos (O for 0,
I or L for 1), any case, and separators.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
JOB_ID_LENGTH = 10
_TYPOS = str.maketrans({"o": "0", "i": "1", "l": "1"})
_VALID = frozenset(ALPHABET)


def new_job_id() -> str:
    """A fresh random id, lower case, e.g. `k3f9x2m7qa`."""
    return "".join(secrets.choice(ALPHABET) for _ in range(JOB_ID_LENGTH))


def normalize_job_id(text: str) -> str | None:
    """The canonical form of a typed id, or None if it cannot be one."""
    cleaned = text.strip().lower().replace("-", "").replace(" ", "").translate(_TYPOS)
    if len(cleaned) != JOB_ID_LENGTH or not set(cleaned) <= _VALID:
        return None
    return cleaned
