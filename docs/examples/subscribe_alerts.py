"""Subscribe to Switchboard's alerts: a program of your own, with only confluent-kafka.

    python subscribe_alerts.py [--bootstrap 127.0.0.1:9092] [--prefix ""] [--group my-app]

Each alert is a JSON object (its JSON Schema: GET /asyncapi.json on the query API, or
docs/asyncapi.json). Read the fields you need and ignore the rest: newer versions add
fields, never take them away. `fingerprint` names the trouble (type, scope, window
size); it fires, may repeat while firing, then resolves. `alert_id` names one
notification: de-duplicate by it, since a record can be delivered twice.
"""

from __future__ import annotations

import argparse
import json

from confluent_kafka import Consumer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--prefix", default="", help="SWITCHBOARD_TOPIC_PREFIX of the deployment")
    parser.add_argument("--group", default="my-alert-subscriber")
    parser.add_argument("--max", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([f"{args.prefix}alerts"])
    seen: set[str] = set()
    try:
        while not args.max or len(seen) < args.max:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            alert = json.loads(message.value() or b"{}")
            if "alert_id" not in alert:
                continue
            if alert["alert_id"] in seen:
                continue  # delivered twice
            seen.add(alert["alert_id"])
            state = alert.get("state", "firing")  # version 1 records had no lifecycle
            print(
                f"{state.upper()} {alert['type']} {alert['scope']}: "
                f"{alert['value']:g} (threshold {alert['threshold']:g})",
                flush=True,
            )
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
