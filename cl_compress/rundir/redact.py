"""Secrets out of what is written: a storage URL (Optuna's database) appears in tune.json,
presets, sweep.json, summary.json, report.md and their ``--out`` copies only redacted."""

from __future__ import annotations

import re
from typing import Any

SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|cred|signature|sig$", re.I)


def redact(url: str) -> str:
    """The storage URL without its secrets: the password of ``user:pw@`` and the value of
    every query parameter that names one (``password``, ``sslpassword``, ``token``,
    ``api_key``, ``secret`` ...).

    >>> redact("postgresql://me:secret@db:5432/optuna")
    'postgresql://me:***@db:5432/optuna'
    >>> redact("postgresql://me@db/optuna?password=s3cr%40t&sslmode=require&access_token=x")
    'postgresql://me@db/optuna?password=***&sslmode=require&access_token=***'
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<storage URL not shown: unparsable>"
    netloc = parts.netloc
    if "@" in netloc:
        cred, _, host = netloc.rpartition("@")
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        netloc = f"{cred}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_tuning(tuning: Any) -> Any:
    """A preset's ``tuning`` section with every storage URL redacted (presets written
    before :func:`redact` knew query parameters may hold one)."""
    if not isinstance(tuning, dict):
        return tuning
    return {k: ({**v, "storage": redact(v["storage"])} if isinstance(v, dict) and v.get("storage")
                else v) for k, v in tuning.items()}
