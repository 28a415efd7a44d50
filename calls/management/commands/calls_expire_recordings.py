"""`manage.py calls_expire_recordings`: delete recordings older than RECORDING_RETENTION_DAYS.

Safe from cron: it deletes only what is past the retention, a second run finds nothing more,
and two runs at once do no harm. It prints what it removed (one line per recording).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from calls import services


class Command(BaseCommand):
    help = "Delete call recordings older than RECORDING_RETENTION_DAYS (file and row)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="keep this many days instead of RECORDING_RETENTION_DAYS",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be removed; remove nothing"
        )

    def handle(self, *args: Any, days: int | None, dry_run: bool, **options: Any) -> None:
        days = settings.RECORDING_RETENTION_DAYS if days is None else days
        if days <= 0:
            self.stdout.write("retention is off (0 days): nothing removed")
            return
        before = timezone.now() - timedelta(days=days)
        expired = services.recordings_expire(before=before, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        for recording in expired:
            self.stdout.write(
                f"{verb} {recording.file.name} (call {recording.call.call_sid}, "
                f"{recording.created_at:%Y-%m-%d}, {recording.size} bytes)"
            )
        total = sum(r.size for r in expired)
        self.stdout.write(
            f"{verb} {len(expired)} recording(s), {total} bytes, stored before "
            f"{before:%Y-%m-%d %H:%M} UTC ({days} days)"
        )
