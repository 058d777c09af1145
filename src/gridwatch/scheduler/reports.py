"""Reports: a webhook notification per failure, and the daily digest e-mail over SMTP."""

from __future__ import annotations

import asyncio
import itertools
import logging
import smtplib
import socket
import ssl
import time
from collections import defaultdict
from email.message import EmailMessage
from typing import Any

import aiohttp

from gridwatch.config.schedule import DigestSettings, ReportSettings
from gridwatch.record import format_ms
from gridwatch.scheduler.store import Run

log = logging.getLogger(__name__)
FAILED = ("failed", "timeout", "lost", "unhealthy")


class Notifier:
    """Posts failure events to the webhook without ever blocking the scheduler."""

    def __init__(self, settings: ReportSettings) -> None:
        self.settings = settings
        self.host = socket.gethostname()
        self.sent = 0
        self.errors = 0
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        """Send ``event`` (plus host and time) in the background."""
        if not self.settings.webhook_url:
            return
        body = {**event, "host": self.host, "time": format_ms(round(time.time() * 1000))}
        task = asyncio.create_task(self._post(self.settings.webhook_url, body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
        for attempt in range(3):
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.post(url, json=body) as response,
                ):
                    if response.status < 300:
                        self.sent += 1
                        return
                    problem = f"status {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
            log.warning("webhook %s failed (attempt %d): %s", url, attempt + 1, problem)
            await asyncio.sleep(1.0 * 2**attempt)
        self.errors += 1

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait a little for notifications still on their way."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)


def digest(runs: list[Run], flap_restarts: int, now_ms: int) -> tuple[str, str] | None:
    """Subject suffix and body of the digest of ``runs`` (the last 24 h), or ``None``."""
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.id):
        by_task[run.task].append(run)
    failed_lines: list[str] = []
    flapped_lines: list[str] = []
    for task, task_runs in sorted(by_task.items()):
        failures = [r for r in task_runs if r.state in FAILED]
        if task_runs[0].kind == "service":
            restarts = sum(1 for r in task_runs if r.state in ("failed", "unhealthy", "exited"))
            if restarts >= flap_restarts:
                flapped_lines.append(f"  {task}: service restarted {restarts} times")
            continue
        if failures:
            last = failures[-1]
            failed_lines.append(
                f"  {task}: {len(failures)} of {len(task_runs)} runs failed; last at "
                f"{format_ms(last.started_ms)}: {last.state}, {last.reason or ''}".rstrip(", ")
            )
        changes = sum(
            1
            for a, b in itertools.pairwise(task_runs)
            if (a.state in FAILED) != (b.state in FAILED)
        )
        if changes >= 2:
            flapped_lines.append(f"  {task}: switched between success and failure {changes} times")
    if not failed_lines and not flapped_lines:
        return None
    since = format_ms(now_ms - 86400_000)
    body = [f"gridwatch scheduler report for the 24 hours since {since}.", ""]
    if failed_lines:
        body += ["Failed tasks:", *failed_lines, ""]
    if flapped_lines:
        body += ["Flapping tasks and services:", *flapped_lines, ""]
    subject = f"{len(failed_lines)} failed, {len(flapped_lines)} flapped"
    return subject, "\n".join(body)


def send_mail(settings: DigestSettings, subject: str, body: str) -> None:
    """Send one message (blocking; run it in a thread)."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Subject"] = f"{settings.subject}: {subject}"
    message.set_content(body)
    smtp: smtplib.SMTP
    if settings.security == "tls":
        context = ssl.create_default_context()
        smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=30, context=context)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
    with smtp:
        if settings.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.username and settings.password is not None:
            smtp.login(settings.username, settings.password.get_secret_value())
        smtp.send_message(message)
