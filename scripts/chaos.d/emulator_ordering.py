"""The Pub/Sub emulator's ordered delivery after a subscriber leaves, without any Mirai code.

Usage: PUBSUB_EMULATOR_HOST=host:port python emulator_ordering.py [WAIT_SECONDS] [--clean-close]
(the python of services/notification/tests/py/venv has google-cloud-pubsub).

An ordered subscription (ack deadline 10 s) with two subscriber processes, as two replicas of
a service: one acknowledges everything it gets, the other receives without acknowledging and
is SIGKILLed (a replica dying mid-message). Three messages of one ordering key are published
while both run, three more after the kill. Pub/Sub redelivers the dead subscriber's message
once its ack deadline passes, and the survivor then gets all six in order. Prints what the
survivor got within WAIT_SECONDS (default 60) and exits 0 when it got all six, 1 when the key
stalled (what emulator 0.8.20 does: the dead stream stays registered, the key stays pinned to
it, and nothing of that key is delivered again).

`--clean-close`: the leaving subscriber starts second (as the killed one does), acknowledges
every message it gets, and then shuts down cleanly (cancels its stream pull and closes the
client) — a rolling restart with nothing in hand. Three messages are published before it
leaves, three after; exits 0 when the survivor gets the three later ones, 1 when the key stays
with the departed stream.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.types import FlowControl, PublisherOptions

PROJECT = "mirai-emulator-check"
KEY = "SPX"


def subscriber(subscription, ack, seconds):
    """Runs in a child process: prints every message it gets, acknowledging it when `ack`;
    after `seconds` it cancels its pull and closes the client (a clean shutdown)."""
    client = pubsub_v1.SubscriberClient()

    def callback(message):
        print(message.data.decode(), flush=True)
        if ack:
            message.ack()

    future = client.subscribe(
        subscription, callback, flow_control=FlowControl(max_messages=64, max_lease_duration=10)
    )
    try:
        future.result(timeout=seconds)
    except Exception:  # the timeout ends the child
        future.cancel()
        future.result()
        client.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        subscriber(sys.argv[2], sys.argv[3] == "ack", float(sys.argv[4]))
        return 0
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        sys.exit("set PUBSUB_EMULATOR_HOST")
    args = [a for a in sys.argv[1:] if a != "--clean-close"]
    clean_close = len(args) < len(sys.argv) - 1
    wait = float(args[0]) if args else 60.0
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/ordering-{suffix}"
    subscription = f"projects/{PROJECT}/subscriptions/ordering-{suffix}"
    publisher = pubsub_v1.PublisherClient(
        publisher_options=PublisherOptions(enable_message_ordering=True)
    )
    publisher.create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(
        request={
            "name": subscription,
            "topic": topic,
            "enable_message_ordering": True,
            "ack_deadline_seconds": 10,
        }
    )

    def publish(first, count):
        for future in [
            publisher.publish(topic, f"m{i}".encode(), ordering_key=KEY)
            for i in range(first, first + count)
        ]:
            future.result()

    def child(mode, seconds):
        return subprocess.Popen(
            [sys.executable, __file__, "--subscriber", subscription, mode, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )

    if clean_close:
        return leave_cleanly(child, publish, wait)
    survivor = child("ack", wait + 15)
    time.sleep(3)
    doomed = child("hold", 300)
    time.sleep(4)
    publish(0, 3)
    time.sleep(3)
    doomed.send_signal(signal.SIGKILL)
    held = doomed.communicate()[0].split()
    killed_at = time.monotonic()
    publish(3, 3)
    time.sleep(max(0.0, wait - (time.monotonic() - killed_at)))
    survivor.send_signal(signal.SIGTERM)
    got = survivor.communicate()[0].split()
    print(f"the killed subscriber held {held or 'nothing'}; the survivor got {got} within {wait:.0f} s")
    if sorted(set(got)) == [f"m{i}" for i in range(6)]:
        print("redelivered: the ordering key moved on after the kill")
        return 0
    print(f"stalled: ordering key {KEY} never moved on after the subscriber holding it was killed")
    return 1


def leave_cleanly(child, publish, wait):
    survivor = child("ack", wait + 20)
    time.sleep(3)
    leaving = child("ack", 12)
    time.sleep(4)
    publish(0, 3)
    left_with = leaving.communicate()[0].split()  # it shuts down cleanly after 12 s
    left_at = time.monotonic()
    publish(3, 3)
    time.sleep(max(0.0, wait - (time.monotonic() - left_at)))
    survivor.send_signal(signal.SIGTERM)
    got = survivor.communicate()[0].split()
    print(f"the subscriber that left cleanly got {left_with or 'nothing'}; the survivor got {got} within {wait:.0f} s")
    if {"m3", "m4", "m5"} <= set(got):
        print("delivered: the ordering key moved to the survivor after a clean shutdown")
        return 0
    print(f"stalled: ordering key {KEY} stayed with a subscriber that shut down cleanly")
    return 1


if __name__ == "__main__":
    sys.exit(main())
