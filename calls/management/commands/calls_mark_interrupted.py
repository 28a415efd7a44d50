"""Close calls left unfinished by a server process that went away."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from calls.services import calls_mark_interrupted


class Command(BaseCommand):
    help = "Mark calls unseen for --stale-after seconds interrupted (or failed, if never streamed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stale-after", type=float, default=60.0, help="seconds (default 60)")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the sweep once and say how many calls it closed."""
        closed = calls_mark_interrupted(
            now=timezone.now(), stale_after=timedelta(seconds=options["stale_after"])
        )
        self.stdout.write(f"{closed} call(s) closed")
