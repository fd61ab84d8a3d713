"""The embedded, server-less broker: kombu's filesystem transport, made safe for fast polling.

Use it with ``CELERY_BROKER_URL=flowsitefs://`` (the default). The alias is registered in
:mod:`flowsite.celery` before the Celery app is configured, so web, worker and beat processes
all resolve it. One host only: every process must see the same folders.

Differences from ``kombu.transport.filesystem`` (kombu 5.5-5.7):

* ``_put`` writes each message to a hidden temporary file in the same folder and ``os.rename``s
  it into place. The stock transport creates the final ``*.msg`` file and then writes it, so a
  consumer polling fast could pick up an empty file and the worker died with
  ``JSONDecodeError`` ("Unrecoverable error"): celery/kombu#1551.  ``rename`` within one
  folder is atomic on POSIX, so a consumer sees either no file or the complete message.
* ``_get`` claims a message by ``os.rename`` into ``processed_folder`` (same filesystem). The
  stock transport ``shutil.move``s it into ``tempfile.gettempdir()`` when ``store_processed``
  is off, which becomes copy + unlink when /tmp is another filesystem: two consumers could
  then both copy the file and the task would run twice.
* The exchange tables in ``control_folder`` are read and rewritten under a lock without ever
  being truncated-then-written outside it, and an empty table file reads as "no bindings"
  (the stock code opens it with ``"wb"`` before taking the lock, so a concurrent reader could
  read an empty file and crash).
* Broadcast (``*.pidbox``) messages older than :data:`PIDBOX_MAX_AGE` are deleted while
  polling: fanout bindings of workers that stopped stay in the exchange table, so every
  ``inspect``/``revoke`` broadcast would otherwise leave a file nobody ever reads.
* All folders are created when a channel opens.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from queue import Empty
from time import monotonic, monotonic_ns

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

TRANSPORT_ALIAS = "flowsitefs"
TRANSPORT_PATH = "flowsite.broker:Transport"

# Temporary files start with a dot: the stock filters (`filename.partition(".")[2] ==
# f"{queue}.msg"`) used by _get/_size/_purge can never match them.
_TMP_PREFIX = ".tmp-"

#: Seconds after which an unconsumed remote-control message (pidbox broadcast or reply) is
#: garbage: Celery's control messages expire within seconds anyway.
PIDBOX_MAX_AGE = 300.0
#: How often (seconds) one channel scans for such garbage.
_GC_EVERY = 30.0


_last_stamp = 0
_stamp_lock = threading.Lock()


def _next_stamp() -> int:
    """Strictly increasing (per process) monotonic nanoseconds: the FIFO key of a message.

    CLOCK_MONOTONIC is shared by all processes of the host, so names sort in publish order
    across processes too (up to clock resolution).
    """
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(monotonic_ns(), _last_stamp + 1)
        return _last_stamp


def _message_age(name: str, now_ns: int) -> float | None:
    """Age in seconds of a message file named ``<monotonic ns>_<uuid>.<queue>.msg``."""
    stamp = name.partition("_")[0]
    if not stamp.isdigit():
        return None
    return (now_ns - int(stamp)) / 1e9


def register() -> None:
    """Make ``flowsitefs://`` resolvable by kombu (idempotent)."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES.setdefault(TRANSPORT_ALIAS, TRANSPORT_PATH)


class Channel(filesystem.Channel):
    """Filesystem channel with atomic publish and atomic claim."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ensure_folders()
        self._next_gc = monotonic() + _GC_EVERY

    def _ensure_folders(self) -> None:
        folders = {self.data_folder_in, self.data_folder_out, str(self.control_folder)}
        # processed_folder doubles as the claim area for _get, so it always exists.
        folders.add(self.processed_folder)
        for folder in folders:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise ChannelError(f"Cannot create broker folder {folder!r}") from exc

    # -- messages -------------------------------------------------------------------------

    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``: write a temporary file, then rename it into place."""
        # Zero-padded so that the lexical sort in _get is FIFO order (the stock transport uses
        # unpadded milliseconds, so messages of one millisecond come out in random order).
        name = f"{_next_stamp():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        tmp = os.path.join(self.data_folder_out, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        data = str_to_bytes(dumps(payload))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        """Get the oldest message of ``queue``; a message is claimed by an atomic rename."""
        suffix = f"{queue}.msg"
        try:
            names = sorted(os.listdir(self.data_folder_in))
        except OSError as exc:
            raise ChannelError(f"Cannot list {self.data_folder_in!r}") from exc
        if monotonic() >= self._next_gc:
            self._next_gc = monotonic() + _GC_EVERY
            self._collect_stale_pidbox(names)
        for name in names:
            if name.partition(".")[2] != suffix:
                continue
            src = os.path.join(self.data_folder_in, name)
            claimed = os.path.join(self.processed_folder, name)
            try:
                os.rename(src, claimed)
            except OSError:
                # Another consumer claimed it first (or it vanished): normal, try the next.
                continue
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                if not self.store_processed:
                    os.unlink(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()

    def _collect_stale_pidbox(self, names: list[str]) -> None:
        now_ns = monotonic_ns()
        for name in names:
            queue_part = name.partition(".")[2]
            if not queue_part.endswith(".pidbox.msg"):
                continue
            age = _message_age(name, now_ns)
            if age is not None and age > PIDBOX_MAX_AGE:
                # (consumed or collected by another process meanwhile: fine)
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.data_folder_in, name))

    # -- exchange tables (control folder) -------------------------------------------------

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f_obj:
                filesystem.lock(f_obj, filesystem.LOCK_SH)
                try:
                    raw = f_obj.read()
                finally:
                    filesystem.unlock(f_obj)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        if not raw.strip():
            return []
        return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(raw))]

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        queue_val = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            # O_CREAT without O_TRUNC: the content is only replaced while holding the lock.
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        with os.fdopen(fd, "rb+", buffering=0) as f_obj:
            filesystem.lock(f_obj, filesystem.LOCK_EX)
            try:
                raw = f_obj.read()
                queues = (
                    [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(raw))]
                    if raw.strip()
                    else []
                )
                if queue_val not in queues:
                    queues.insert(0, queue_val)
                    f_obj.seek(0)
                    f_obj.write(str_to_bytes(dumps(queues)))
                    f_obj.truncate()
            finally:
                filesystem.unlock(f_obj)


class Transport(filesystem.Transport):
    """``flowsitefs://``: the filesystem transport with :class:`Channel` above."""

    Channel = Channel
    # Separate in-process broker state from the stock transport's.
    global_state = filesystem.virtual.BrokerState()
    driver_type = "filesystem"
    driver_name = "flowsitefs"

    @property
    def default_connection_params(self):
        # No host: keeps kombu from warning "No hostname was supplied" in every process.
        return {"port": self.default_port, "hostname": None}
