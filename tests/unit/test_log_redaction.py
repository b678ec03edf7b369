"""RedactingFilter: key material, creds and passwords never reach a handler."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from baileys_store.observability import RedactingFilter, install_redaction, log_event


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def text(self) -> str:
        # exc_info keeps the exception object for handlers that want it; its rendering is
        # exc_text, which the lines include.
        fields = [{k: v for k, v in vars(r).items() if k != "exc_info"} for r in self.records]
        return "\n".join(self.lines) + repr(fields)


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, Capture]]:
    logger = logging.getLogger(f"baileys_store.test.{secrets.token_hex(4)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Capture()
    logger.addHandler(handler)
    logger.addFilter(RedactingFilter())
    yield logger, handler
    logger.removeHandler(handler)


SECRET = secrets.token_bytes(32)
FORMS = [
    SECRET.hex(),
    base64.b64encode(SECRET).decode(),
    base64.urlsafe_b64encode(SECRET).decode().rstrip("="),
]


def assert_clean(text: str) -> None:
    for form in FORMS:
        assert form not in text
    assert repr(SECRET)[2:20] not in text


def test_bytes_anywhere_become_sizes(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    logger.debug(
        "blob %s and %r",
        SECRET,
        bytearray(SECRET[:5]),
        extra={"blob": SECRET, "view": memoryview(SECRET), "nested": {"list": [SECRET]}},
    )
    assert cap.lines == ["DEBUG blob <32 bytes> and '<5 bytes>'"]
    rec = cap.records[0]
    assert rec.__dict__["blob"] == "<32 bytes>"
    assert rec.__dict__["view"] == "<32 bytes>"
    assert rec.__dict__["nested"] == {"list": ["<32 bytes>"]}
    assert_clean(cap.text())


@pytest.mark.parametrize("form", FORMS)
def test_long_base64_and_hex_runs_are_masked(
    log: tuple[logging.Logger, Capture], form: str
) -> None:
    logger, cap = log
    logger.debug(f"inline {form} in msg")
    logger.debug("as arg %s", form)
    logger.debug("as field", extra={"detail": f"value={form}"})
    assert cap.lines[:2] == ["DEBUG inline *** in msg", "DEBUG as arg ***"]
    assert cap.records[2].__dict__["detail"] == "value=***"
    assert_clean(cap.text())


def test_base64_without_digits_is_masked(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    logger.debug("k=%s", "qXwTbUyZaPmNcRvLeKoJgHdFsAiQzWxYtBnMuCrV+/Ab=")
    assert cap.lines == ["DEBUG k=***"]


def test_secret_split_over_template_and_arg_is_caught(
    log: tuple[logging.Logger, Capture],
) -> None:
    logger, cap = log
    half = len(FORMS[0]) // 2
    logger.debug(FORMS[0][:half] + "%s", FORMS[0][half:])
    assert_clean(cap.text())


def test_short_identifiers_survive(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    logger.info("session %s/%s key %s:%s", "clinic-1", "5511999990000", "pre-key", "12.0")
    logger.info(
        "at %s in %s",
        "/srv/app/baileys_store/backends/postgres_schema",
        "test_exception_text_is_scrubbed_with_more_words",
    )
    logger.info("uuid %s", "550e8400-e29b-41d4-a716-446655440000")
    assert cap.lines == [
        "INFO session clinic-1/5511999990000 key pre-key:12.0",
        "INFO at /srv/app/baileys_store/backends/postgres_schema in "
        "test_exception_text_is_scrubbed_with_more_words",
        "INFO uuid 550e8400-e29b-41d4-a716-446655440000",
    ]


@pytest.mark.parametrize(
    "field",
    [
        "master_key",
        "noiseKey",
        "api_secret",
        "password",
        "auth_token",
        "creds",
        "private",
        "privateKey",
        "master",
        "masterKeys",
    ],
)
def test_secret_named_fields_are_masked(log: tuple[logging.Logger, Capture], field: str) -> None:
    logger, cap = log
    logger.debug("event", extra={field: "hunter2", "count": 3})
    rec = cap.records[0]
    assert rec.__dict__[field] == "***"
    assert rec.__dict__["count"] == 3
    assert "hunter2" not in cap.text()


def test_secret_named_keys_inside_mappings_and_dict_args(
    log: tuple[logging.Logger, Capture],
) -> None:
    logger, cap = log
    creds = {"noiseKey": {"public": "pub", "private": "hunter2"}, "registrationId": 42}
    logger.debug("creds %s", {"creds": creds, "me": "5511"})
    logger.debug("%(user)s %(password)s", {"user": "bob", "password": "hunter2"})
    logger.debug("saved", extra={"state": creds})
    assert cap.lines[0] == "DEBUG creds {'creds': '***', 'me': '5511'}"
    assert cap.lines[1] == "DEBUG bob ***"
    assert cap.records[2].__dict__["state"] == {"noiseKey": "***", "registrationId": 42}
    assert "hunter2" not in cap.text()


def test_url_passwords_are_masked(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    logger.warning("connect %s failed", "postgresql://app:hunter2@db:5432/auth")
    logger.warning("dsn host=db user=app password=hunter2 dbname=auth")
    logger.warning("cache", extra={"url": "redis://:hunter2@cache:6379/0"})
    assert cap.lines[0] == "WARNING connect postgresql://app:***@db:5432/auth failed"
    assert cap.lines[1] == "WARNING dsn host=db user=app password=*** dbname=auth"
    assert cap.records[2].__dict__["url"] == "redis://:***@cache:6379/0"
    assert "hunter2" not in cap.text()


def test_exception_text_is_scrubbed(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    try:
        raise RuntimeError(f"boom with {FORMS[0]}")
    except RuntimeError:
        logger.exception("failed")
    assert "RuntimeError: boom with ***" in cap.lines[0]
    assert __file__ in cap.lines[0]  # paths are long runs too, but not random-looking ones
    assert_clean(cap.text())


def test_structured_fields_survive(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    log_event(
        logger,
        logging.INFO,
        "creds_saved",
        namespace="clinic-1",
        version=7,
        key_type="pre-key",
        key_count=12,
        elapsed=0.25,
        ok=True,
        tiers=["cache", "durable"],
        name="collides",
    )
    rec = cap.records[0]
    assert cap.lines == ["INFO creds_saved"]
    fields = {
        k: rec.__dict__[k]
        for k in (
            "event",
            "namespace",
            "version",
            "key_type",
            "key_count",
            "elapsed",
            "ok",
            "tiers",
        )
    }
    assert fields == {
        "event": "creds_saved",
        "namespace": "clinic-1",
        "version": 7,
        "key_type": "pre-key",
        "key_count": 12,
        "elapsed": 0.25,
        "ok": True,
        "tiers": ["cache", "durable"],
    }
    assert rec.__dict__["field_name"] == "collides"  # a LogRecord attribute name is renamed
    assert rec.name == logger.name
    assert rec.funcName == "test_structured_fields_survive"  # stacklevel points at the caller


def test_log_event_below_level_does_nothing(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    logger.setLevel(logging.INFO)
    log_event(logger, logging.DEBUG, "noisy", n=1)
    assert cap.records == []


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def test_filter_never_raises(log: tuple[logging.Logger, Capture]) -> None:
    logger, cap = log
    logger.debug("value %s", Broken())
    logger.debug(Broken())
    logger.debug("two %s %s", "only-one")  # noqa: PLE1206 - a bad format string on purpose
    logger.debug("number %d", Broken())
    logger.debug("fields", extra={"obj": Broken()})
    assert cap.lines[0] == "DEBUG value <unprintable Broken>"
    assert cap.lines[1] == "DEBUG <unprintable Broken>"
    assert cap.lines[2].startswith("DEBUG two %s %s")
    assert "only-one" in cap.lines[2]
    assert len(cap.lines) == 5
    assert cap.records[4].__dict__["obj"] == "<unprintable Broken>"


def test_filter_survives_a_failure_inside_scrubbing() -> None:
    class Hostile(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("no items")

    record = logging.LogRecord("baileys_store", logging.DEBUG, __file__, 1, "m %(a)s", None, None)
    record.args = Hostile(a=1)
    assert RedactingFilter().filter(record) is True
    assert record.args is None
    assert "redaction" in record.getMessage()


def test_install_redaction_is_idempotent_and_covers_children() -> None:
    root = logging.getLogger("baileys_store")
    child = logging.getLogger("baileys_store.h4probe")
    before_root, before_child = list(root.filters), list(child.filters)
    try:
        first = install_redaction()
        second = install_redaction()
        assert first is second
        assert sum(isinstance(f, RedactingFilter) for f in root.filters) == 1
        assert sum(isinstance(f, RedactingFilter) for f in child.filters) == 1
        other = logging.getLogger("elsewhere.h4probe")
        mine = install_redaction(other)
        assert install_redaction(other) is mine
        assert sum(isinstance(f, RedactingFilter) for f in other.filters) == 1
        other.removeFilter(mine)
    finally:
        root.filters[:] = before_root
        child.filters[:] = before_child


def test_installed_filter_scrubs_real_store_logging(caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger("baileys_store")
    before = list(root.filters)
    try:
        install_redaction()
        with caplog.at_level(logging.DEBUG, logger="baileys_store"):
            root.debug("key %s", SECRET, extra={"master_key": SECRET.hex()})
        assert caplog.records
        assert_clean(caplog.text + repr([vars(r) for r in caplog.records]))
    finally:
        root.filters[:] = before
