"""The daily digest reaches a real SMTP server (aiosmtpd) with the failed and flapping tasks."""

from __future__ import annotations

import asyncio
import email
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port
from tests.integration.sched_support import finished, make_scheduler, running, soon, until

pytestmark = pytest.mark.integration


class Inbox:
    """An aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def test_digest_lists_failed_and_flapping(tmp_path: Path) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    schedule = {
        "tasks": {
            "monthly-report": {
                # Slots far enough apart that a loaded machine cannot make them overlap.
                "schedule": f"R2/{soon(0.5)}/PT2S",
                "command": ["sh", "-c", "echo LSF down >&2; exit 4"],
            },
            "healthy": {"schedule": f"R2/{soon(0.2)}/PT0.3S", "command": ["true"]},
        },
        "services": {
            "flume": {
                "command": ["sh", "-c", "exit 1"],
                "restart_initial_s": 0.05,
                "max_failures": 4,
            }
        },
        "reports": {
            "digest": {
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "sender": "gridwatch@example.org",
                "recipients": ["ops@example.org", "oncall@example.org"],
            }
        },
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: len(finished(scheduler, "monthly-report")) == 2, 30)
            await until(lambda: scheduler.describe()["services"][0]["state"] == "failed", 30)
            assert await scheduler.send_digest(1_000)
            assert not await scheduler.send_digest(1_000)  # one mail per slot, ever

    try:
        asyncio.run(main())
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    sender, recipients, message = inbox.messages[0]
    assert sender == "gridwatch@example.org"
    assert recipients == ["ops@example.org", "oncall@example.org"]
    assert message["Subject"] == "gridwatch scheduler digest: 1 failed, 1 flapped"
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "monthly-report: 2 of 2 runs failed; last at " in body
    assert "failed, exit status 4" in body
    assert "flume: service restarted 4 times" in body
    assert "healthy" not in body
