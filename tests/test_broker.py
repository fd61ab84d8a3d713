"""The embedded broker (flowsite.broker): atomic publish/claim on kombu's filesystem transport."""

from __future__ import annotations

import os
from time import monotonic_ns

import kombu
import pytest

from flowsite import broker


@pytest.fixture
def options(tmp_path):
    queue = tmp_path / "queue"
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(tmp_path / "processed"),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
        "polling_interval": 0.01,
    }


def connect(options):
    broker.register()
    return kombu.Connection("flowsitefs://", transport_options=options)


def test_publish_and_consume_in_order_leaving_no_files(options):
    q = kombu.Queue("work", kombu.Exchange("work", type="direct"), routing_key="work")
    with connect(options) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(20):
            producer.publish({"i": i}, exchange=q.exchange, routing_key="work", declare=[q])
        # Folders were created by the channel; messages are complete files, no temp files.
        names = os.listdir(options["data_folder_in"])
        assert len(names) == 20
        assert all(n.endswith(".work.msg") and not n.startswith(".") for n in names)

        got = []
        with conn.SimpleQueue(q) as simple:
            for _ in range(20):
                message = simple.get(timeout=2)
                got.append(message.payload["i"])
                message.ack()
        assert got == list(range(20))
    assert os.listdir(options["data_folder_in"]) == []
    assert os.listdir(options["processed_folder"]) == []


def test_empty_exchange_table_reads_as_no_bindings(options):
    with connect(options) as conn:
        channel = conn.default_channel
        os.makedirs(options["control_folder"], exist_ok=True)
        # What a reader could see between another process creating and writing the file.
        open(os.path.join(options["control_folder"], "fan.exchange"), "wb").close()
        assert channel.get_table("fan") == []
        channel._queue_bind("fan", "", "", "q1")
        channel._queue_bind("fan", "", "", "q2")
        channel._queue_bind("fan", "", "", "q1")
        assert sorted(q.queue for q in channel.get_table("fan")) == ["q1", "q2"]


def test_stale_broadcast_messages_are_collected(options, monkeypatch):
    # Message names carry CLOCK_MONOTONIC stamps, which start near 0 at boot: on a machine up
    # for less than PIDBOX_MAX_AGE no real stamp can be that old, so move the clock instead.
    shift = int((broker.PIDBOX_MAX_AGE + 10) * 1e9)
    real_now = monotonic_ns()
    monkeypatch.setattr(broker, "monotonic_ns", lambda: monotonic_ns() + shift)
    with connect(options) as conn:
        channel = conn.default_channel
        folder = options["data_folder_in"]
        old_ns = real_now
        stale = f"{old_ns:020d}_x.dead@host.celery.pidbox.msg"
        keep = f"{old_ns:020d}_y.work.msg"
        for name in (stale, keep):
            with open(os.path.join(folder, name), "w") as f:
                f.write("{}")
        channel._next_gc = 0  # due now
        with pytest.raises(Exception):  # noqa: B017 - kombu's Empty
            channel._get("other")
        assert sorted(os.listdir(folder)) == [keep]
