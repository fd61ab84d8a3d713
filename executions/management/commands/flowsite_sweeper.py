"""Run the sweeper as its own process: the recommended production set-up (then start beat with
``FLOWSITE_SWEEPER_IN_BEAT=0``). Timers, lost-worker recovery and re-publishing never wait for
beat, and ``/healthz`` reports this process's last round."""

import signal

from django.core.management.base import BaseCommand

from executions.runtime.sweeper import Sweeper


class Command(BaseCommand):
    help = "Fire due timers, reclaim lost attempts and re-publish unclaimed work, in a loop."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="sweep once and exit")

    def handle(self, *args, once: bool = False, **options):
        sweeper = Sweeper()
        if once:
            self.stdout.write(str(sweeper.sweep_once()))
            return
        signal.signal(signal.SIGTERM, lambda signum, frame: sweeper.stop())
        try:
            sweeper.run()
        except KeyboardInterrupt:
            sweeper.stop()
