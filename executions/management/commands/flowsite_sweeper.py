"""Run the sweeper in the foreground (normally it runs inside ``celery -A flowsite beat``)."""

from django.core.management.base import BaseCommand

from executions.runtime.sweeper import Sweeper


class Command(BaseCommand):
    help = "Fire due timers, reap lost attempts and re-publish unclaimed work, in a loop."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="sweep once and exit")

    def handle(self, *args, once: bool = False, **options):
        sweeper = Sweeper()
        if once:
            self.stdout.write(str(sweeper.sweep_once()))
            return
        try:
            sweeper.run()
        except KeyboardInterrupt:
            sweeper.stop()
