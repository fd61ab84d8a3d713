"""The integration harness: a whole flowsite system (web, Celery workers, beat, broker, database)
as real separate processes, plus the helpers the tests use to drive and check it.

Backends come from the environment the suite is launched with (see scripts/test):

* ``DATABASE_URL=postgres://...`` -> a fresh database ``flowsite_it_<random>`` on that server
  (dropped at teardown); unset -> embedded SQLite in the system's own data dir.
* ``CELERY_BROKER_URL=redis://...`` -> a *private* ``redis-server`` on a free loopback port (so
  tests can kill and restart it without touching the machine's shared Redis); unset -> the
  embedded broker (``flowsitefs://``, a folder under the data dir).

Every child is started with ``start_new_session=True``; the harness records each process
group and kills only those (``os.killpg(pgid, SIGKILL)``), never by name. Logs go to
``$FLOWSITE_ARTIFACTS/integration/<test module>/<backend>/`` (default ./artifacts).

Nothing here sleeps and hopes: every wait is :func:`wait_until` with a deadline and a message
that says what was awaited and what the system looked like when time ran out.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"

OPEN = ("Starting", "Running")
CLOSED = ("Succeeded", "Failed", "Stopped", "TimedOut")
TERMINAL_EVENTS = {
    "ExecutionSucceeded": "Succeeded",
    "ExecutionFailed": "Failed",
    "ExecutionStopped": "Stopped",
    "ExecutionTimedOut": "TimedOut",
}
CLOSE_EVENTS = ("StepExited", "StepFailed")

# Children's engine settings: fast sweeps and short leases so recovery fits in a test.
ENGINE_ENV = {
    "FLOWSITE_SWEEP_INTERVAL": "0.5",
    "FLOWSITE_REDISPATCH_AFTER": "3",
    "FLOWSITE_LEASE_GRACE": "2",
    "FLOWSITE_BROKER_POLL": "0.02",
    # Production's DEBUG (off); fault hooks are then refused unless explicitly allowed.
    "DJANGO_DEBUG": "0",
    "FLOWSITE_ALLOW_FAULTS": "1",
    "FLOWSITE_LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}

ADMIN_USER = "it-admin"

# Run once per system, in one process: migrate, createsuperuser --noinput (it reads
# DJANGO_SUPERUSER_USERNAME/PASSWORD/EMAIL from the environment) and an API token.
SETUP_SNIPPET = f"""
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

call_command("migrate", interactive=False, verbosity=1)
call_command("createsuperuser", interactive=False, verbosity=1)
user = get_user_model().objects.get(username={ADMIN_USER!r})
print("TOKEN=" + Token.objects.create(user=user).key)
"""


# --------------------------------------------------------------------------------------------
# Waiting
# --------------------------------------------------------------------------------------------


class WaitTimeout(AssertionError):
    pass


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.2,
    message: str = "",
    describe: Callable[[], str] | None = None,
) -> Any:
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds
    pass (:class:`WaitTimeout` naming what was awaited, the last value or error, and
    ``describe()``'s account of the system)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            last = predicate()
            last_error = None
        except AssertionError:
            raise  # a predicate's own verdict (a process died...): no point waiting on
        except Exception as exc:  # noqa: BLE001 - transient; reported if it never succeeds
            last, last_error = None, exc
        if last:
            return last
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "a condition")
            text = f"timed out after {timeout:.1f}s waiting for {what}; last value: {last!r}"
            if last_error is not None:
                text += f"; last error: {type(last_error).__name__}: {last_error}"
            if describe is not None:
                try:
                    text += "\n" + describe()
                except Exception as exc:  # noqa: BLE001
                    text += f"\n(describe failed: {exc!r})"
            raise WaitTimeout(text)
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


_LIVE: set[Proc] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (the test process is exiting without teardown): kill our own groups only."""
    for proc in list(_LIVE):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pgid, signal.SIGKILL)


class Proc:
    """One child process (and its own process group)."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path, cwd: Path = ROOT):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.log.write(f"\n=== {time.strftime('%H:%M:%S')} start {' '.join(argv)}\n".encode())
        self.log.flush()
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.pgid = os.getpgid(self.pid)  # == pid: a new session leads its own group
        _LIVE.add(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL this process's whole group (only ever a group the harness started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        # Also wait for the rest of the group (prefork children) to be gone.
        wait_until(
            lambda: not _group_alive(self.pgid),
            10,
            0.05,
            f"process group {self.pgid} ({self.name}) to die",
        )
        _LIVE.discard(self)
        if not self.log.closed:
            self.log.write(
                f"\n=== {time.strftime('%H:%M:%S')} SIGKILL group {self.pgid}\n".encode()
            )
            self.log.close()

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg(0); look for live members in /proc.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# --------------------------------------------------------------------------------------------
# The system
# --------------------------------------------------------------------------------------------


def backend_label() -> str:
    db = "postgres" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    broker = "redis" if os.environ.get("CELERY_BROKER_URL", "").startswith("redis") else "fs"
    return f"{db}-{broker}"


class System:
    """A running flowsite installation made of real processes. See the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        workers: int = 2,
        concurrency: int = 2,
        faults: str = "",
        extra_env: dict | None = None,
        private_database: bool = False,
        sweeper_process: bool = False,
    ):
        self.name = name
        self.n_workers = workers
        self.concurrency = concurrency
        self.faults = faults
        # A PostgreSQL cluster of the system's own (when the suite runs on PostgreSQL), so a
        # test can restart or stop it without touching the machine's shared server.
        self.private_database = private_database
        self.pg_dir: Path | None = None
        self.pg_port: int | None = None
        # Run the sweeper as its own process (manage.py flowsite_sweeper), as production does.
        self.sweeper_process = sweeper_process
        self.sweeper: Proc | None = None
        self.extra_env = dict(extra_env or {})
        self.label = backend_label()
        artifacts = Path(os.environ.get("FLOWSITE_ARTIFACTS") or ROOT / "artifacts")
        self.log_dir = artifacts.resolve() / "integration" / name / self.label
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        parent_data = os.environ.get("FLOWSITE_DATA_DIR")
        base = Path(parent_data) if parent_data else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"it-{name}-", dir=base)).resolve()
        self.ledger_path = self.data_dir / "ledger.jsonl"
        self.password = secrets.token_urlsafe(16)
        self.procs: list[Proc] = []
        self.workers: list[Proc | None] = []
        self.worker_names: list[str] = []
        self._worker_seq = 0
        self.web: Proc | None = None
        self.beat: Proc | None = None
        self.redis: Proc | None = None
        self.redis_port: int | None = None
        self.pg_admin_url: str | None = None
        self.pg_dbname: str | None = None
        self._db = None
        self.started: list[tuple[str, str]] = []  # the client ledger: every 2xx start
        self.session = requests.Session()
        self.base_url = ""
        self.last_violations: dict[str, list] = {}

    # -- life cycle -----------------------------------------------------------------------

    @property
    def is_pg(self) -> bool:
        return self.pg_dbname is not None

    @property
    def broker_kind(self) -> str:
        return "redis" if self.redis_port is not None else "fs"

    def boot(self) -> System:
        """Create the database and broker, migrate, start every process, wait until ready."""
        t0 = time.monotonic()
        self.env = self._base_env()
        self._setup_database()
        self._setup_broker()
        # One Django start-up for all three: migrate, createsuperuser --noinput (from the
        # DJANGO_SUPERUSER_* env) and an API token. The tests use Token auth: Basic auth would
        # hash the password (PBKDF2, ~0.5 s of CPU) on every request.
        out = self.python(SETUP_SNIPPET)
        self.token = re.search(r"TOKEN=(\w+)", out).group(1)
        self.session.headers["Authorization"] = f"Token {self.token}"
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.web = self._spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "flowsite.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "--threads",
                "4",
                "--timeout",
                "120",
                "--access-logfile",
                "-",
            ],
        )
        for _ in range(self.n_workers):
            self.start_worker()
        if self.sweeper_process:
            self.start_sweeper()
        self.beat = self._spawn(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "flowsite",
                "beat",
                "-s",
                str(self.data_dir / "beat-schedule"),
                "--loglevel",
                "INFO",
            ],
        )
        wait_until(self._healthy, 60, 0.2, "the web server's /healthz", self.describe)
        for i in range(len(self.workers)):
            self.wait_worker_ready(i)
        sweeper = self.sweeper if self.sweeper_process else self.beat
        wait_until(
            lambda: "sweeper running every" in sweeper.text(),
            60,
            0.2,
            f"the sweeper to start ({sweeper.name})",
            self.describe,
        )
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self, keep_data: bool = False) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):  # keep killing the others
                proc.kill()
        self.procs.clear()
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        if self.pg_dir is not None:
            with contextlib.suppress(Exception):
                self._pg_ctl("stop", "-m", "immediate")
            shutil.rmtree(self.pg_dir, ignore_errors=True)
        elif self.pg_dbname:
            import psycopg

            with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_dbname}" WITH (FORCE)')
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _base_env(self) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FLOWSITE_", "DJANGO_", "CELERY_", "PYTEST_"))
            and k not in ("DATABASE_URL",)
        }
        env.update(ENGINE_ENV)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "flowsite.settings",
                "FLOWSITE_DATA_DIR": str(self.data_dir),
                "FLOWSITE_FUNCTIONS_PATH": str(FUNCTIONS_DIR),
                "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
                "DJANGO_SUPERUSER_PASSWORD": self.password,
                "DJANGO_SUPERUSER_EMAIL": "it@example.com",
                # DEBUG is off, so the settings refuse to start without a real key.
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            }
        )
        if self.faults:
            env["FLOWSITE_FAULTS"] = self.faults
        if self.sweeper_process:
            env["FLOWSITE_SWEEPER_IN_BEAT"] = "0"
        env.update(self.extra_env)
        return env

    def _setup_database(self) -> None:
        url = os.environ.get("DATABASE_URL", "")
        if not url.startswith("postgres"):
            return
        if self.private_database:
            self._setup_private_database()
            return
        import psycopg

        parts = urlsplit(url)
        self.pg_admin_url = url
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.OperationalError:
            self.pg_admin_url = urlunsplit(parts._replace(path="/postgres"))
        self.pg_dbname = f"flowsite_it_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.pg_dbname}"')
        self.db_url = urlunsplit(parts._replace(path=f"/{self.pg_dbname}"))
        self.env["DATABASE_URL"] = self.db_url

    # -- a private PostgreSQL cluster ---------------------------------------------------

    def _setup_private_database(self) -> None:
        """initdb + start a cluster of our own on a free port (run as the postgres user:
        PostgreSQL refuses to run as root), with database ``flowsite``."""
        import psycopg

        if os.geteuid() != 0:
            import pytest

            pytest.skip("a private PostgreSQL cluster needs root (to run it as postgres)")
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.pg_bin = bindir
        # Outside the (0700, root-owned) data dir, so the postgres user can reach it.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="flowsite-it-pg-"))
        self.pg_dir.chmod(0o755)
        shutil.chown(self.pg_dir, "postgres", "postgres")
        self.pg_port = free_port()
        self._as_postgres(
            f"{bindir}/initdb -D {self.pg_dir}/data -U postgres --auth=trust "
            "--no-sync -E UTF8 --locale=C.UTF-8 >/dev/null"
        )
        self.start_database()
        admin = f"postgres://postgres@127.0.0.1:{self.pg_port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "flowsite"')
        self.pg_admin_url = admin
        self.pg_dbname = "flowsite"
        self.db_url = f"postgres://postgres@127.0.0.1:{self.pg_port}/flowsite"
        self.env["DATABASE_URL"] = self.db_url

    def _as_postgres(self, command: str) -> None:
        subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", command],
            check=True,
            cwd="/",
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    def _pg_ctl(self, *args: str) -> None:
        assert self.pg_dir is not None, "no private PostgreSQL cluster"
        opts = f"-p {self.pg_port} -k {self.pg_dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            f"{self.pg_bin}/pg_ctl -D {self.pg_dir}/data -l {self.pg_dir}/pg.log "
            f"-o '{opts}' -w -t 60 " + " ".join(args) + " >/dev/null"
        )

    def start_database(self) -> None:
        self._pg_ctl("start")

    def stop_database(self) -> None:
        """Stop the private cluster at once (in-flight transactions are cut, not finished)."""
        self._pg_ctl("stop", "-m", "immediate")
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def restart_database(self) -> None:
        self.stop_database()
        self.start_database()

    # -- the sweeper ----------------------------------------------------------------------

    def start_sweeper(self) -> Proc:
        self.sweeper = self._spawn(
            "sweeper", [str(BIN / "python"), "manage.py", "flowsite_sweeper"]
        )
        return self.sweeper

    def kill(self, proc: Proc) -> None:
        """SIGKILL one of the system's processes (its whole group)."""
        proc.kill()
        self.procs.remove(proc)

    def _setup_broker(self) -> None:
        url = os.environ.get("CELERY_BROKER_URL", "")
        if url.startswith("redis"):
            self.redis_port = free_port()
            (self.data_dir / "redis").mkdir()
            self.start_broker()
            self.env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
        elif url:
            self.env["CELERY_BROKER_URL"] = url
        else:
            self.env["CELERY_BROKER_URL"] = "flowsitefs://"
        self.queue_dir = self.data_dir / "broker" / "queue"

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        proc = Proc(name, argv, env or self.env, self.log_dir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run ``manage.py`` with the system's environment; raise with its output on failure."""
        return self.run([str(BIN / "python"), "manage.py", *args], timeout=timeout)

    def run(self, argv: list[str], *, timeout: float = 120, env: dict | None = None) -> str:
        with open(self.log_dir / "commands.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            done = subprocess.run(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                start_new_session=True,
            )
            log.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {done.returncode}:\n"
                f"{done.stdout.decode(errors='replace')[-3000:]}\n"
                f"{done.stderr.decode(errors='replace')[-3000:]}"
            )
        return done.stdout.decode(errors="replace")

    def python(self, code: str, *, timeout: float = 120) -> str:
        """Run a Python snippet with Django set up, in the system's environment."""
        prelude = "import django; django.setup()\n"
        return self.run([str(BIN / "python"), "-c", prelude + code], timeout=timeout)

    def _healthy(self) -> bool:
        if self.web is not None and not self.web.alive():
            raise AssertionError(f"the web server exited:\n{tail(self.web.log_path)}")
        r = requests.get(self.base_url + "/healthz", timeout=2)
        return r.status_code == 200

    # -- workers --------------------------------------------------------------------------

    def start_worker(self, index: int | None = None) -> int:
        """Start a Celery worker; as worker ``index`` (a replacement) or a new one. Returns its
        index. Call :meth:`wait_worker_ready` to wait until it consumes."""
        self._worker_seq += 1
        tag = f"w{self._worker_seq}"
        env = dict(self.env, FLOWSITE_IT_WORKER=tag)
        proc = self._spawn(
            f"worker-{tag}",
            [
                str(BIN / "celery"),
                "-A",
                "flowsite",
                "worker",
                "-c",
                str(self.concurrency),
                "-P",
                "prefork",
                "-n",
                f"{tag}@%h",
                "--loglevel",
                "INFO",
            ],
            env=env,
        )
        if index is None:
            self.workers.append(proc)
            self.worker_names.append(tag)
            return len(self.workers) - 1
        self.workers[index] = proc
        self.worker_names[index] = tag
        return index

    def wait_worker_ready(self, index: int, timeout: float = 60) -> None:
        proc = self.workers[index]
        assert proc is not None

        def ready() -> bool:
            if not proc.alive():
                raise AssertionError(f"worker {proc.name} exited:\n{tail(proc.log_path)}")
            return bool(re.search(r"@\S+ ready\.", proc.text()))

        wait_until(ready, timeout, 0.1, f"worker {proc.name} to be ready", self.describe)

    def kill_worker(self, index: int) -> Proc:
        """SIGKILL worker ``index``'s whole process group (main process and prefork children)."""
        proc = self.workers[index]
        assert proc is not None, f"worker {index} is not running"
        proc.kill()
        self.procs.remove(proc)
        self.workers[index] = None
        return proc

    def worker_tag(self, index: int) -> str:
        return self.worker_names[index]

    # -- broker ---------------------------------------------------------------------------

    def start_broker(self) -> None:
        """(Re)start the private redis-server, empty, on the system's port."""
        assert self.redis_port is not None, "the embedded broker has no server to start"
        self.redis = self._spawn(
            "redis",
            [
                "redis-server",
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir / "redis"),
            ],
        )

        def pong() -> bool:
            if not self.redis.alive():
                raise AssertionError(f"redis-server exited:\n{tail(self.redis.log_path)}")
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        wait_until(pong, 20, 0.05, "the private redis-server to answer PING")

    def stop_broker(self) -> None:
        """SIGKILL the private redis-server (everything it held is gone)."""
        assert self.redis is not None, "no private redis-server is running"
        self.redis.kill()
        self.procs.remove(self.redis)
        self.redis = None

    def restart_broker(self) -> int:
        """Lose every broker message. Redis: SIGKILL the private server and start it again empty
        on the same port. Embedded: delete every message file in the queue folder. Returns how
        many messages were dropped (embedded) or -1 (redis: unknown)."""
        if self.broker_kind == "redis":
            self.stop_broker()
            self.start_broker()
            return -1
        dropped = 0
        for entry in os.scandir(self.queue_dir):
            if entry.is_file():
                try:
                    os.unlink(entry.path)
                    dropped += 1
                except FileNotFoundError:
                    pass  # consumed meanwhile
        return dropped

    # -- API ------------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict | None = None,
        expect: int | Iterable[int] | None = None,
        timeout: float = 30,
        basic_auth: bool = False,
    ) -> requests.Response:
        """One API request (``path`` relative to /api/v1/ unless it starts with / or http).
        Token auth by default; ``basic_auth=True`` sends HTTP Basic instead (each such request
        costs a PBKDF2 password hash on the server, so the tests use it sparingly)."""
        url = (
            path
            if path.startswith("http")
            else self.base_url + (path if path.startswith("/") else "/api/v1/" + path)
        )
        kwargs: dict[str, Any] = {}
        if basic_auth:
            kwargs["auth"] = (ADMIN_USER, self.password)
            kwargs["headers"] = {"Authorization": None}
        r = self.session.request(method, url, json=json, params=params, timeout=timeout, **kwargs)
        if expect is not None:
            ok = (r.status_code == expect) if isinstance(expect, int) else (r.status_code in expect)
            assert ok, f"{method} {url} -> {r.status_code} (expected {expect}): {r.text[:2000]}"
        return r

    def create_function(self, name: str, handler: str, timeout_seconds: int = 60) -> dict:
        return self.api(
            "POST",
            "functions/",
            json={
                "name": name,
                "handler": handler,
                "description": "integration test",
                "timeout_seconds": timeout_seconds,
            },
            expect=201,
        ).json()

    def create_flow(self, name: str, definition: str) -> dict:
        return self.api(
            "POST", "flows/", json={"name": name, "definition": definition}, expect=201
        ).json()

    def start(self, flow: str, input: dict | None = None, name: str | None = None) -> dict:
        body: dict[str, Any] = {"input": input or {}}
        if name is not None:
            body["name"] = name
        r = self.api("POST", f"flows/{flow}/executions/", json=body, expect=201)
        data = r.json()
        self.started.append((flow, data["name"]))
        return data

    def start_many(
        self, flow: str, names: list[str], input: dict | None = None, threads: int = 4
    ) -> list[dict]:
        """Start many executions concurrently (``threads`` clients, one session each)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(chunk: list[str]) -> list[dict]:
            client = System.__new__(System)
            client.base_url = self.base_url
            client.session = requests.Session()
            client.session.headers.update(self.session.headers)
            client.started = []
            return [client.start(flow, input, name=n) for n in chunk]

        chunks = [names[i::threads] for i in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            results = [r for part in pool.map(one, chunks) for r in part]
        self.started.extend((flow, r["name"]) for r in results)
        return results

    def describe_execution(self, flow: str, name: str, wait_seconds: int = 0) -> dict:
        return self.api(
            "GET",
            f"flows/{flow}/executions/{name}/",
            params={"wait_seconds": wait_seconds} if wait_seconds else None,
            expect=200,
            timeout=wait_seconds + 30,
        ).json()

    def wait_done(self, flow: str, name: str, timeout: float = 60) -> dict:
        """Wait (long-polling with ?wait_seconds) until the execution is no longer open."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            data = self.describe_execution(flow, name, wait_seconds=max(0, min(20, int(remaining))))
            if data["status"] not in OPEN:
                return data
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"execution {flow}/{name} still {data['status']} after {timeout}s\n"
                    + self.describe(flow, name)
                )

    def history(self, flow: str, name: str, limit: int = 100) -> list[dict]:
        events: list[dict] = []
        params: dict[str, Any] = {"limit": limit}
        for _ in range(10_000):
            page = self.api(
                "GET", f"flows/{flow}/executions/{name}/history/", params=params, expect=200
            ).json()
            events.extend(page["events"])
            if not page.get("next"):
                return events
            params = {"limit": limit, "next": page["next"]}
        raise AssertionError("history paging did not end")

    # -- database -------------------------------------------------------------------------

    def db(self):
        if self._db is None:
            if self.is_pg:
                import psycopg

                self._db = psycopg.connect(self.db_url, autocommit=True)
            else:
                import sqlite3

                self._db = sqlite3.connect(
                    self.data_dir / "flowsite.sqlite3", timeout=30, isolation_level=None
                )
                self._db.execute("PRAGMA busy_timeout=30000")
        return self._db

    def sql(self, query: str, params: Iterable = ()) -> list[tuple]:
        """Run one statement on the system's database (``%s`` placeholders on both backends);
        reconnects once if the server restarted since the last statement."""
        if not self.is_pg:
            query = query.replace("%s", "?")
        try:
            cur = self.db().execute(query, tuple(params))
        except Exception:
            if not self.is_pg:
                raise
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
            cur = self.db().execute(query, tuple(params))
        try:
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            cur.close()

    def scalar(self, query: str, params: Iterable = ()) -> Any:
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    @property
    def now_sql(self) -> str:
        """The database's clock, comparable with stored datetimes."""
        return "now()" if self.is_pg else "strftime('%Y-%m-%d %H:%M:%f', 'now')"

    def ago_sql(self, seconds: float) -> str:
        if self.is_pg:
            return f"(now() - interval '{float(seconds)} seconds')"
        return f"strftime('%Y-%m-%d %H:%M:%f', 'now', '-{float(seconds)} seconds')"

    def event_times(self, since: float) -> list[float]:
        """Epoch seconds of every history event recorded at or after ``since`` (sorted)."""
        rows = self.sql("SELECT time FROM executions_historyevent")
        times = []
        for (stamp,) in rows:
            if isinstance(stamp, str):  # SQLite: text in UTC
                stamp = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
            t = stamp.timestamp()
            if t >= since:
                times.append(t)
        return sorted(times)

    def statuses(self, flow: str | None = None) -> Counter:
        q = "SELECT e.status, COUNT(*) FROM executions_execution e"
        params: tuple = ()
        if flow:
            q += " JOIN executions_flow f ON f.id = e.flow_id WHERE f.name = %s"
            params = (flow,)
        return Counter(dict(self.sql(q + " GROUP BY e.status", params)))

    def wait_all_closed(self, flow: str, count: int, timeout: float) -> Counter:
        """Wait until ``count`` executions of ``flow`` exist and none is open."""

        def closed():
            st = self.statuses(flow)
            return st if sum(st.values()) >= count and not any(st[s] for s in OPEN) else None

        return wait_until(
            closed,
            timeout,
            0.3,
            f"all {count} executions of {flow} to end",
            lambda: self.describe(),
        )

    def execution_id(self, flow: str, name: str) -> int:
        return self.scalar(
            "SELECT e.id FROM executions_execution e JOIN executions_flow f ON f.id = e.flow_id "
            "WHERE f.name = %s AND e.name = %s",
            (flow, name),
        )

    def event_types(self, flow: str | None = None) -> dict[str, Counter]:
        """{execution name: Counter(event type)} from the history table."""
        q = (
            "SELECT e.name, h.type FROM executions_historyevent h "
            "JOIN executions_execution e ON e.id = h.execution_id "
            "JOIN executions_flow f ON f.id = e.flow_id"
        )
        params: tuple = ()
        if flow:
            q += " WHERE f.name = %s"
            params = (flow,)
        out: dict[str, Counter] = defaultdict(Counter)
        for name, type_ in self.sql(q, params):
            out[name][type_] += 1
        return dict(out)

    # -- ledger ---------------------------------------------------------------------------

    def ledger(self) -> list[dict]:
        """Every complete ledger line (a line still being appended is left for next time)."""
        try:
            text = self.ledger_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]

    # -- invariants (reliability.md §3.2) -------------------------------------------------

    def invariants(self) -> dict[str, int]:
        """Violation counts (all must be 0); details of each in ``self.last_violations``."""
        v: dict[str, list] = defaultdict(list)
        execs = {
            row[0]: {"name": row[1], "status": row[2], "event_count": row[3]}
            for row in self.sql("SELECT id, name, status, event_count FROM executions_execution")
        }
        events: dict[int, list[tuple]] = defaultdict(list)
        for ex_id, event_id, sched, type_ in self.sql(
            "SELECT execution_id, event_id, schedule_event_id, type FROM executions_historyevent"
        ):
            events[ex_id].append((event_id, sched, type_))

        for ex_id, ex in execs.items():
            evs = sorted(events.get(ex_id, []))
            ids = [e[0] for e in evs]
            # I1: gapless 1..N, no duplicates (and the row's event_count agrees).
            if ids != list(range(1, len(ids) + 1)) or not ids or ex["event_count"] != len(ids):
                v["I1_history_gapless"].append((ex_id, ex["name"], ids[:5], len(ids)))
            # I2: every StepEntered closed at most once; exactly once when Succeeded.
            entered = {e[0] for e in evs if e[2] == "StepEntered"}
            closes = Counter(e[1] for e in evs if e[2] in CLOSE_EVENTS)
            for entry, n in closes.items():
                if n > 1:
                    v["I2_entry_closed_twice"].append((ex_id, ex["name"], entry, n))
                if entry not in entered:
                    v["I2_close_without_entry"].append((ex_id, ex["name"], entry))
            if ex["status"] == "Succeeded":
                for entry in entered - set(closes):
                    v["I2_entry_never_closed"].append((ex_id, ex["name"], entry))
            # I4: closed -> exactly one terminal event, matching the status, and it is last.
            terminals = [e for e in evs if e[2] in TERMINAL_EVENTS]
            if ex["status"] in CLOSED:
                if (
                    len(terminals) != 1
                    or terminals[0][0] != ids[-1]
                    or TERMINAL_EVENTS[terminals[0][2]] != ex["status"]
                ):
                    v["I4_terminal"].append((ex_id, ex["name"], ex["status"], terminals))
            elif terminals:
                v["I4_terminal"].append((ex_id, ex["name"], ex["status"], terminals))

        # I3: nothing lost (client ledger) or stuck (open without anything to wake it).
        known = {
            (flow, name)
            for flow, name in self.sql(
                "SELECT f.name, e.name FROM executions_execution e "
                "JOIN executions_flow f ON f.id = e.flow_id"
            )
        }
        for key in self.started:
            if key not in known:
                v["I3_lost_start"].append(key)
        stuck = self.sql(
            f"""
            SELECT e.id, e.name, e.status FROM executions_execution e
            WHERE e.status IN ('Starting', 'Running')
              AND NOT EXISTS (SELECT 1 FROM executions_timer t
                              WHERE t.execution_id = e.id AND t.fired_at IS NULL)
              AND NOT EXISTS (SELECT 1 FROM executions_tasktoken k
                              WHERE k.execution_id = e.id AND k.is_open)
              AND NOT EXISTS (SELECT 1 FROM executions_workitem w
                              WHERE w.execution_id = e.id AND w.status = 'running'
                                AND w.lease_until > {self.now_sql})
              AND NOT EXISTS (SELECT 1 FROM executions_workitem w
                              WHERE w.execution_id = e.id AND w.status = 'pending')
            """
        )
        v["I3_stuck"].extend(stuck)
        # I5 (ledger): one real invocation per (execution, entry, attempt).
        starts = Counter(
            (r["execution"], r["entry"], r["attempt"])
            for r in self.ledger()
            if r["phase"] == "start"
        )
        v["I5_ledger_duplicate_attempt"].extend(k for k, n in starts.items() if n > 1)
        # I8: timers never fire before they are due.
        v["I8_timer_early"].extend(
            self.sql(
                "SELECT id, key FROM executions_timer "
                "WHERE fired_at IS NOT NULL AND fired_at < due_at"
            )
        )
        # I10: the outbox drains: no pending work item older than 60 s.
        v["I10_outbox_stale"].extend(
            self.sql(
                "SELECT id, execution_id FROM executions_workitem "
                f"WHERE status = 'pending' AND created_at < {self.ago_sql(60)}"
            )
        )
        keys = [
            "I1_history_gapless",
            "I2_entry_closed_twice",
            "I2_close_without_entry",
            "I2_entry_never_closed",
            "I3_lost_start",
            "I3_stuck",
            "I4_terminal",
            "I5_ledger_duplicate_attempt",
            "I8_timer_early",
            "I10_outbox_stale",
        ]
        self.last_violations = {k: v[k] for k in keys if v[k]}
        return {k: len(v[k]) for k in keys}

    def assert_invariants(self) -> dict[str, int]:
        counts = self.invariants()
        bad = {k: n for k, n in counts.items() if n}
        assert not bad, (
            f"invariant violations {bad}; details (first 5 each): "
            + json.dumps(
                {k: [list(map(str, x)) for x in d[:5]] for k, d in self.last_violations.items()}
            )
            + "\n"
            + self.describe()
        )
        return counts

    # -- Celery inspection ----------------------------------------------------------------

    def inspect(self, timeout: float = 5) -> dict[str, dict]:
        """Celery's remote-control inspection of the running workers:
        ``{"active"|"reserved"|"scheduled": {node: [task, ...]}}`` (what ``celery -A flowsite
        inspect active|reserved|scheduled --json`` prints, asked in one process and addressed
        to the live nodes so it returns as soon as each has answered)."""
        nodes = [
            f"{self.worker_names[i]}@{socket.gethostname()}"
            for i, w in enumerate(self.workers)
            if w
        ]
        out = self.python(
            "import json\n"
            "from flowsite.celery import app\n"
            f"i = app.control.inspect(destination={nodes!r}, timeout={timeout})\n"
            "print('INSPECT=' + json.dumps({'active': i.active(), 'reserved': i.reserved(), "
            "'scheduled': i.scheduled()}))\n",
            timeout=120,
        )
        data = json.loads(out.split("INSPECT=", 1)[1].splitlines()[0])
        for method, replies in data.items():
            missing = set(nodes) - set(replies or {})
            assert not missing, f"inspect {method}: no reply from {missing} ({replies!r})"
        return data

    # -- diagnostics ----------------------------------------------------------------------

    def describe(self, flow: str | None = None, name: str | None = None) -> str:
        parts = [
            f"--- system {self.name} ({self.label}), data dir {self.data_dir}, logs {self.log_dir}"
        ]
        try:
            parts.append(f"executions by status: {dict(self.statuses())}")
            parts.append(
                "work items by status: "
                + str(
                    dict(
                        self.sql("SELECT status, COUNT(*) FROM executions_workitem GROUP BY status")
                    )
                )
            )
            parts.append(
                "open timers: "
                + str(self.scalar("SELECT COUNT(*) FROM executions_timer WHERE fired_at IS NULL"))
            )
            if flow and name:
                ex_id = self.execution_id(flow, name)
                parts.append(f"history of {flow}/{name} (id {ex_id}):")
                for row in self.sql(
                    "SELECT event_id, type, step_name FROM executions_historyevent "
                    "WHERE execution_id = %s ORDER BY event_id",
                    (ex_id,),
                ):
                    parts.append(f"   {row}")
        except Exception as exc:  # noqa: BLE001
            parts.append(f"(database unreadable: {exc!r})")
        for proc in self.procs:
            state = "alive" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(
                f"--- {proc.name} (pid {proc.pid}, {state}) last lines of {proc.log_path}:"
            )
            parts.append(tail(proc.log_path, 15))
        return "\n".join(parts)
