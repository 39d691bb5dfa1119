"""The wiring of template.yaml, checked against the code it deploys.

cfn-lint and `sam validate` check that the template is valid CloudFormation;
they accept a misspelled `ReportBatchItemFailures` or a visibility timeout
shorter than the function's. These checks hold the template to what payhook
needs: every function arm64 on provided.al2023 building a real binary, every
queue with a dead-letter queue, partial batch failures on every event source,
exactly the environment variables the binaries read, least-privilege IAM,
alarms on every dead-letter queue, and the same tables and queues as
scripts/local_aws.py creates for local runs.

    .venv/bin/python -m unittest discover -s tests/template -v
"""

import copy
import importlib.util
import json
import re
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn  # noqa: E402

ROOT = cfn.ROOT

RUNTIME = "provided.al2023"
ARCHITECTURES = ["arm64"]
BUILD_METHOD = "rust-cargolambda"
PARTIAL_FAILURES = ["ReportBatchItemFailures"]
MAX_RECEIVE_COUNT = 5
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
SQS_DEFAULT_VISIBILITY = 30
SQS_DEFAULT_RETENTION = 4 * 24 * 3600
SAM_DEFAULT_TIMEOUT = 3
API_GATEWAY_TIMEOUT = 30
SECRETS = {"STRIPE_WEBHOOK_SECRET", "STANDARD_WEBHOOK_SECRET", "EFFECTS_SIGNING_SECRET", "STRIPE_API_KEY"}
# The secrets that let receive verify a provider (the others sign what payhook sends).
WEBHOOK_SECRETS = {"STRIPE_WEBHOOK_SECRET", "STANDARD_WEBHOOK_SECRET"}

# What each kind of function may do to each resource it uses (and must be able to).
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
RECEIVE_LEDGER = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
RECEIVE_QUEUE = {"sqs:SendMessage"}
READ_SECRET = {"secretsmanager:GetSecretValue"}
PUT_EVENTS = {"events:PutEvents"}
# Processors: exactly what they call (the event source mapping polls with the
# function's role; a commit is TransactWriteItems of conditional Puts; the
# sweep queries the outbox index; stored bodies are read item by item).
CONSUME_QUEUE = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
CONSUME_QUEUE_MAY = CONSUME_QUEUE
WRITE_STATE = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
WRITE_STATE_MAY = WRITE_STATE
READ_BODIES = {"dynamodb:GetItem"}
READ_BODIES_MAY = READ_BODIES
# receive drains the EventBridge ingress queue through an event source mapping
# (which polls with receive's role) and may return a record for a later retry.
DRAIN_INGRESS = CONSUME_QUEUE
DRAIN_INGRESS_MAY = CONSUME_QUEUE | {"sqs:ChangeMessageVisibility"}
# reconcile: receive's claim path (ledger and processor queues) and the API key.
RECONCILE_LEDGER = RECEIVE_LEDGER
# Actions AWS only authorises on `*`.
STAR_ONLY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "cloudwatch:PutMetricData"}


# ---------------------------------------------------------------- the code's side

class Code:
    """What the Rust sources say the deployment must provide."""

    def __init__(self, root=ROOT):
        config = (root / "shared/src/config.rs").read_text()
        self.binaries = cfn.workspace_binaries(root)
        self.receive_reads, self.receive_requires = cfn.entry_point_env_vars(config, "ReceiveConfig::from_env")
        self.processor_reads, self.processor_requires = cfn.entry_point_env_vars(config, "ProcessorConfig::from_env")
        self.reconcile_reads, self.reconcile_requires = cfn.entry_point_env_vars(config, "ReconcileConfig::from_env")
        self.receive_timeout = int(re.search(r"pub const RECEIVE_TIMEOUT_SECS: u64 = (\d+);", config).group(1))
        self.routed_types = _routed_types((root / "shared/src/route.rs").read_text())
        self.everyone_reads = cfn.direct_env_reads((root / "shared/src/telemetry.rs").read_text())
        route = (root / "shared/src/route.rs").read_text()
        self.processors = _processor_names(route)
        telemetry = (root / "shared/src/telemetry.rs").read_text()
        self.metrics = set(re.findall(r'Self::\w+\s*=>\s*"([A-Z]\w*)"', _fn_source(telemetry, "Metric::name")))

    def kind(self, binary):
        """`receive`, `reconcile`, `processor`, or None for a binary payhook does not know."""
        if binary in ("receive", "reconcile"):
            return binary
        return "processor" if binary in self.processors else None

    def reads(self, binary):
        base = {
            "receive": self.receive_reads,
            "reconcile": self.reconcile_reads,
        }.get(self.kind(binary), self.processor_reads)
        crate = self.binaries.get(binary)
        main = crate / "src/main.rs" if crate else None
        direct = cfn.direct_env_reads(main.read_text()) if main and main.exists() else set()
        return base | self.everyone_reads | direct

    def requires(self, binary):
        return {
            "receive": self.receive_requires,
            "reconcile": self.reconcile_requires,
        }.get(self.kind(binary), self.processor_requires)


def _fn_source(src, key):
    a, b = cfn._functions(src)[key]
    return src[a:b]


def _processor_names(route_src):
    return set(re.findall(r'Self::\w+\s*=>\s*"([a-z]+)"', _fn_source(route_src, "Processor::as_str")))


def _routed_types(route_src):
    """The Stripe event types `ROUTES` sends to a processor."""
    start = route_src.index("pub const ROUTES")
    block = route_src[start:route_src.index("};", start)]
    return re.findall(r'\(\s*"([a-z_.]+)"\s*,\s*\w+\s*\)', block)


# ---------------------------------------------------------------- helpers

def _value(template, value):
    """A literal or a parameter's default, as an int when it is one."""
    if isinstance(value, dict) and "Ref" in value:
        value = template.get("Parameters", {}).get(value["Ref"], {}).get("Default")
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _functions(template):
    """`{logical id: (binary, properties with Globals)}` of every serverless function."""
    out = {}
    for name, res in cfn.resources(template, "AWS::Serverless::Function").items():
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        out[name] = (binary, cfn.function_properties(template, name))
    return out


def _sqs_events(props):
    return [
        (ev_name, ev.get("Properties", {}))
        for ev_name, ev in (props.get("Events") or {}).items()
        if ev.get("Type") == "SQS"
    ]


def _mappings(template):
    """`[(mapping logical id, function logical id, properties)]`: explicit
    event source mappings (a conditional event source cannot be a SAM event)."""
    return [
        (name, cfn.ref_target(res.get("Properties", {}).get("FunctionName")), res.get("Properties", {}))
        for name, res in cfn.resources(template, "AWS::Lambda::EventSourceMapping").items()
    ]


def _event_sources(template):
    """`[(where, function logical id, binary, properties with `Queue`)]`: SAM SQS events and mappings."""
    functions = _functions(template)
    out = []
    for fn, (binary, props) in functions.items():
        for ev_name, ev in _sqs_events(props):
            out.append((f"{fn}.Events.{ev_name}", fn, binary, ev))
    for name, fn, props in _mappings(template):
        binary = functions.get(fn, (None, {}))[0]
        out.append((name, fn, binary, {**props, "Queue": props.get("EventSourceArn")}))
    return out


def _consumers(template):
    """`{queue logical id: [(function logical id, binary, timeout)]}`."""
    functions = _functions(template)
    out = {}
    for _, fn, binary, ev in _event_sources(template):
        queue = cfn.ref_target(ev.get("Queue"))
        props = functions.get(fn, (None, {}))[1]
        timeout = _value(template, props.get("Timeout", SAM_DEFAULT_TIMEOUT))
        out.setdefault(queue, []).append((fn, binary, timeout))
    return out


def _dead_letter_queues(template):
    """Queues that are a dead-letter queue: a redrive target, or an EventBridge
    target's `DeadLetterConfig` (events EventBridge could not deliver)."""
    queues = cfn.resources(template, "AWS::SQS::Queue")
    dead = {_dead_letter_target(q) for q in queues.values()}
    for _, target in _rule_targets(template):
        dead.add(cfn.ref_target((target.get("DeadLetterConfig") or {}).get("Arn")))
    return dead - {None}


def _rule_targets(template):
    """`[(rule logical id, target)]` of every EventBridge rule."""
    return [
        (name, target)
        for name, rule in cfn.resources(template, "AWS::Events::Rule").items()
        for target in rule.get("Properties", {}).get("Targets", [])
    ]


def _dead_letter_target(queue):
    policy = queue.get("Properties", {}).get("RedrivePolicy")
    return cfn.ref_target(policy.get("deadLetterTargetArn")) if isinstance(policy, dict) else None


def _as_list(value):
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- checks

def check_functions(template, code):
    problems = []
    deployed = {}
    for fn, (binary, props) in _functions(template).items():
        res = template["Resources"][fn]
        if props.get("Runtime") != RUNTIME:
            problems.append(f"{fn}: Runtime is {props.get('Runtime')!r}, not {RUNTIME}")
        if props.get("Architectures") != ARCHITECTURES:
            problems.append(f"{fn}: Architectures is {props.get('Architectures')!r}, not {ARCHITECTURES}")
        if res.get("Metadata", {}).get("BuildMethod") != BUILD_METHOD:
            problems.append(f"{fn}: Metadata.BuildMethod is not {BUILD_METHOD}")
        if props.get("CodeUri") != ".":
            problems.append(f"{fn}: CodeUri must be the workspace root `.` (cargo-lambda builds there)")
        if binary not in code.binaries:
            problems.append(f"{fn}: BuildProperties.Binary {binary!r} is no binary of functions/*/Cargo.toml")
            continue
        if code.kind(binary) is None:
            problems.append(f"{fn}: binary {binary!r} is neither receive, reconcile nor a processor in shared/src/route.rs")
        deployed.setdefault(binary, []).append(fn)
        log_group = cfn.ref_target(props.get("LoggingConfig", {}).get("LogGroup"))
        group = template["Resources"].get(log_group, {})
        if group.get("Type") != "AWS::Logs::LogGroup" or "RetentionInDays" not in group.get("Properties", {}):
            problems.append(f"{fn}: needs LoggingConfig.LogGroup naming an AWS::Logs::LogGroup with RetentionInDays")
        timeout = _value(template, props.get("Timeout", SAM_DEFAULT_TIMEOUT))
        if code.kind(binary) == "receive" and not (isinstance(timeout, int) and timeout < API_GATEWAY_TIMEOUT):
            problems.append(f"{fn}: Timeout {timeout} must stay below API Gateway's {API_GATEWAY_TIMEOUT} s")
        if code.kind(binary) == "receive":
            routes = [
                (ev.get("Properties", {}).get("Method", "").upper(), ev.get("Properties", {}).get("Path"))
                for ev in (props.get("Events") or {}).values()
                if ev.get("Type") == "HttpApi"
            ]
            if ("POST", "/webhooks/{provider}") not in routes:
                problems.append(f"{fn}: no HttpApi event POST /webhooks/{{provider}}")
    for binary in code.binaries:
        if len(deployed.get(binary, [])) != 1:
            problems.append(f"binary {binary!r} is deployed by {len(deployed.get(binary, []))} functions, not 1")
    return problems


def check_queues(template, code):
    problems = []
    queues = cfn.resources(template, "AWS::SQS::Queue")
    dead_letter_queues = _dead_letter_queues(template)
    consumers = _consumers(template)
    for name, queue in queues.items():
        props = queue.get("Properties", {})
        if name in dead_letter_queues:
            if _value(template, props.get("MessageRetentionPeriod")) != DLQ_RETENTION_SECONDS:
                problems.append(f"{name}: a dead-letter queue keeps messages 14 days ({DLQ_RETENTION_SECONDS} s)")
            continue
        # Retention at least the dead-letter queues': a processor outage longer
        # than SQS's default 4 days must not drop messages the ledger calls ENQUEUED.
        if _value(template, props.get("MessageRetentionPeriod", SQS_DEFAULT_RETENTION)) != DLQ_RETENTION_SECONDS:
            problems.append(f"{name}: a processor queue keeps messages 14 days ({DLQ_RETENTION_SECONDS} s)")
        target = _dead_letter_target(queue)
        if target is None:
            problems.append(f"{name}: no RedrivePolicy with a deadLetterTargetArn")
        elif target not in queues:
            problems.append(f"{name}: dead-letter target {target!r} is not a queue of this template")
        else:
            count = _value(template, props["RedrivePolicy"].get("maxReceiveCount"))
            if count != MAX_RECEIVE_COUNT:
                problems.append(f"{name}: maxReceiveCount is {count!r}, not {MAX_RECEIVE_COUNT}")
        if name not in consumers:
            problems.append(f"{name}: no function consumes it")
        visibility = _value(template, props.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY))
        for fn, _, timeout in consumers.get(name, []):
            if not (isinstance(visibility, int) and isinstance(timeout, int) and visibility >= 6 * timeout):
                problems.append(
                    f"{name}: VisibilityTimeout {visibility} is less than 6 x {fn}'s Timeout {timeout}"
                )
    for queue, fns in consumers.items():
        if queue not in queues:
            problems.append(f"event source queue {queue!r} is not a queue of this template")
        elif queue in dead_letter_queues:
            problems.append(f"{queue}: a dead-letter queue must not be consumed (it would retry poison forever)")
        if len(fns) > 1:
            problems.append(f"{queue}: consumed by {len(fns)} functions")
    return problems


def check_event_sources(template, code):
    problems = []
    params = template.get("Parameters", {})
    for fn, (binary, props) in _functions(template).items():
        events = _sqs_events(props)
        if code.kind(binary) == "processor" and len(events) != 1:
            problems.append(f"{fn}: a processor needs exactly one SQS event source, has {len(events)}")
    for where, fn, binary, ev in _event_sources(template):
        if fn not in template["Resources"]:
            problems.append(f"{where}: FunctionName names no function of this template")
        if ev.get("FunctionResponseTypes") != PARTIAL_FAILURES:
            problems.append(
                f"{where}: FunctionResponseTypes is {ev.get('FunctionResponseTypes')!r}, not {PARTIAL_FAILURES}"
            )
        size = _value(template, ev.get("BatchSize", 10))
        window = _value(template, ev.get("MaximumBatchingWindowInSeconds", 0))
        if not (isinstance(size, int) and 1 <= size <= 10000):
            problems.append(f"{where}: BatchSize {size!r} is outside SQS's 1..10000")
        elif size > 10 and not window:
            problems.append(f"{where}: BatchSize {size} above 10 needs MaximumBatchingWindowInSeconds >= 1")
        if not (isinstance(window, int) and 0 <= window <= 300):
            problems.append(f"{where}: MaximumBatchingWindowInSeconds {window!r} is outside 0..300")
        concurrency = _value(template, ev.get("ScalingConfig", {}).get("MaximumConcurrency"))
        if not (isinstance(concurrency, int) and 2 <= concurrency <= 1000):
            problems.append(f"{where}: ScalingConfig.MaximumConcurrency {concurrency!r} is outside 2..1000")
        # A parameter must not admit what SQS refuses either.
        for key, low, high in [("BatchSize", 1, 10000), ("MaximumBatchingWindowInSeconds", 0, 300)]:
            param = cfn.ref_target(ev.get(key))
            if param in params:
                p = params[param]
                if int(p.get("MinValue", -1)) < low or int(p.get("MaxValue", high + 1)) > high:
                    problems.append(f"parameter {param}: MinValue/MaxValue must lie within {low}..{high}")
        size_param = cfn.ref_target(ev.get("BatchSize"))
        if size_param in params and int(params[size_param].get("MaxValue", 10001)) > 10:
            rules = json.dumps(template.get("Rules", {}))
            if f'"Ref": "{size_param}"' not in rules:
                problems.append(f"parameter {size_param} may exceed 10: a Rules assertion must require a batching window")
    return problems


def check_environment(template, code):
    problems = []
    functions = _functions(template)
    consumed_by = {binary: queue for queue, fns in _consumers(template).items() for _, binary, _ in fns}
    tables = {}
    for fn, (binary, props) in functions.items():
        if code.kind(binary) is None:
            continue
        env = (props.get("Environment") or {}).get("Variables") or {}
        names = set(env)
        for name in sorted(code.requires(binary) - names):
            problems.append(f"{fn}: environment lacks {name}, which {binary} requires")
        for name in sorted(names - code.reads(binary)):
            problems.append(f"{fn}: environment sets {name}, which nothing in {binary} reads")
        for name in sorted(names & SECRETS):
            problems.append(f"{fn}: {name} puts a secret in the environment; give {name}_ARN")
        for name in sorted(n for n in names if _is_secret_arn(n)):
            targets = _secret_targets(env[name])
            if not targets or any(
                template["Resources"].get(target, {}).get("Type") != "AWS::SecretsManager::Secret" for target in targets
            ):
                problems.append(f"{fn}: {name} must Ref an AWS::SecretsManager::Secret")
        if code.kind(binary) == "receive" and not any(f"{s}_ARN" in names for s in WEBHOOK_SECRETS):
            problems.append(f"{fn}: no webhook secret ARN: no provider could be verified")
        if code.kind(binary) == "reconcile":
            for name in sorted(names & {f"{s}_ARN" for s in WEBHOOK_SECRETS}):
                problems.append(f"{fn}: {name}: reconcile verifies no signature and needs no webhook secret")
            if "STRIPE_API_KEY_ARN" not in names:
                problems.append(f"{fn}: no STRIPE_API_KEY_ARN: reconcile could not list events")
        if code.kind(binary) in ("receive", "reconcile"):
            for processor in code.processors:
                var = f"{processor.upper()}_QUEUE_URL"
                if var in names and cfn.ref_target(env[var]) != consumed_by.get(processor):
                    problems.append(f"{fn}: {var} does not Ref the queue the {processor} function consumes")
            # A claim must outlive the time its holder can still act on it:
            # receive's whole invocation; for reconcile, one event's intake,
            # which runs under receive's budget (RECEIVE_TIMEOUT_SECS) however
            # long the run is.
            lease = _value(template, env.get("LEDGER_LEASE_SECONDS", 30))
            if code.kind(binary) == "reconcile":
                timeout, what = code.receive_timeout, "one event's budget"
            else:
                timeout, what = _value(template, props.get("Timeout", SAM_DEFAULT_TIMEOUT)), "its Timeout"
            if isinstance(lease, int) and isinstance(timeout, int) and lease < 2 * timeout:
                problems.append(f"{fn}: LEDGER_LEASE_SECONDS {lease} must be at least twice {what} {timeout}")
        for var in ("LEDGER_TABLE", "STATE_TABLE"):
            if var in env:
                target = cfn.ref_target(env[var])
                if template["Resources"].get(target, {}).get("Type") != "AWS::DynamoDB::Table":
                    problems.append(f"{fn}: {var} must Ref an AWS::DynamoDB::Table")
                tables.setdefault(var, set()).add(target)
    for var, targets in tables.items():
        if len(targets) != 1:
            problems.append(f"{var} names different tables in different functions: {sorted(targets)}")
    if tables.get("LEDGER_TABLE") and tables.get("LEDGER_TABLE") == tables.get("STATE_TABLE"):
        problems.append("LEDGER_TABLE and STATE_TABLE are the same table")
    return problems


def _role_statements(template, fn, props):
    """The statements of a function's role, or a problem when it has no explicit role."""
    role = cfn.ref_target(props.get("Role"))
    res = template["Resources"].get(role, {})
    if res.get("Type") != "AWS::IAM::Role":
        return None, f"{fn}: needs an explicit AWS::IAM::Role (SAM's generated role adds logs:* on *)"
    if props.get("Policies"):
        return None, f"{fn}: Policies are ignored with an explicit Role"
    role_props = res.get("Properties", {})
    if role_props.get("ManagedPolicyArns"):
        return None, f"{role}: managed policies grant more than the function needs"
    documents = [p.get("PolicyDocument", {}) for p in role_props.get("Policies", [])]
    for name, pol in cfn.resources(template).items():
        if pol.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy"):
            if role in cfn.sub_targets(pol.get("Properties", {}).get("Roles", [])) or role in cfn.sub_targets(
                pol.get("Properties", {}).get("RoleName")
            ):
                documents.append(pol.get("Properties", {}).get("PolicyDocument", {}))
    statements = [s for d in documents for s in _as_list(d.get("Statement", []))]
    # A statement under a condition grants what it says when the condition holds.
    statements = [b for s in statements for b in _if_branches(s) if isinstance(b, dict)]
    return statements, None


def _is_secret_arn(name):
    """Whether an environment variable names a secret by ARN (`*_SECRET_ARN`, `STRIPE_API_KEY_ARN`)."""
    return name.endswith("_SECRET_ARN") or name.endswith("_KEY_ARN")


def _secret_targets(value):
    """The logical ids an ARN variable Refs, through both branches of an `Fn::If`
    (a branch may be "" when the secret is conditional)."""
    return {
        target for branch in _if_branches(value)
        if (target := cfn.ref_target(branch)) and not target.startswith("AWS::")
    }


def _if_branches(value):
    """Both branches of an `Fn::If` (either may be `AWS::NoValue`), else the value itself."""
    if isinstance(value, dict) and "Fn::If" in value:
        return [b for b in value["Fn::If"][1:] if cfn.ref_target(b) != "AWS::NoValue"]
    return [value]


def _bus_targets(value):
    """What `EFFECTS_TARGET` names as its EventBridge bus: the `eventbridge` branch's references."""
    if not (isinstance(value, dict) and "Fn::If" in value):
        return set()
    return {t for t in cfn.sub_targets(value["Fn::If"][1]) if not t.startswith("AWS::")}


def _grants(template, fn, statements):
    """`{logical id: actions}` granted by `statements`, and problems with their form."""
    grants, problems = {}, []
    for s in statements:
        if s.get("Effect") != "Allow":
            continue
        if "NotAction" in s or "NotResource" in s:
            problems.append(f"{fn}: NotAction/NotResource grant everything else")
            continue
        actions = set(_as_list(s.get("Action", [])))
        for action in actions:
            if "*" in action:
                problems.append(f"{fn}: action {action!r} is a wildcard")
        for resource in _as_list(s.get("Resource", [])):
            if isinstance(resource, str):
                if resource == "*" and actions <= STAR_ONLY:
                    continue
                problems.append(f"{fn}: resource {resource!r} is not a resource of this stack")
                continue
            targets = {t for t in cfn.sub_targets(resource) if not t.startswith("AWS::")}
            if not targets:
                problems.append(f"{fn}: resource {resource!r} names nothing of this stack")
            for target in targets:
                grants.setdefault(target, set()).update(actions)
    return grants, problems


def check_iam(template, code):
    problems = []
    functions = _functions(template)
    consumed_by = {binary: queue for queue, fns in _consumers(template).items() for _, binary, _ in fns}
    for fn, (binary, props) in functions.items():
        kind = code.kind(binary)
        if kind is None:
            continue
        statements, problem = _role_statements(template, fn, props)
        if problem:
            problems.append(problem)
            continue
        grants, form_problems = _grants(template, fn, statements)
        problems += form_problems
        env = (props.get("Environment") or {}).get("Variables") or {}
        ledger = cfn.ref_target(env.get("LEDGER_TABLE"))
        log_group = cfn.ref_target(props.get("LoggingConfig", {}).get("LogGroup"))
        # (may, must) per resource this function uses.
        if kind in ("receive", "reconcile"):
            # The same claim path: claim, mark, release and large bodies in
            # the ledger, a send to each processor's queue.
            allowed = {ledger: (RECEIVE_LEDGER, RECEIVE_LEDGER), log_group: (LOGS, LOGS)}
            for p in code.processors:
                allowed[consumed_by.get(p)] = (RECEIVE_QUEUE, RECEIVE_QUEUE)
            for name, value in env.items():
                if _is_secret_arn(name):
                    for secret in _secret_targets(value):
                        allowed[secret] = (READ_SECRET, READ_SECRET)
            for queue, fns in _consumers(template).items():
                if any(consumer == fn for consumer, _, _ in fns):
                    allowed[queue] = (DRAIN_INGRESS_MAY, DRAIN_INGRESS)
        else:
            state = cfn.ref_target(env.get("STATE_TABLE"))
            allowed = {
                consumed_by.get(binary): (CONSUME_QUEUE_MAY, CONSUME_QUEUE),
                state: (WRITE_STATE_MAY, WRITE_STATE),
                ledger: (READ_BODIES_MAY, READ_BODIES),
                log_group: (LOGS, LOGS),
            }
            for name, value in env.items():
                if _is_secret_arn(name):
                    for secret in _secret_targets(value):
                        allowed[secret] = (READ_SECRET, READ_SECRET)
            for bus in _bus_targets(env.get("EFFECTS_TARGET")):
                allowed[bus] = (PUT_EVENTS, PUT_EVENTS)
        allowed.pop(None, None)
        for target, actions in sorted(grants.items()):
            if target not in allowed:
                problems.append(f"{fn}: role grants {sorted(actions)} on {target}, which {binary} does not use")
                continue
            extra = actions - allowed[target][0]
            if extra:
                problems.append(f"{fn}: role grants {sorted(extra)} on {target}, more than {binary} needs")
        for target, (_, must) in sorted(allowed.items()):
            missing = must - grants.get(target, set())
            if missing:
                problems.append(f"{fn}: role lacks {sorted(missing)} on {target}")
    return problems


def check_tables(template, code):
    problems = []
    functions = _functions(template)
    roles = {}
    for _, (binary, props) in functions.items():
        for var in ("LEDGER_TABLE", "STATE_TABLE"):
            target = cfn.ref_target(((props.get("Environment") or {}).get("Variables") or {}).get(var))
            if target:
                roles[target] = var
    for name, table in cfn.resources(template, "AWS::DynamoDB::Table").items():
        props = table.get("Properties", {})
        if props.get("KeySchema") != [{"AttributeName": "pk", "KeyType": "HASH"}]:
            problems.append(f"{name}: key schema must be `pk` (HASH) alone")
        if {"AttributeName": "pk", "AttributeType": "S"} not in props.get("AttributeDefinitions", []):
            problems.append(f"{name}: `pk` must be a string")
        ttl = props.get("TimeToLiveSpecification", {})
        if ttl.get("AttributeName") != "expires_at" or ttl.get("Enabled") is not True:
            problems.append(f"{name}: TTL must be enabled on `expires_at`")
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{name}: BillingMode must be PAY_PER_REQUEST (on-demand)")
        if roles.get(name) == "STATE_TABLE":
            pitr = props.get("PointInTimeRecoverySpecification", {})
            if pitr.get("PointInTimeRecoveryEnabled") is not True:
                problems.append(f"{name}: the state table needs point-in-time recovery")
    return problems


def _alarms(template):
    return [a.get("Properties", {}) for a in cfn.resources(template, "AWS::CloudWatch::Alarm").values()]


def _alarmed(template, namespace, metric, dimension, value):
    """Whether an alarm watches the metric, alone or as one of a metric-math alarm's metrics."""
    for a in _alarms(template):
        watched = [a] + [
            m.get("MetricStat", {}).get("Metric", {}) for m in a.get("Metrics", [])
        ]
        for w in watched:
            if w.get("Namespace") == namespace and w.get("MetricName") == metric:
                for d in w.get("Dimensions", []):
                    if d.get("Name") == dimension and (d.get("Value") == value or cfn.ref_target(d.get("Value")) == value):
                        return True
    return False


def check_alarms(template, code):
    problems = []
    queues = cfn.resources(template, "AWS::SQS::Queue")
    dead = _dead_letter_queues(template)
    for dlq in sorted(dead):
        if not _alarmed(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq):
            problems.append(f"{dlq}: no alarm on ApproximateNumberOfMessagesVisible")
    for queue in sorted(set(queues) - dead):
        if not _alarmed(template, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue):
            problems.append(f"{queue}: no alarm on ApproximateAgeOfOldestMessage")
    if not _alarmed(template, "payhook", "InvalidSignature", "Function", "receive"):
        problems.append("no alarm on payhook InvalidSignature (Function=receive)")
    if not (
        _alarmed(template, "payhook", "BackendError", "Function", "receive")
        or any(a.get("Namespace") == "AWS/ApiGateway" and a.get("MetricName") == "5xx" for a in _alarms(template))
    ):
        problems.append("no alarm on receive's 5xx (AWS/ApiGateway 5xx or payhook BackendError)")
    for fn, (binary, _) in _functions(template).items():
        if code.kind(binary) == "processor":
            if not _alarmed(template, "AWS/Lambda", "Errors", "FunctionName", fn):
                problems.append(f"{fn}: no alarm on AWS/Lambda Errors")
            if not _alarmed(template, "payhook", "Failed", "Function", binary):
                problems.append(f"{fn}: no alarm on payhook Failed (Function={binary})")
            if not _alarmed(template, "payhook", "EffectParked", "Function", binary):
                problems.append(f"{fn}: no alarm on payhook EffectParked (Function={binary})")
        if code.kind(binary) == "reconcile":
            if not _alarmed(template, "AWS/Lambda", "Errors", "FunctionName", fn):
                problems.append(f"{fn}: no alarm on AWS/Lambda Errors")
            if not _alarmed(template, "payhook", "Recovered", "Function", binary):
                problems.append(f"{fn}: no alarm on payhook Recovered (Function={binary}): lost webhooks would go unnoticed")
    for a in _alarms(template):
        if "AlarmActions" not in a:
            problems.append(f"alarm on {a.get('MetricName')} notifies no one (AlarmActions)")
    return problems


def _queue_policy_statements(template, queue):
    """Every statement of every queue policy that applies to `queue`."""
    out = []
    for policy in cfn.resources(template, "AWS::SQS::QueuePolicy").values():
        props = policy.get("Properties", {})
        if queue in cfn.sub_targets(props.get("Queues", [])):
            out += _as_list(props.get("PolicyDocument", {}).get("Statement", []))
    return out


def check_event_bridge_ingress(template, code):
    """Stripe's EventBridge destination: partner bus → rule → queue → receive."""
    problems = []
    queues = cfn.resources(template, "AWS::SQS::Queue")
    buses = cfn.resources(template, "AWS::Events::EventBus")
    consumers = _consumers(template)
    for rule_name, rule in cfn.resources(template, "AWS::Events::Rule").items():
        props = rule.get("Properties", {})
        bus = cfn.ref_target(props.get("EventBusName"))
        if bus not in buses or "EventSourceName" not in buses[bus].get("Properties", {}):
            continue  # not a partner (Stripe) bus's rule
        bus_props = buses[bus]["Properties"]
        if bus_props.get("Name") != bus_props.get("EventSourceName"):
            problems.append(f"{bus}: a partner event bus is named as its EventSourceName")
        pattern = props.get("EventPattern", {})
        if pattern.get("source") != [bus_props.get("EventSourceName")]:
            problems.append(f"{rule_name}: EventPattern.source must be exactly the partner event source")
        types = pattern.get("detail-type", [])
        missing, extra = set(code.routed_types) - set(types), set(types) - set(code.routed_types)
        if missing:
            problems.append(f"{rule_name}: detail-type lacks routed types {sorted(missing)}")
        if extra:
            problems.append(f"{rule_name}: detail-type has {sorted(extra)}, which shared/src/route.rs ROUTES does not route")
        if len(types) != len(set(types)):
            problems.append(f"{rule_name}: detail-type lists a type twice")
        rule_arn = {"Fn::GetAtt": [rule_name, "Arn"]}
        for target in props.get("Targets", []):
            queue = cfn.ref_target(target.get("Arn"))
            if queue not in queues:
                problems.append(f"{rule_name}: target {target.get('Id')!r} is not a queue of this template")
                continue
            if not any(code.kind(binary) == "receive" for _, binary, _ in consumers.get(queue, [])):
                problems.append(f"{queue}: receive must drain it (the same claim path as a webhook)")
            dead = cfn.ref_target((target.get("DeadLetterConfig") or {}).get("Arn"))
            if dead not in queues:
                problems.append(f"{rule_name}: target {target.get('Id')!r} needs a DeadLetterConfig queue")
            if "RetryPolicy" not in target:
                problems.append(f"{rule_name}: target {target.get('Id')!r} needs a RetryPolicy")
            for q in (queue, dead):
                if q not in queues:
                    continue
                allows = [
                    s for s in _queue_policy_statements(template, q)
                    if s.get("Effect") == "Allow" and "sqs:SendMessage" in _as_list(s.get("Action", []))
                ]
                if not allows:
                    problems.append(f"{q}: no queue policy lets {rule_name} send to it")
                for s in allows:
                    if s.get("Principal") != {"Service": "events.amazonaws.com"}:
                        problems.append(f"{q}: queue policy allows {s.get('Principal')!r}, not only EventBridge")
                    if _as_list(s.get("Action")) != ["sqs:SendMessage"]:
                        problems.append(f"{q}: queue policy allows {s.get('Action')!r}, more than sqs:SendMessage")
                    if (s.get("Condition") or {}).get("ArnEquals", {}).get("aws:SourceArn") != rule_arn:
                        problems.append(f"{q}: queue policy must limit aws:SourceArn (ArnEquals) to {rule_name}")
    return problems


# Parameter values that switch the optional parts on and off, every combination.
OPTIONAL_PARAMETERS = {
    "StripeApiKeyValue": ["", "rk_test_x"],
    "StripeEventSourceName": ["", "aws.partner/stripe.com/ed_test_61RcExample"],
    "ReconcileSchedule": ["rate(15 minutes)", "off"],
}


def _parameter_sets():
    sets = [{}]
    for name, values in OPTIONAL_PARAMETERS.items():
        sets = [{**s, name: v} for s in sets for v in values]
    return sets


def _conditions(template, parameters):
    """`{condition: bool}` with these parameter values (the rest at their defaults)."""
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    params.update(parameters)
    definitions, done = template.get("Conditions", {}), {}

    def value(x):
        return params[x["Ref"]] if isinstance(x, dict) and "Ref" in x else str(x)

    def holds(x):
        (fn, args), = x.items()
        if fn == "Condition":
            return condition(args)
        if fn == "Fn::Equals":
            return value(args[0]) == value(args[1])
        if fn == "Fn::Not":
            return not holds(args[0])
        if fn == "Fn::And":
            return all(holds(a) for a in args)
        if fn == "Fn::Or":
            return any(holds(a) for a in args)
        raise ValueError(f"condition function {fn}")

    def condition(name):
        if name not in done:
            done[name] = holds(definitions[name])
        return done[name]

    return {name: condition(name) for name in definitions}


def _deployed(template, parameters):
    """The logical ids a stack creates with these parameter values."""
    c = _conditions(template, parameters)
    return {name for name, res in template["Resources"].items() if c.get(res.get("Condition"), True)}


def _live_refs(value, c):
    """The logical ids a value refers to once each `Fn::If` takes its branch."""
    if isinstance(value, list):
        return set().union(*(_live_refs(v, c) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    if "Fn::If" in value:
        name, yes, no = value["Fn::If"]
        return _live_refs(yes if c[name] else no, c)
    if "Fn::Sub" in value and isinstance(value["Fn::Sub"], list):
        return cfn.sub_targets({"Fn::Sub": value["Fn::Sub"][0]}) | _live_refs(value["Fn::Sub"][1], c)
    if "Ref" in value or "Fn::GetAtt" in value or "Fn::Sub" in value:
        return cfn.sub_targets(value)
    return set().union(*(_live_refs(v, c) for v in value.values())) if value else set()


def check_conditional_references(template, code):
    """With every combination of the optional parameters, nothing deployed (nor
    an output) refers to something that is not: an optional part is either
    wholly there or wholly absent."""
    problems = []
    for parameters in _parameter_sets():
        c = _conditions(template, parameters)
        deployed = _deployed(template, parameters)
        where = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
        items = [(name, template["Resources"][name]) for name in sorted(deployed)]
        items += [
            (f"output {name}", out) for name, out in template.get("Outputs", {}).items()
            if c.get(out.get("Condition"), True)
        ]
        for name, item in items:
            body = {k: v for k, v in item.items() if k != "Condition"}
            for target in sorted(_live_refs(body, c)):
                if target in template["Resources"] and target not in deployed:
                    problems.append(f"{name} refers to {target}, which {where} does not create")
    return problems


def check_dashboard(template, code):
    bodies = [
        json.dumps(d.get("Properties", {}).get("DashboardBody"))
        for d in cfn.resources(template, "AWS::CloudWatch::Dashboard").values()
    ]
    if not bodies:
        return ["no AWS::CloudWatch::Dashboard"]
    return [
        f"dashboard does not show the EMF metric {m}"
        for m in sorted(code.metrics)
        if not any(f'\\"{m}\\"' in b for b in bodies)
    ]


CHECKS = [
    check_functions,
    check_queues,
    check_event_sources,
    check_environment,
    check_iam,
    check_tables,
    check_alarms,
    check_event_bridge_ingress,
    check_conditional_references,
    check_dashboard,
]


def problems(template, code):
    """Every problem every check finds."""
    return [p for check in CHECKS for p in check(template, code)]


# ---------------------------------------------------------------- tests

class TemplateWiring(unittest.TestCase):
    """template.yaml as it is."""

    @classmethod
    def setUpClass(cls):
        cls.text = (ROOT / "template.yaml").read_text()
        cls.template = cfn.load(cls.text)
        cls.code = Code()

    def assertNoProblems(self, check):
        found = check(self.template, self.code)
        self.assertEqual(found, [], "\n" + "\n".join(found))

    def test_code_is_read_as_expected(self):
        # GIVEN the Rust sources THEN the parse finds what config.rs plainly says
        self.assertEqual(len(self.code.binaries), 6)
        self.assertEqual(self.code.kind("reconcile"), "reconcile")
        self.assertEqual(len(self.code.routed_types), 55)
        self.assertIn("account.external_account.deleted", self.code.routed_types)
        self.assertEqual(self.code.processors, {"fulfill", "subscription", "dispute", "payout"})
        self.assertLessEqual({"LEDGER_TABLE", "FULFILL_QUEUE_URL", "PAYOUT_QUEUE_URL"}, self.code.receive_requires)
        self.assertIn("STRIPE_WEBHOOK_SECRET_ARN", self.code.receive_reads)
        self.assertIn("WEBHOOK_LIVEMODE", self.code.receive_reads)
        self.assertEqual(self.code.processor_requires, {"STATE_TABLE", "LEDGER_TABLE"})
        self.assertNotIn("STATE_TABLE", self.code.receive_reads)
        self.assertIn("InvalidSignature", self.code.metrics)

    def test_every_function_builds_a_real_arm64_binary(self):
        self.assertNoProblems(check_functions)

    def test_every_queue_has_a_dead_letter_queue_and_room_to_retry(self):
        self.assertNoProblems(check_queues)

    def test_every_event_source_reports_partial_failures_within_limits(self):
        self.assertNoProblems(check_event_sources)

    def test_environment_is_exactly_what_the_binaries_read(self):
        self.assertNoProblems(check_environment)

    def test_iam_names_only_what_each_function_uses(self):
        self.assertNoProblems(check_iam)

    def test_tables_have_the_shared_key_and_ttl(self):
        self.assertNoProblems(check_tables)

    def test_dead_letters_errors_and_bad_signatures_raise_alarms(self):
        self.assertNoProblems(check_alarms)

    def test_dashboard_shows_every_emf_metric(self):
        self.assertNoProblems(check_dashboard)

    def test_stripe_event_bus_rule_queue_and_receive_are_one_chain(self):
        self.assertNoProblems(check_event_bridge_ingress)

    def test_optional_parts_are_wholly_there_or_wholly_absent(self):
        self.assertNoProblems(check_conditional_references)

    def test_outputs_give_a_webhook_url_per_provider(self):
        outputs = json.dumps(self.template.get("Outputs", {}))
        for provider in ("stripe", "standard"):
            self.assertIn(f"/webhooks/{provider}", outputs)


class CheckerCatchesMistakes(unittest.TestCase):
    """Each check fails on a template that is wrong in the way it guards against."""

    @classmethod
    def setUpClass(cls):
        cls.text = (ROOT / "template.yaml").read_text()
        cls.code = Code()

    def found(self, template):
        return "\n".join(problems(template, self.code))

    def mutated(self, old, new, count=1):
        self.assertIn(old, self.text)
        return cfn.load(self.text.replace(old, new, count))

    def template(self):
        return copy.deepcopy(cfn.load(self.text))

    def test_misspelled_report_batch_item_failures(self):
        found = self.found(self.mutated("[ReportBatchItemFailures]", "[ReportBatchItemFailure]"))
        self.assertIn("FunctionResponseTypes", found)

    def test_batch_size_beyond_sqs_limit(self):
        t = self.template()
        t["Resources"]["FulfillFunction"]["Properties"]["Events"]["Queue"]["Properties"]["BatchSize"] = 20000
        self.assertIn("BatchSize 20000 is outside", self.found(t))

    def test_batch_size_above_10_without_window(self):
        t = self.template()
        t["Parameters"]["BatchSize"]["Default"] = 50
        self.assertIn("needs MaximumBatchingWindowInSeconds", self.found(t))

    def test_visibility_shorter_than_timeout(self):
        t = self.template()
        t["Resources"]["DisputeQueue"]["Properties"]["VisibilityTimeout"] = 20
        self.assertIn("DisputeQueue: VisibilityTimeout 20 is less than 6 x DisputeFunction", self.found(t))

    def test_longer_global_timeout_outgrows_visibility(self):
        t = self.template()
        t["Globals"]["Function"]["Timeout"] = 60
        self.assertIn("VisibilityTimeout 180 is less than 6 x FulfillFunction's Timeout 60", self.found(t))

    def test_unknown_architecture_under_globals(self):
        found = self.found(self.mutated("Architectures: [arm64]", "Architectures: [arm65]"))
        for fn in ("ReceiveFunction", "FulfillFunction", "PayoutFunction"):
            self.assertIn(f"{fn}: Architectures is ['arm65']", found)

    def test_queue_without_dead_letter_queue(self):
        t = self.template()
        del t["Resources"]["PayoutQueue"]["Properties"]["RedrivePolicy"]
        self.assertIn("PayoutQueue: no RedrivePolicy", self.found(t))

    def test_binary_that_does_not_exist(self):
        t = self.template()
        t["Resources"]["DisputeFunction"]["Metadata"]["BuildProperties"]["Binary"] = "disputes"
        self.assertIn("'disputes' is no binary", self.found(t))

    def test_environment_variable_nothing_reads(self):
        t = self.template()
        t["Resources"]["FulfillFunction"]["Properties"]["Environment"]["Variables"]["FULFILL_QUEUE_URL"] = "x"
        self.assertIn("FulfillFunction: environment sets FULFILL_QUEUE_URL, which nothing in fulfill reads", self.found(t))

    def test_missing_required_variable(self):
        t = self.template()
        del t["Resources"]["PayoutFunction"]["Properties"]["Environment"]["Variables"]["STATE_TABLE"]
        self.assertIn("PayoutFunction: environment lacks STATE_TABLE", self.found(t))

    def test_secret_in_environment(self):
        t = self.template()
        t["Resources"]["ReceiveFunction"]["Properties"]["Environment"]["Variables"]["STRIPE_WEBHOOK_SECRET"] = "whsec_x"
        self.assertIn("STRIPE_WEBHOOK_SECRET puts a secret in the environment", self.found(t))

    def test_queue_urls_crossed(self):
        t = self.template()
        env = t["Resources"]["ReceiveFunction"]["Properties"]["Environment"]["Variables"]
        env["FULFILL_QUEUE_URL"], env["DISPUTE_QUEUE_URL"] = env["DISPUTE_QUEUE_URL"], env["FULFILL_QUEUE_URL"]
        self.assertIn("FULFILL_QUEUE_URL does not Ref the queue the fulfill function consumes", self.found(t))

    def test_receive_granted_the_state_table(self):
        t = self.template()
        statements = t["Resources"]["ReceiveRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements.append({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": {"Fn::GetAtt": ["StateTable", "Arn"]}})
        self.assertIn("on StateTable, which receive does not use", self.found(t))

    def test_processor_granted_another_processors_queue(self):
        t = self.template()
        statements = t["Resources"]["FulfillRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements[1]["Resource"] = [statements[1]["Resource"], {"Fn::GetAtt": ["PayoutQueue", "Arn"]}]
        self.assertIn("on PayoutQueue, which fulfill does not use", self.found(t))

    def test_wildcard_resource(self):
        t = self.template()
        statements = t["Resources"]["PayoutRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements.append({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"})
        self.assertIn("resource '*' is not a resource of this stack", self.found(t))

    def test_processor_queue_with_default_retention(self):
        t = self.template()
        del t["Resources"]["PayoutQueue"]["Properties"]["MessageRetentionPeriod"]
        self.assertIn("PayoutQueue: a processor queue keeps messages 14 days", self.found(t))

    def test_processor_queue_without_age_alarm(self):
        t = self.template()
        del t["Resources"]["DisputeQueueAgeAlarm"]
        self.assertIn("DisputeQueue: no alarm on ApproximateAgeOfOldestMessage", self.found(t))

    def test_processor_putting_effects_on_any_bus(self):
        t = self.template()
        statements = t["Resources"]["DisputeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        put = next(b for s in statements for b in _if_branches(s) if b.get("Sid") == "PutEffects")
        put["Resource"] = "*"
        self.assertIn("resource '*' is not a resource of this stack", self.found(t))

    def test_processor_that_cannot_put_effects_on_its_bus(self):
        t = self.template()
        statements = t["Resources"]["DisputeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements[:] = [s for s in statements if not (isinstance(s, dict) and "Fn::If" in s)]
        self.assertIn("DisputeFunction: role lacks ['events:PutEvents'] on EffectsBus", self.found(t))

    def test_processor_writing_the_ledger(self):
        t = self.template()
        statements = t["Resources"]["SubscriptionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        bodies = next(s for s in statements if s.get("Sid") == "ReadStoredBodies")
        bodies["Action"] = ["dynamodb:GetItem", "dynamodb:PutItem"]
        self.assertIn("['dynamodb:PutItem'] on LedgerTable, more than subscription needs", self.found(t))

    def test_processor_that_cannot_poll_its_queue(self):
        t = self.template()
        statements = t["Resources"]["DisputeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        del statements[1]
        self.assertIn("DisputeFunction: role lacks", self.found(t))

    def test_dead_letter_queue_without_alarm(self):
        t = self.template()
        del t["Resources"]["SubscriptionDeadLetterAlarm"]
        self.assertIn("SubscriptionDeadLetterQueue: no alarm", self.found(t))

    def ingress_statement(self, t):
        return t["Resources"]["IngressQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]

    def test_stripe_rule_missing_a_routed_type(self):
        t = self.template()
        t["Resources"]["StripeEventRule"]["Properties"]["EventPattern"]["detail-type"].remove("invoice.paid")
        self.assertIn("StripeEventRule: detail-type lacks routed types ['invoice.paid']", self.found(t))

    def test_stripe_rule_matching_an_unrouted_type(self):
        t = self.template()
        t["Resources"]["StripeEventRule"]["Properties"]["EventPattern"]["detail-type"].append("customer.created")
        self.assertIn("['customer.created'], which shared/src/route.rs ROUTES does not route", self.found(t))

    def test_ingress_queue_policy_without_source_arn(self):
        t = self.template()
        del self.ingress_statement(t)["Condition"]
        self.assertIn("IngressQueue: queue policy must limit aws:SourceArn", self.found(t))

    def test_ingress_queue_policy_for_anyone(self):
        t = self.template()
        self.ingress_statement(t)["Principal"] = "*"
        self.assertIn("IngressQueue: queue policy allows '*', not only EventBridge", self.found(t))

    def test_stripe_rule_target_without_dead_letter_queue(self):
        t = self.template()
        del t["Resources"]["StripeEventRule"]["Properties"]["Targets"][0]["DeadLetterConfig"]
        self.assertIn("StripeEventRule: target 'ingress' needs a DeadLetterConfig queue", self.found(t))

    def test_ingress_mapping_without_partial_failures(self):
        t = self.template()
        del t["Resources"]["ReceiveIngress"]["Properties"]["FunctionResponseTypes"]
        self.assertIn("ReceiveIngress: FunctionResponseTypes is None", self.found(t))

    def test_receive_that_cannot_drain_the_ingress_queue(self):
        t = self.template()
        statements = t["Resources"]["ReceiveRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements[:] = [s for s in statements if not ("Fn::If" in s and s["Fn::If"][0] == "HasStripeEventSource")]
        self.assertIn("ReceiveFunction: role lacks ['sqs:DeleteMessage', 'sqs:GetQueueAttributes', "
                      "'sqs:ReceiveMessage'] on IngressQueue", self.found(t))

    def test_ingress_delivery_dead_letter_queue_without_alarm(self):
        t = self.template()
        del t["Resources"]["IngressDeliveryDeadLetterAlarm"]
        self.assertIn("IngressDeliveryDeadLetterQueue: no alarm", self.found(t))

    def test_reconcile_granted_the_webhook_secret(self):
        t = self.template()
        statements = t["Resources"]["ReconcileRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements[-1]["Resource"] = [statements[-1]["Resource"], {"Ref": "StripeWebhookSecret"}]
        self.assertIn("ReconcileFunction: role grants ['secretsmanager:GetSecretValue'] on StripeWebhookSecret, "
                      "which reconcile does not use", self.found(t))

    def test_reconcile_that_cannot_enqueue(self):
        t = self.template()
        statements = t["Resources"]["ReconcileRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements[:] = [s for s in statements if s.get("Sid") != "Enqueue"]
        self.assertIn("ReconcileFunction: role lacks ['sqs:SendMessage'] on FulfillQueue", self.found(t))

    def test_reconcile_given_a_webhook_secret(self):
        t = self.template()
        env = t["Resources"]["ReconcileFunction"]["Properties"]["Environment"]["Variables"]
        env["STRIPE_WEBHOOK_SECRET_ARN"] = {"Ref": "StripeWebhookSecret"}
        self.assertIn("STRIPE_WEBHOOK_SECRET_ARN: reconcile verifies no signature", self.found(t))

    def test_reconcile_lease_shorter_than_one_events_budget(self):
        t = self.template()
        t["Resources"]["ReconcileFunction"]["Properties"]["Environment"]["Variables"]["LEDGER_LEASE_SECONDS"] = "15"
        self.assertIn("ReconcileFunction: LEDGER_LEASE_SECONDS 15 must be at least twice one event's budget 10",
                      self.found(t))

    def test_reconcile_without_recovered_alarm(self):
        t = self.template()
        del t["Resources"]["ReconcileRecoveredAlarm"]
        self.assertIn("ReconcileFunction: no alarm on payhook Recovered", self.found(t))

    def test_optional_resource_without_its_condition(self):
        t = self.template()
        del t["Resources"]["ReconcileErrorsAlarm"]["Condition"]
        self.assertIn("ReconcileErrorsAlarm refers to ReconcileFunction, which StripeApiKeyValue=''", self.found(t))

    def test_unguarded_reference_to_the_api_key(self):
        t = self.template()
        t["Resources"]["ReceiveFunction"]["Properties"]["Environment"]["Variables"]["STRIPE_API_KEY_ARN"] = {"Ref": "StripeApiKey"}
        self.assertIn("ReceiveFunction refers to StripeApiKey", self.found(t))

    def test_state_table_without_point_in_time_recovery(self):
        t = self.template()
        del t["Resources"]["StateTable"]["Properties"]["PointInTimeRecoverySpecification"]
        self.assertIn("StateTable: the state table needs point-in-time recovery", self.found(t))


RECONCILE_RESOURCES = {
    "StripeApiKey", "ReconcileFunction", "ReconcileRole", "ReconcileLogGroup",
    "ReconcileTimer", "ReconcileTimerRole", "ReconcileRecoveredAlarm", "ReconcileErrorsAlarm",
}
INGRESS_RESOURCES = {
    "StripeEventBus", "StripeEventRule", "IngressQueue", "IngressDeadLetterQueue",
    "IngressDeliveryDeadLetterQueue", "IngressQueuePolicy", "ReceiveIngress",
    "IngressQueueAgeAlarm", "IngressDeadLetterAlarm", "IngressDeliveryDeadLetterAlarm",
}
KEY = {"StripeApiKeyValue": "rk_test_x"}
SOURCE = {"StripeEventSourceName": "aws.partner/stripe.com/ed_test_61RcExample"}


class OptionalWaysIn(unittest.TestCase):
    """Issue 15: reconcile (with an API key) and Stripe's EventBridge destination
    (with a partner event source), each created only when configured."""

    @classmethod
    def setUpClass(cls):
        cls.template = cfn.load_file()
        cls.resources = cls.template["Resources"]

    def env(self, fn):
        return cfn.function_properties(self.template, fn)["Environment"]["Variables"]

    def statements(self, role):
        return [
            s for p in self.resources[role]["Properties"]["Policies"]
            for s in _as_list(p["PolicyDocument"]["Statement"])
        ]

    def test_defaults_create_neither(self):
        # GIVEN no API key and no event source THEN none of their resources exist
        deployed = _deployed(self.template, {})
        self.assertEqual(deployed & (RECONCILE_RESOURCES | INGRESS_RESOURCES), set())
        self.assertIn("ReceiveFunction", deployed)

    def test_api_key_creates_reconcile_and_its_schedule(self):
        self.assertLessEqual(RECONCILE_RESOURCES, _deployed(self.template, KEY))
        self.assertEqual(_deployed(self.template, KEY) & INGRESS_RESOURCES, set())

    def test_schedule_off_keeps_the_function_without_a_timer(self):
        deployed = _deployed(self.template, {**KEY, "ReconcileSchedule": "off"})
        self.assertIn("ReconcileFunction", deployed)
        self.assertEqual(deployed & {"ReconcileTimer", "ReconcileTimerRole"}, set())

    def test_event_source_creates_the_ingress_chain(self):
        deployed = _deployed(self.template, SOURCE)
        self.assertLessEqual(INGRESS_RESOURCES, deployed)
        self.assertEqual(deployed & RECONCILE_RESOURCES, set())

    def test_every_optional_resource_is_one_of_the_two(self):
        everything = _deployed(self.template, {**KEY, **SOURCE})
        optional = everything - _deployed(self.template, {})
        self.assertEqual(optional, RECONCILE_RESOURCES | INGRESS_RESOURCES)

    def test_outputs_follow_their_resources(self):
        outputs = self.template["Outputs"]
        for name in ("ReconcileFunctionName", "StripeApiKeyArn"):
            self.assertEqual(outputs[name]["Condition"], "HasStripeApiKey")
        for name in ("StripeEventBusArn", "IngressQueueUrl"):
            self.assertEqual(outputs[name]["Condition"], "HasStripeEventSource")
        self.assertEqual(cfn.ref_target(outputs["IngressQueueUrl"]["Value"]), "IngressQueue")

    def test_schedule_invokes_reconcile_with_its_input(self):
        timer = self.resources["ReconcileTimer"]
        self.assertEqual(timer["Type"], "AWS::Scheduler::Schedule")
        self.assertEqual(timer["Condition"], "SchedulesReconcile")
        props = timer["Properties"]
        self.assertEqual(cfn.ref_target(props["ScheduleExpression"]), "ReconcileSchedule")
        target = props["Target"]
        self.assertEqual(target["Arn"], {"Fn::GetAtt": ["ReconcileFunction", "Arn"]})
        self.assertEqual(json.loads(target["Input"]), {"reconcile": {}})
        self.assertEqual(target["RoleArn"], {"Fn::GetAtt": ["ReconcileTimerRole", "Arn"]})
        # The sweeps' habit: no retries, the next run covers the window again.
        self.assertEqual(target["RetryPolicy"], {"MaximumRetryAttempts": 0})

    def test_schedule_role_may_only_invoke_reconcile(self):
        role = self.resources["ReconcileTimerRole"]["Properties"]
        principals = [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]]
        self.assertEqual(principals, [{"Service": "scheduler.amazonaws.com"}])
        grants = [(s["Effect"], _as_list(s["Action"]), s["Resource"]) for s in self.statements("ReconcileTimerRole")]
        self.assertEqual(grants, [("Allow", ["lambda:InvokeFunction"], {"Fn::GetAtt": ["ReconcileFunction", "Arn"]})])

    def test_reconcile_role_is_receive_claim_path_and_the_api_key(self):
        # Exact actions per resource (check_iam proves "no more than it uses").
        grants, problems = _grants(self.template, "ReconcileFunction", self.statements("ReconcileRole"))
        self.assertEqual(problems, [])
        queue = {"sqs:SendMessage"}
        self.assertEqual(grants, {
            "ReconcileLogGroup": LOGS,
            "LedgerTable": RECEIVE_LEDGER,
            "FulfillQueue": queue, "SubscriptionQueue": queue, "DisputeQueue": queue, "PayoutQueue": queue,
            "StripeApiKey": READ_SECRET,
        })

    def test_receive_role_adds_the_ingress_queue_and_api_key_only_when_they_exist(self):
        statements = self.resources["ReceiveRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        guarded = {
            s["Fn::If"][0]: s["Fn::If"][1] for s in statements if isinstance(s, dict) and "Fn::If" in s
        }
        self.assertEqual(set(guarded), {"HasStripeApiKey", "HasStripeEventSource"})
        self.assertEqual(guarded["HasStripeApiKey"]["Resource"], {"Ref": "StripeApiKey"})
        self.assertEqual(_as_list(guarded["HasStripeApiKey"]["Action"]), ["secretsmanager:GetSecretValue"])
        self.assertEqual(guarded["HasStripeEventSource"]["Resource"], {"Fn::GetAtt": ["IngressQueue", "Arn"]})
        self.assertEqual(set(guarded["HasStripeEventSource"]["Action"]), DRAIN_INGRESS_MAY)

    def test_reconcile_runs_like_receive_without_webhook_secrets(self):
        receive = cfn.function_properties(self.template, "ReceiveFunction")
        reconcile = cfn.function_properties(self.template, "ReconcileFunction")
        self.assertEqual(self.resources["ReconcileFunction"]["Condition"], "HasStripeApiKey")
        self.assertEqual(reconcile["Timeout"], 300)
        self.assertEqual(reconcile["MemorySize"], receive["MemorySize"])
        env, receive_env = self.env("ReconcileFunction"), self.env("ReceiveFunction")
        shared = {
            "LEDGER_TABLE", "FULFILL_QUEUE_URL", "SUBSCRIPTION_QUEUE_URL", "DISPUTE_QUEUE_URL",
            "PAYOUT_QUEUE_URL", "WEBHOOK_LIVEMODE", "HANDLED_EVENT_TYPES", "LEDGER_TTL_DAYS", "STRIPE_API_BASE",
        }
        for name in sorted(shared):
            self.assertEqual(env[name], receive_env[name], name)
        self.assertEqual(set(env) & {"STRIPE_WEBHOOK_SECRET_ARN", "STANDARD_WEBHOOK_SECRET_ARN",
                                     "WEBHOOK_TOLERANCE_SECONDS"}, set())
        self.assertEqual(env["STRIPE_API_KEY_ARN"], {"Ref": "StripeApiKey"})
        self.assertEqual(env["RECONCILE_OVERLAP_SECONDS"], "300")
        self.assertEqual(env["RECONCILE_LOOKBACK_SECONDS"], "259200")
        # The first run's window must lie inside the ledger's memory of events,
        # or an event a webhook brought would be claimed again.
        self.assertLess(int(env["RECONCILE_LOOKBACK_SECONDS"]), int(env["LEDGER_TTL_DAYS"]) * 86400)

    def test_receive_knows_the_source_and_the_key(self):
        env = self.env("ReceiveFunction")
        self.assertEqual(env["STRIPE_EVENT_SOURCE"], {"Ref": "StripeEventSourceName"})
        self.assertEqual(env["STRIPE_API_KEY_ARN"], {"Fn::If": ["HasStripeApiKey", {"Ref": "StripeApiKey"}, ""]})
        self.assertEqual(env["STRIPE_API_BASE"], {"Ref": "StripeApiBase"})

    def test_receive_drains_the_ingress_queue_in_batches(self):
        mapping = self.resources["ReceiveIngress"]
        self.assertEqual(mapping["Condition"], "HasStripeEventSource")
        props = mapping["Properties"]
        self.assertEqual(cfn.ref_target(props["FunctionName"]), "ReceiveFunction")
        self.assertEqual(props["EventSourceArn"], {"Fn::GetAtt": ["IngressQueue", "Arn"]})
        self.assertEqual(props["BatchSize"], 10)
        self.assertEqual(props["FunctionResponseTypes"], PARTIAL_FAILURES)
        queue = self.resources["IngressQueue"]["Properties"]
        self.assertEqual(_dead_letter_target(self.resources["IngressQueue"]), "IngressDeadLetterQueue")
        self.assertGreaterEqual(queue["VisibilityTimeout"], 6 * cfn.function_properties(self.template, "ReceiveFunction")["Timeout"])

    def test_stripe_rule_sends_to_the_ingress_queue_only_from_its_arn(self):
        rule = self.resources["StripeEventRule"]["Properties"]
        self.assertEqual(cfn.ref_target(rule["EventBusName"]), "StripeEventBus")
        (target,) = rule["Targets"]
        self.assertEqual(target["Arn"], {"Fn::GetAtt": ["IngressQueue", "Arn"]})
        self.assertEqual(target["DeadLetterConfig"]["Arn"], {"Fn::GetAtt": ["IngressDeliveryDeadLetterQueue", "Arn"]})
        (statement,) = _queue_policy_statements(self.template, "IngressQueue")
        self.assertEqual(statement["Condition"], {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["StripeEventRule", "Arn"]}}})
        bus = self.resources["StripeEventBus"]["Properties"]
        self.assertEqual(bus, {"Name": {"Ref": "StripeEventSourceName"}, "EventSourceName": {"Ref": "StripeEventSourceName"}})

    def test_parameters_accept_what_they_should(self):
        params = self.template["Parameters"]

        def accepts(name, value):
            return re.fullmatch(params[name]["AllowedPattern"], value) is not None

        for ok in ("rate(15 minutes)", "off", "cron(0/15 * * * ? *)"):
            self.assertTrue(accepts("ReconcileSchedule", ok), ok)
        for bad in ("", "15 minutes", "Off"):
            self.assertFalse(accepts("ReconcileSchedule", bad), bad)
        self.assertTrue(accepts("ReconcileSchedule", params["ReconcileSchedule"]["Default"]))
        for ok in ("", "aws.partner/stripe.com/ed_test_61RcExample", "aws.partner/stripe.com/ed_61RcLive"):
            self.assertTrue(accepts("StripeEventSourceName", ok), ok)
        for bad in ("ed_61Rc", "aws.partner/example.com/x", "aws.partner/stripe.com/"):
            self.assertFalse(accepts("StripeEventSourceName", bad), bad)
        self.assertTrue(accepts("StripeApiBase", "https://api.stripe.com"))
        self.assertFalse(accepts("StripeApiBase", "https://api.stripe.com/"))
        key = params["StripeApiKeyValue"]
        self.assertIs(key["NoEcho"], True)
        self.assertEqual(key["Default"], "")
        self.assertIn("restricted key with read access to Events", " ".join(key["Description"].split()))


class LocalResourcesMatchTemplate(unittest.TestCase):
    """scripts/local_aws.py creates, on moto, the tables and queues the template defines."""

    @classmethod
    def setUpClass(cls):
        path = ROOT / "scripts/local_aws.py"
        spec = importlib.util.spec_from_file_location("local_aws", path)
        cls.local = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cls.local)
        cls.template = cfn.load_file()

    def _name(self, props, key):
        """A `${AWS::StackName}-suffix` name as its suffix."""
        value = props.get(key, {})
        text = value.get("Fn::Sub") if isinstance(value, dict) else value
        self.assertIsInstance(text, str, f"{key} should be a !Sub of ${{AWS::StackName}}-…")
        self.assertTrue(text.startswith("${AWS::StackName}-"), text)
        return text[len("${AWS::StackName}-"):]

    def test_same_tables(self):
        tables = cfn.resources(self.template, "AWS::DynamoDB::Table")
        local = self.local.RESOURCES["tables"]
        self.assertEqual(set(local), set(tables))
        for logical_id, spec in local.items():
            props = tables[logical_id]["Properties"]
            self.assertEqual(spec["name"], self._name(props, "TableName"))
            key = spec["partition_key"]
            self.assertEqual(props["KeySchema"], [{"AttributeName": key["name"], "KeyType": "HASH"}])
            self.assertIn({"AttributeName": key["name"], "AttributeType": key["type"]}, props["AttributeDefinitions"])
            self.assertEqual(props["TimeToLiveSpecification"], {"AttributeName": spec["ttl_attribute"], "Enabled": True})
            self.assertEqual(props["BillingMode"], spec["billing_mode"])
            self.assertEqual(props.get("GlobalSecondaryIndexes", []), spec.get("indexes", []))
            attributes = {key["name"]: key["type"], **spec.get("index_attributes", {})}
            self.assertEqual(
                {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}, attributes
            )

    def test_same_queues_and_dead_letter_queues(self):
        # The EventBridge ingress queues exist only with StripeEventSourceName,
        # which local runs have no use for.
        queues = {
            k: v for k, v in cfn.resources(self.template, "AWS::SQS::Queue").items() if "Condition" not in v
        }
        local = self.local.RESOURCES["queues"]
        dead = {spec["dead_letter"]["logical_id"] for spec in local.values()}
        self.assertEqual(set(local) | dead, set(queues))
        for logical_id, spec in local.items():
            props = queues[logical_id]["Properties"]
            self.assertEqual(spec["name"], self._name(props, "QueueName"))
            self.assertEqual(spec["visibility_timeout"], props.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY))
            self.assertEqual(spec["retention_seconds"], props.get("MessageRetentionPeriod", SQS_DEFAULT_RETENTION))
            dl = spec["dead_letter"]
            self.assertEqual(_dead_letter_target(queues[logical_id]), dl["logical_id"])
            self.assertEqual(int(props["RedrivePolicy"]["maxReceiveCount"]), dl["max_receive_count"])
            dl_props = queues[dl["logical_id"]]["Properties"]
            self.assertEqual(dl["name"], self._name(dl_props, "QueueName"))
            self.assertEqual(dl["retention_seconds"], dl_props.get("MessageRetentionPeriod", SQS_DEFAULT_RETENTION))

    def test_environment_names_match(self):
        # local_aws.py prints the exports the functions read: the same names as the template's.
        receive_env = cfn.function_properties(self.template, "ReceiveFunction")["Environment"]["Variables"]
        for logical_id, spec in self.local.RESOURCES["queues"].items():
            self.assertEqual(cfn.ref_target(receive_env[spec["env"]]), logical_id)
        for logical_id, spec in self.local.RESOURCES["tables"].items():
            users = [
                fn for fn in _functions(self.template)
                if cfn.ref_target(cfn.function_properties(self.template, fn)["Environment"]["Variables"].get(spec["env"]))
                == logical_id
            ]
            self.assertTrue(users, f"no function reads {spec['env']} as {logical_id}")


if __name__ == "__main__":
    unittest.main()
