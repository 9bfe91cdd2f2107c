"""An independent subscriber of the public price-alerts topic (google-cloud-pubsub against the
emulator named by PUBSUB_EMULATOR_HOST) that validates every event against the JSON Schema.

Usage: subscribe_price_alerts.py PROJECT TOPIC SUBSCRIPTION SCHEMA COUNT TIMEOUT_SECONDS
Creates SUBSCRIPTION on TOPIC, prints READY, then pulls until COUNT messages arrived or the
timeout passed, acknowledging each. Prints one JSON object:
{"events": [...], "attributes": [...], "errors": ["..."]} and exits 0 only if COUNT valid
events arrived.
"""

import json
import sys
import time

from google.api_core.exceptions import DeadlineExceeded
from google.cloud import pubsub_v1
from jsonschema import Draft202012Validator


def main():
    project, topic, subscription, schema_path, count, timeout = sys.argv[1:7]
    count, timeout = int(count), float(timeout)
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = f"projects/{project}/topics/{topic}"
    sub_path = subscriber.subscription_path(project, subscription)
    subscriber.create_subscription(request={"name": sub_path, "topic": topic_path})
    print("READY", flush=True)
    events, attributes, errors = [], [], []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        try:
            response = subscriber.pull(
                request={"subscription": sub_path, "max_messages": 10}, timeout=5, retry=None
            )
        except DeadlineExceeded:
            continue
        ack_ids = []
        for received in response.received_messages:
            ack_ids.append(received.ack_id)
            message = received.message
            attributes.append(dict(message.attributes))
            try:
                event = json.loads(message.data.decode("utf-8"))
            except ValueError as e:
                errors.append(f"not JSON: {e}")
                continue
            problems = [f"{'/'.join(map(str, err.path))}: {err.message}" for err in validator.iter_errors(event)]
            if message.attributes.get("content-type") != "application/cloudevents+json":
                problems.append(f"content-type attribute is {message.attributes.get('content-type')!r}")
            errors.extend(problems)
            events.append(event)
        if ack_ids:
            subscriber.acknowledge(request={"subscription": sub_path, "ack_ids": ack_ids})
    subscriber.delete_subscription(request={"subscription": sub_path})
    print(json.dumps({"events": events, "attributes": attributes, "errors": errors}), flush=True)
    sys.exit(0 if len(events) >= count and not errors else 1)


if __name__ == "__main__":
    main()
