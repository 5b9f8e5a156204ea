"""Minimal Faust app used by the broker conformance test (table recovery after restart).

Counts events per key in a changelog-backed table and dumps the table to $DUMP after every
event. Env: BOOTSTRAP, TOPIC, APP_ID, DUMP, DATADIR.
"""

import json
import os

import faust

app = faust.App(os.environ["APP_ID"], broker=f"kafka://{os.environ['BOOTSTRAP']}",
                store="memory://", datadir=os.environ["DATADIR"], web_enabled=False,
                topic_partitions=2, broker_commit_every=50, broker_commit_interval=0.5,
                table_standby_replicas=0)
topic = app.topic(os.environ["TOPIC"], key_type=str, value_type=str, partitions=2)
counts = app.Table("counts", default=int, partitions=2)
DUMP = os.environ["DUMP"]


def dump():
    tmp = DUMP + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(counts.items()), f)
    os.replace(tmp, DUMP)


@app.agent(topic)
async def count(stream):
    async for key, _ in stream.items():
        counts[key] += 1
        dump()


@app.timer(0.5)
async def periodic_dump():
    # after recovery, before any new event: shows what the changelog restored
    if app.tables.recovery.completed.is_set():
        dump()


if __name__ == "__main__":
    app.main()
