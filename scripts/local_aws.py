#!/usr/bin/env python3
"""Creates payhook's AWS resources (tables and queues) on a local AWS API such
as moto server, and prints the `export` lines the functions read.

    scripts/moto.sh -- scripts/local_aws.py --hold

starts moto, creates everything, prints the exports (with AWS_ENDPOINT_URL and
the fake credentials) and keeps moto up until Ctrl-C. Without --hold it creates
and prints, then exits. It is idempotent: existing resources are reused.

RESOURCES below is the single description of the deployment's data plane, keyed
by the logical ids template.yaml uses, so a test can compare the two.
"""

import argparse
import json
import os
import sys
import time

# The deployment's tables and queues. Every queue has a dead-letter queue and a
# redrive policy; visibility timeouts are 6 x the processor timeout (30 s), as
# AWS advises for SQS-triggered functions.
PROCESSOR_TIMEOUT_SECONDS = 30
RESOURCES = {
    "tables": {
        "LedgerTable": {
            "name": "ledger",
            "env": "LEDGER_TABLE",
            "partition_key": {"name": "pk", "type": "S"},
            "ttl_attribute": "expires_at",
            "billing_mode": "PAY_PER_REQUEST",
        },
        "StateTable": {
            "name": "state",
            "env": "STATE_TABLE",
            "partition_key": {"name": "pk", "type": "S"},
            "ttl_attribute": "expires_at",
            "billing_mode": "PAY_PER_REQUEST",
            # Sparse: objects with undelivered effects, the longest waiting first.
            "indexes": [
                {
                    "IndexName": "outboxes",
                    "KeySchema": [
                        {"AttributeName": "outbox", "KeyType": "HASH"},
                        {"AttributeName": "outbox_since", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["pending", "version"]},
                }
            ],
            "index_attributes": {"outbox": "S", "outbox_since": "N"},
        },
    },
    "queues": {
        f"{title}Queue": {
            "name": name,
            "env": f"{name.upper()}_QUEUE_URL",
            "visibility_timeout": 6 * PROCESSOR_TIMEOUT_SECONDS,
            # As long as the dead-letter queues: an outage longer than SQS's
            # default 4 days must not drop events the ledger calls ENQUEUED.
            "retention_seconds": 14 * 24 * 3600,
            "dead_letter": {
                "logical_id": f"{title}DeadLetterQueue",
                "name": f"{name}-dlq",
                "env": f"{name.upper()}_DLQ_URL",
                "max_receive_count": 5,
                "retention_seconds": 14 * 24 * 3600,
            },
        }
        for title, name in [
            ("Fulfill", "fulfill"),
            ("Subscription", "subscription"),
            ("Dispute", "dispute"),
            ("Payout", "payout"),
        ]
    },
}


def _ensure_boto3():
    try:
        import boto3  # noqa: F401
    except ImportError:
        venv_python = os.path.join(os.path.dirname(__file__), "..", ".venv", "bin", "python")
        if os.path.realpath(sys.executable) != os.path.realpath(venv_python) and os.path.exists(venv_python):
            os.execv(venv_python, [venv_python, *sys.argv])
        sys.exit("local_aws.py: boto3 is missing; run scripts/tools.sh first")


def create_table(dynamodb, name, spec):
    key = spec["partition_key"]
    attributes = {key["name"]: key["type"], **spec.get("index_attributes", {})}
    indexes = {"GlobalSecondaryIndexes": spec["indexes"]} if spec.get("indexes") else {}
    try:
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in attributes.items()],
            KeySchema=[{"AttributeName": key["name"], "KeyType": "HASH"}],
            BillingMode=spec["billing_mode"],
            **indexes,
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["ttl_attribute"]},
        )


def create_queue(sqs, prefix, spec):
    dead = spec["dead_letter"]
    name = f"{prefix}-{spec['name']}"
    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-{dead['name']}",
        Attributes={"MessageRetentionPeriod": str(dead["retention_seconds"])},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(spec["visibility_timeout"]),
            "MessageRetentionPeriod": str(spec["retention_seconds"]),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(dead["max_receive_count"])}
            ),
        },
    )["QueueUrl"]
    return url, dlq_url


def create_all(prefix, region, endpoint):
    import boto3

    session = boto3.session.Session(region_name=region)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    exports = {}
    for spec in RESOURCES["tables"].values():
        name = f"{prefix}-{spec['name']}"
        create_table(dynamodb, name, spec)
        exports[spec["env"]] = name
    for spec in RESOURCES["queues"].values():
        url, dlq_url = create_queue(sqs, prefix, spec)
        exports[spec["env"]] = url
        exports[spec["dead_letter"]["env"]] = dlq_url
    return exports


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="payhook", help="resource name prefix (default: payhook)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"), help="default: $AWS_ENDPOINT_URL")
    parser.add_argument("--hold", action="store_true", help="after printing, wait until interrupted")
    parser.add_argument("--print-resources", action="store_true", help="print RESOURCES as JSON and exit")
    args = parser.parse_args()
    if args.print_resources:
        print(json.dumps(RESOURCES, indent=2))
        return
    if not args.endpoint:
        sys.exit("local_aws.py: no endpoint; run under scripts/moto.sh or pass --endpoint (refusing to touch a real account)")
    _ensure_boto3()
    exports = create_all(args.prefix, args.region, args.endpoint)
    lines = []
    if args.hold:
        for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
            if os.environ.get(var):
                lines.append(f"export {var}={os.environ[var]}")
    lines += [f"export {k}={v}" for k, v in exports.items()]
    print("\n".join(lines), flush=True)
    if args.hold:
        print("# local AWS is up; Ctrl-C stops it", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
