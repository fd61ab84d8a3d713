#!/usr/bin/env python
"""Execution starts per second over HTTP: HTTP Basic auth beside Token auth.

    .venv/bin/python bench/auth.py [--starts 400] [--runs 3] [--clients 8] [--uncached 40]

Boots its own web server the way scripts/run does (gunicorn, 2 gthread workers x 8 threads,
DEBUG off) on the embedded SQLite default in a temporary FLOWSITE_DATA_DIR; no Celery worker or
beat: the flow is a single Pass state, which the start request runs inline to the end. One user
with a real (PBKDF2) password and an API token. Then ``--runs`` rounds, each firing ``--starts``
starts from ``--clients`` threads (keep-alive sessions) with Token auth and then with Basic
auth, interleaved so that both see the same machine. Every start must answer 201 with status
``Succeeded``. Before timing, each mode sends a few requests to warm up both gunicorn workers
(for Basic auth this is when each process hashes the password once).

``--uncached N`` (0 to skip) restarts the web server with FLOWSITE_BASIC_AUTH_CACHE_SECONDS=0
and times N Basic-auth starts once: what every request cost before flowsite.auth.

Prints starts/s per run, median, min and max per mode, and the Basic/Token ratio of medians.
Every process it starts is in its own process group and killed by that group; the temporary
folder is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.harness import BIN, Proc, free_port, tail, wait_until  # noqa: E402

USER = "bench"
FLOW = "bench-auth-pass"
FLOW_YAML = """\
Type: StateMachine
Name: bench-auth-pass
SpecVersion: v1
StartAt: P
States:
  - Type: Pass
    Name: P
    End: true
"""

SETUP = f"""
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth.models import Group
user = get_user_model().objects.create_user({USER!r}, password=__import__("os").environ["PW"])
user.groups.add(Group.objects.get(name="admin"))  # creates the flow, then starts executions
print("TOKEN=" + Token.objects.create(user=user).key)
"""


def base_env(data_dir: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWSITE_", "DJANGO_", "CELERY_")) and k != "DATABASE_URL"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="flowsite.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        FLOWSITE_DATA_DIR=str(data_dir),
        FLOWSITE_LOG_LEVEL="WARNING",
    )
    return env


class Web:
    """gunicorn as scripts/run starts it, on a free port."""

    def __init__(self, env: dict, log_dir: Path, label: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            str(BIN / "gunicorn"),
            "flowsite.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--timeout",
            "90",
        ]
        self.proc = Proc(f"web-{label}", argv, env, log_dir / f"web-{label}.log")

    def wait_ready(self, token: str) -> None:
        def ready() -> bool:
            if not self.proc.alive():
                raise AssertionError(f"gunicorn exited:\n{tail(self.proc.log_path)}")
            r = requests.get(
                self.url + "/api/v1/flows/", headers={"Authorization": f"Token {token}"}, timeout=5
            )
            return r.status_code == 200

        wait_until(ready, 60, 0.2, "gunicorn to answer an authenticated request")

    def stop(self) -> None:
        self.proc.kill()


def session_for(mode: str, token: str, password: str) -> requests.Session:
    s = requests.Session()
    if mode == "token":
        s.headers["Authorization"] = f"Token {token}"
    else:
        s.auth = (USER, password)
    return s


def fire(url: str, mode: str, token: str, password: str, n: int, clients: int, tag: str) -> float:
    """Start ``n`` executions from ``clients`` threads; return starts per second."""
    counter = iter(range(n))
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        s = session_for(mode, token, password)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            r = s.post(
                f"{url}/api/v1/flows/{FLOW}/executions/",
                json={"name": f"{tag}-{i}", "input": {"i": i}},
                timeout=120,
            )
            if r.status_code != 201 or r.json().get("status") != "Succeeded":
                errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} of {n} {mode} starts failed, e.g. {errors[0]}")
    return n / elapsed


def warm_up(url: str, mode: str, token: str, password: str, clients: int) -> None:
    # Enough concurrent requests that both gunicorn processes serve some of them.
    def one() -> None:
        s = session_for(mode, token, password)
        for _ in range(4):
            assert s.get(f"{url}/api/v1/flows/", timeout=120).status_code == 200

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=400, help="starts per run and mode")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--uncached", type=int, default=40, help="uncached Basic starts (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    log_dir = data_dir / "logs"
    log_dir.mkdir()
    webs: list[Web] = []
    try:
        env = base_env(data_dir)
        password = secrets.token_urlsafe(16)
        out = subprocess.run(
            [sys.executable, "-c", SETUP],
            cwd=ROOT,
            env=dict(env, PW=password),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        token = [x for x in out.splitlines() if x.startswith("TOKEN=")][-1][6:]

        web = Web(env, log_dir, "cached")
        webs.append(web)
        web.wait_ready(token)
        r = requests.post(
            web.url + "/api/v1/flows/",
            json={"name": FLOW, "definition": FLOW_YAML},
            headers={"Authorization": f"Token {token}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text

        for mode in ("token", "basic"):
            warm_up(web.url, mode, token, password, args.clients)
        rates: dict[str, list[float]] = {"token": [], "basic": []}
        for run in range(args.runs):
            for mode in ("token", "basic"):
                rate = fire(
                    web.url, mode, token, password, args.starts, args.clients, f"{mode}{run}"
                )
                rates[mode].append(rate)
                print(f"run {run + 1}: {mode:5} {rate:7.1f} starts/s", flush=True)
        web.stop()
        webs.remove(web)

        uncached = None
        if args.uncached:
            web = Web(dict(env, FLOWSITE_BASIC_AUTH_CACHE_SECONDS="0"), log_dir, "uncached")
            webs.append(web)
            web.wait_ready(token)
            uncached = fire(
                web.url, "basic", token, password, args.uncached, args.clients, "uncached"
            )
            print(f"uncached basic: {uncached:.1f} starts/s", flush=True)

        print()
        print(
            f"{args.starts} starts per run, {args.clients} client threads, {args.runs} runs; "
            f"gunicorn 2 x gthread 8; SQLite (WAL); {os.cpu_count()} CPUs"
        )
        print(f"{'auth':24} {'median':>8} {'min':>8} {'max':>8}   starts/s")
        for mode, label in (("token", "Token"), ("basic", "Basic (cached)")):
            v = rates[mode]
            print(f"{label:24} {statistics.median(v):8.1f} {min(v):8.1f} {max(v):8.1f}")
        if uncached is not None:
            print(f"{'Basic (uncached, 1 run)':24} {uncached:8.1f}   ({args.uncached} starts)")
        ratio = statistics.median(rates["basic"]) / statistics.median(rates["token"])
        print(f"Basic / Token (medians): {ratio:.2f}")
    finally:
        for web in webs:
            with contextlib.suppress(Exception):
                web.stop()
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
