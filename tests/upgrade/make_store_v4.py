"""Write tests/upgrade/store-v4.sql (SQLite schema 4) and dynamo-v4.json (its DynamoDB
items) with the reconciler of commit 7d4fa44.

Not a test: run it against the OLD code to regenerate the fixture, e.g.
    git archive 7d4fa44 reconciler | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/upgrade/make_store_v4.py

The state it leaves is a daemon stopped in the middle of a rollout: `biglearn-api` has an
active rollout whose phase 1 (migrations) was sent, the pending migrate update, a failure
of an earlier attempt (stored as text only), an approval; `worker` has a finished
rollout that suspended scaling with the processes still owned, a runtime pause and a
window override; rollout ids interleave between the specs (they were global then); one
notification is owed.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import tempfile
from typing import Any

import boto3
from moto import mock_aws

from reconciler import model
from reconciler.store import DynamoStore, Store, create_table

OLD, NEW = "ami-00000001", "ami-00000002"
REV0, REV = "0" * 40, "a" * 40
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
SQL = pathlib.Path(__file__).with_name("store-v4.sql")
ITEMS = pathlib.Path(__file__).with_name("dynamo-v4.json")


def m(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def scenario(s: Any) -> None:
    """The same calls against either store of the old release."""
    s.apply("biglearn-api", [model.StartRollout(OLD, REV0, None, m(-2880))])  # id 1
    s.apply("worker", [model.StartRollout(OLD, REV0, None, m(-2000))])  # id 2
    s.apply(
        "biglearn-api",
        [
            model.MarkRollout(phase1_started_at=m(-2879), migrated_at=m(-2870)),
            model.MarkRollout(switch_started_at=m(-2869), switched_at=m(-2860)),
            model.FinishRollout("succeeded", m(-2859)),
        ],
    )
    s.apply(
        "worker",
        [
            model.MarkRollout(scaling_suspended_at=m(-1990)),
            model.OwnScaling(frozenset({"Launch", "AZRebalance"})),
            model.FinishRollout("failed", m(-1980), "API group not healthy: i-1"),
        ],
    )
    s.pause("worker", "incident 42", m(-100), m(600))
    s.override_window("worker", "hotfix", m(-90), m(30))
    s.approve("biglearn-api", NEW, m(-40))
    s.apply(
        "biglearn-api",
        [
            model.StartRollout(NEW, REV, OLD, m(-10)),  # id 3
            model.MarkRollout(phase1_started_at=m(-10)),
            model.SetPending(
                model.Pending(
                    "migrate",
                    NEW,
                    REV,
                    "reconciler-migrate-ami-00000002-0123456789abcdef0123",
                    m(-10),
                    {"MigrationLcImageId": NEW, "MigrationDesiredCapacity": "1"},
                )
            ),
            model.RecordFailure(
                model.Failure(
                    1,
                    "migrate update rolled back: Resource creation cancelled",
                    m(-30),
                    m(-20),
                    REV,
                    NEW,
                )
            ),
        ],
    )
    s.enqueue(
        [model.OutboxEntry("biglearn-api|" + REV + "|rollout_started", "default", "{}", m(-10))]
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "reconciler.sqlite3"
        with Store(path) as s:
            scenario(s)
        db = sqlite3.connect(path)
        SQL.write_text("\n".join(db.iterdump()) + "\n")
        db.close()
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        create_table(client, "old")
        scenario(DynamoStore(client, "old"))
        items = client.scan(TableName="old")["Items"]
    items.sort(key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
    ITEMS.write_text(json.dumps(items, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
