"""Log redaction: a filter that keeps key material, creds and passwords out of log records.

The store logs through ``logging.getLogger("baileys_store")`` and its children, with structured
fields passed as ``extra=``. :class:`RedactingFilter` is the safety net behind the rule that
callers never log secrets: it rewrites the record in place before any handler formats it.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping
from typing import Any

from .._config import redact_url

__all__ = ["LOGGER_NAME", "RedactingFilter", "install_redaction", "log_event", "logger"]

LOGGER_NAME = "baileys_store"
logger = logging.getLogger(LOGGER_NAME)

MASK = "***"
_MAX_DEPTH = 4  # nested containers deeper than this are masked whole rather than walked
# Candidate base64 / base64url / hex runs of 32+ characters (a 32-byte key is 64 hex or 43-44
# base64 characters). A candidate is masked when it is all hex, or mixes upper case, lower case
# and digits (or flips case often) as random base64 does; file paths, identifiers and phone
# numbers (too short) survive.
_SECRET_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_UPPER, _LOWER, _DIGIT = re.compile("[A-Z]"), re.compile("[a-z]"), re.compile("[0-9]")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_KV_PASSWORD = re.compile(r"(password|passwd|pwd)=(?:'[^']*'|\S+)", re.I)  # libpq conninfo
_SECRET_KEY = re.compile(r"key|secret|password|passwd|token|^creds$|^private|^master", re.I)
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


# Field names that match the secret pattern but describe, rather than hold, a key.
_DESCRIPTIVE = re.compile(r"_(type|types|count|size|len|version|versions)$")


def _is_secret_key(name: object) -> bool:
    return (
        isinstance(name, str)
        and _SECRET_KEY.search(name) is not None
        and _DESCRIPTIVE.search(name) is None
    )


def redact_text(text: str) -> str:
    """``text`` with URL passwords and long base64/hex runs masked."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    if "=" in text:
        text = _KV_PASSWORD.sub(r"\1=" + MASK, text)
    return _SECRET_RUN.sub(_mask_run, text)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    core = run.rstrip("=")
    if _HEX.fullmatch(core) or (
        _UPPER.search(core) and _LOWER.search(core) and _DIGIT.search(core)
    ):
        return MASK
    # Random base64 without a digit (~0.1 % of 32-byte keys) still flips case all the time.
    letters = [c for c in core if c.isalpha()]
    flips = sum(a.isupper() != b.isupper() for a, b in itertools.pairwise(letters))
    return MASK if flips * 4 >= len(core) else run


def redact_value(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` safe to log: bytes become ``<N bytes>``, secrets ``***``.

    Containers are walked (mappings mask values under secret-looking keys); other objects are
    turned into text and scrubbed, so a ``__str__`` that reveals a key is caught too.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{value.nbytes if isinstance(value, memoryview) else len(value)} bytes>"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        return _redact_container(value, depth)
    return redact_text(_safe_str(value))


def _redact_container(value: Any, depth: int) -> Any:
    if depth >= _MAX_DEPTH:
        return MASK
    if isinstance(value, Mapping):
        return {
            k: MASK if _is_secret_key(k) else redact_value(v, depth + 1) for k, v in value.items()
        }
    items = [redact_value(v, depth + 1) for v in value]
    return tuple(items) if isinstance(value, tuple) else items


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break logging
        return f"<unprintable {type(value).__name__}>"


class RedactingFilter(logging.Filter):
    """Scrub a record's message, arguments and ``extra`` fields; never drops a record.

    Masked: ``bytes``/``bytearray``/``memoryview`` values (``<N bytes>``), base64 or hex runs of
    32 characters or more, values under keys named like ``*key*``, ``*secret*``,
    ``*password*``, ``*token*``, ``creds``, ``private*``, ``master*`` (``***``), and the
    password of any URL. The filter never raises: a record it cannot scrub is replaced by a
    placeholder message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; always keep it."""
        try:
            self._scrub(record)
        except Exception:  # logging must never fail because of redaction
            record.msg = "<log record dropped by redaction: unprintable content>"
            record.args = None
        return True

    @staticmethod
    def _scrub(record: logging.LogRecord) -> None:
        for name, value in list(vars(record).items()):
            if name in _RECORD_ATTRS:
                continue
            record.__dict__[name] = MASK if _is_secret_key(name) else redact_value(value)
        args = record.args
        if isinstance(args, Mapping):
            # logging passes a lone dict argument as the mapping for %(name)s formatting.
            args = {k: MASK if _is_secret_key(k) else _arg(v) for k, v in args.items()}
        elif args:
            args = tuple(_arg(a) for a in args)
        # Format now and scrub the whole text: a secret split over the template and an argument
        # (or a long run built by formatting) is caught too. Handlers then see no args.
        record.msg = msg = redact_text(_safe_str(record.msg))
        record.args = args or None
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: keep both parts, scrubbed
            text = f"{msg} {args!r}"
        record.msg = redact_text(text)
        record.args = None
        if record.exc_info and not record.exc_text:
            # Render the traceback here so its exception messages are scrubbed too; the
            # handler's formatter reuses ``exc_text`` instead of formatting it again.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)


def _arg(value: Any) -> Any:
    """A format argument made safe; numbers stay numbers so ``%d`` keeps working."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return redact_value(value)


def install_redaction(target: logging.Logger | None = None) -> RedactingFilter:
    """Add a :class:`RedactingFilter` to ``target`` once (idempotent).

    A logger's filters only see records logged on that very logger, not those propagated from
    its children. So with ``target=None`` the filter goes on the ``baileys_store`` logger and on
    every ``baileys_store.*`` logger that exists now (the package's modules create theirs at
    import); a child logger created later needs its own call.

    Returns:
        The filter installed (the same instance on every logger it was added to).
    """
    targets = [logger] if target is None else [target]
    if target is None:
        names = [n for n in logging.root.manager.loggerDict if n.startswith(LOGGER_NAME + ".")]
        targets += [logging.getLogger(n) for n in sorted(names)]
    installed = next(
        (f for t in targets for f in t.filters if isinstance(f, RedactingFilter)),
        RedactingFilter(),
    )
    for t in targets:
        if not any(isinstance(f, RedactingFilter) for f in t.filters):
            t.addFilter(installed)
    return installed


def log_event(log: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with ``fields`` as structured ``extra`` fields (plus ``event`` itself).

    Field names that clash with ``LogRecord`` attributes get a ``field_`` prefix rather than
    raising ``KeyError`` as ``logging`` would.
    """
    if not log.isEnabledFor(level):
        return
    extra = {("field_" + k if k in _RECORD_ATTRS else k): v for k, v in fields.items()}
    extra["event"] = event
    log.log(level, event, extra=extra, stacklevel=2)
