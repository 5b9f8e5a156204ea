"""Redaction of secrets in anything the product prints or logs (error messages, reprs).

Secrets are typed :class:`pydantic.SecretStr` where the schema knows them (``kafka.
sasl_password``, ``kafka.ssl_key_password``, ``sinks.sentinel.client_secret``), but some
travel in free-form places: a PostgreSQL DSN (``postgresql://user:PASSWORD@host/db``), the
verbatim librdkafka pass-through dicts (``kafka.extra``, ``sinks.alerts_topic.
producer_extra`` may hold ``sasl.password``), the raw ``collector:`` / ``sinks:`` sections of
the root settings, and the ``input`` of a validation error. Everything here is light (no
pydantic import at module level) and never raises.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|credential|dsn|private|"
                         r"api[_.-]?key|sas[_.-]?key|(^|[_.-])pw($|[_.-])", re.I)
# scheme://user:PASSWORD@host  (also with an empty user)
_URL_PW = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
# libpq key/value DSN and query parameters: password=..., sslpassword=..., &password=...
_KV_PW = re.compile(r"(?P<pre>\b(?:ssl)?password\s*=\s*)(?:'[^']*'|\"[^\"]*\"|[^\s&;]*)",
                    re.I)

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 4


def is_secret_key(name: Any) -> bool:
    """Whether a setting / mapping key names a secret (password, secret, token, DSN...)."""
    return bool(_SECRET_KEY.search(str(name)))


def redact_text(s: str) -> str:
    """``s`` with URL passwords and ``password=...`` values masked."""
    if not isinstance(s, str):
        return s
    return _KV_PW.sub(lambda m: m.group("pre") + MASK, _URL_PW.sub(
        lambda m: m.group("pre") + MASK + "@", s))


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with the values of secret-named keys masked (recursively, in
    mappings and sequences) and passwords in URL strings masked."""
    if _depth > 20:
        return MASK
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else
                    redact(v, _depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, _depth + 1) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return MASK
    return value


def safe_input(loc: tuple | list, value: Any) -> str:
    """A short, secret-free rendering of the input of a validation error at ``loc``."""
    try:
        if any(is_secret_key(p) for p in loc):
            return MASK
        if isinstance(value, dict):
            return f"a mapping with keys {_REPR.repr(sorted(map(str, value))[:8])}"
        if isinstance(value, (list, tuple, set)):
            return f"a list of {len(value)} items"
        return _REPR.repr(redact_text(value) if isinstance(value, str) else value)
    except Exception:  # noqa: BLE001 - rendering an error must never fail
        return f"<{type(value).__name__}>"


def redacted_repr_args(model: Any, args) -> Any:
    """For ``__repr_args__`` of pydantic models: mask secret-named fields, secrets inside
    dict fields and passwords in URL strings."""
    for k, v in args:
        if k is not None and is_secret_key(k) and isinstance(v, str) and v:
            yield k, redact_text(v) if "://" in v or "=" in v else MASK
        else:
            yield k, redact(v) if isinstance(v, (dict, list, tuple, str)) else v
