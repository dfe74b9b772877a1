#!/usr/bin/env python3
"""Least-privilege and no-secrets checks on a Terraform plan.

Usage: terraform show -json plan.out > plan.json && policy_check.py plan.json

Fails (exit 1) when, in any resource the plan would leave in place:
  - an Allow statement grants Action "*" or "service:*", or uses NotAction/NotResource;
  - an Allow statement has Resource "*" and an action not listed in RESOURCE_STAR_OK;
  - a statement grants logs:CreateLogGroup (Terraform creates every log group);
  - an identity policy allows an ECR action other than ecr:GetAuthorizationToken on
    anything but whole repository ARNs (no wildcard in the name), or allows an ECR action
    that writes (push, delete, repository settings; also through a wildcard such as
    ecr:Put*): roles of the plan only pull, images are pushed by whoever deploys;
  - a Lambda or ECS container environment value looks like a secret;
  - an identity (non key) policy allows kms:Decrypt or kms:ReEncryptFrom (also through a
    wildcard such as kms:De*) without a kms:ViaService condition (StringEquals/StringLike,
    no IfExists): decrypting must go through the service holding the data;
  - a KMS key policy allows the CloudWatch Logs principal (logs.<region>.amazonaws.com)
    without a kms:EncryptionContext:aws:logs:arn condition, or with one that names any
    log group ("...:log-group:*") instead of the project's;
  - a log group is encrypted with a key of the plan whose policy does not let CloudWatch
    Logs use it for that log group (AWS would refuse to create it; moto does not check).
Run it on a plan made after apply: on a first plan policies are still unknown,
and an unknown policy is reported as a failure rather than passed unseen.
Stdlib only.
"""
import fnmatch
import json
import re
import sys

# Actions that AWS authorizes only against Resource "*": no ARN can be known.
RESOURCE_STAR_OK = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
    "ecr:GetAuthorizationToken": "the registry login token is account-wide, not per repository",
    "ec2:CreateNetworkInterface": "Lambda VPC attachment: ENIs do not exist before Lambda makes them",
    "ec2:DescribeNetworkInterfaces": "Describe* calls take no resource ARN",
    "ec2:DeleteNetworkInterface": "Lambda VPC attachment: the ENI ids are Lambda's, not known in advance",
    "ec2:AssignPrivateIpAddresses": "Lambda VPC attachment: the ENI ids are not known in advance",
    "ec2:UnassignPrivateIpAddresses": "Lambda VPC attachment: the ENI ids are not known in advance",
}

# Key policies are resource policies of one key: Resource "*" there means "this key".
KEY_POLICY_TYPES = {"aws_kms_key"}
# The account-root statement of a key policy is AWS's default ("kms:*" for
# arn:...:root): it hands the key to IAM policies; without it the key can lock itself out.
ROOT_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:root$")

NEVER_GRANT = {"logs:CreateLogGroup": "Terraform creates every log group, so no role needs to"}

# ECR: roles of the plan pull, on named repositories. Pushing and changing repositories is
# the deployer's (make image-push, terraform), never a role's.
ECR_REPOSITORY_ARN = re.compile(r"^arn:aws[a-z-]*:ecr:[a-z0-9-]+:\d{12}:repository/[a-z0-9][a-z0-9._/-]*$")
ECR_WRITE_ACTIONS = (
    "ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
    "ecr:BatchDeleteImage", "ecr:CreateRepository", "ecr:DeleteRepository", "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy", "ecr:PutLifecyclePolicy", "ecr:DeleteLifecyclePolicy",
    "ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration", "ecr:TagResource",
    "ecr:UntagResource", "ecr:ReplicateImage", "ecr:PutRegistryPolicy", "ecr:PutReplicationConfiguration",
)

SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.I)
SECRET_VALUE = [
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a URI with a password in it"),
    (re.compile(r"^[A-Za-z0-9+/=_-]{32,}$"), "a long random token (an API secret?)"),
]

POLICY_ATTRS = ("policy", "assume_role_policy")
# Resources whose "policy" is not an IAM policy document.
NOT_IAM_POLICY_TYPES = {"aws_ecr_lifecycle_policy"}

# KMS actions that turn ciphertext under the key into plaintext (ReEncryptFrom decrypts
# before re-encrypting): an identity policy may allow them only via a service.
DECRYPT_ACTIONS = ("kms:Decrypt", "kms:ReEncryptFrom")
VIA_SERVICE = "kms:viaservice"
VIA_SERVICE_OPERATORS = {"stringequals", "stringequalsignorecase", "stringlike"}
VIA_SERVICE_VALUE = re.compile(r"^[a-z0-9-]+\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")

LOGS_PRINCIPAL = re.compile(r"^logs(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$")
LOGS_CONTEXT = "kms:encryptioncontext:aws:logs:arn"
LOGS_CONTEXT_OPERATORS = {"arnequals", "arnlike", "stringequals", "stringlike"}
# arn:<partition>:logs:<region>:<account>:log-group:<name>; the name must not be only wildcards.
LOG_GROUP_ARN = re.compile(r"^arn:[^:]+:logs:[^:]*:[^:]*:log-group:(.*)$")


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements(doc):
    if isinstance(doc, str):
        doc = json.loads(doc)
    return as_list(doc.get("Statement", []))


SEEN = {"statements": 0, "environments": 0}


def action_matches(pattern, action):
    """IAM action matching: case-insensitive, '*' and '?' wildcards."""
    pattern = pattern.lower().replace("[", "[[]")
    return fnmatch.fnmatchcase(action.lower(), pattern)


def conditions(st, key):
    """(operator, values) of every condition of st on key (case-insensitive)."""
    found = []
    for op, kv in (st.get("Condition") or {}).items():
        for k, v in (kv or {}).items():
            if k.lower() == key:
                found.append((op, [str(x) for x in as_list(v)]))
    return found


def check_via_service(where, st, actions, errors):
    decrypts = sorted({d for a in actions for d in DECRYPT_ACTIONS if action_matches(a, d)})
    if not decrypts:
        return
    conds = conditions(st, VIA_SERVICE)
    if not conds:
        errors.append(f"{where}: allows {decrypts} without a kms:ViaService condition")
        return
    for op, values in conds:
        if op.lower() not in VIA_SERVICE_OPERATORS:
            errors.append(f"{where}: kms:ViaService under {op!r} also allows direct calls "
                          f"(use StringEquals)")
        bad = [v for v in values if not VIA_SERVICE_VALUE.match(v)]
        if bad or not values:
            errors.append(f"{where}: kms:ViaService values {bad or values} are not <service>.<region>.amazonaws.com")


def check_ecr(where, actions, resources, errors):
    """ECR in an identity policy: pulls on whole repository ARNs, no writes."""
    ecr = [a for a in actions if a.lower().startswith("ecr:")]
    writes = sorted({w for a in ecr for w in ECR_WRITE_ACTIONS if action_matches(a, w)})
    if writes:
        errors.append(f"{where}: grants ECR writes {writes} (roles of the plan only pull; "
                      f"images are pushed by the deployer)")
    scoped = [a for a in ecr if a not in RESOURCE_STAR_OK]
    if not scoped:
        return
    loose = [r for r in resources if r != "*" and not ECR_REPOSITORY_ARN.match(str(r))]
    if loose:
        errors.append(f"{where}: {scoped} on {loose}, not repository ARNs without wildcards")


def logs_principal(st):
    principal = st.get("Principal")
    if not isinstance(principal, dict):
        return False
    return any(LOGS_PRINCIPAL.match(str(p)) for p in as_list(principal.get("Service", [])))


def log_group_patterns(where, st, errors):
    """Checks a key policy's CloudWatch Logs statement. Returns the log-group ARN patterns it
    allows: "*" for any, else one list of values per condition (all must match, any value
    of a list may)."""
    conds = conditions(st, LOGS_CONTEXT)
    if not conds:
        errors.append(f"{where}: lets CloudWatch Logs use the key for any log group "
                      f"(no kms:EncryptionContext:aws:logs:arn condition)")
        return "*"
    patterns = []
    for op, values in conds:
        if op.lower() not in LOGS_CONTEXT_OPERATORS:
            errors.append(f"{where}: kms:EncryptionContext:aws:logs:arn under {op!r} does not limit the log groups")
            return "*"
        for v in values:
            m = LOG_GROUP_ARN.match(v)
            if not m or not m.group(1).strip("*?"):
                errors.append(f"{where}: kms:EncryptionContext:aws:logs:arn {v!r} is any log group "
                              f"of the account, not the project's")
        if not values:
            errors.append(f"{where}: kms:EncryptionContext:aws:logs:arn has no value")
        patterns.append(values)
    return patterns


def check_statement(where, rtype, st, errors, logs_patterns=None):
    SEEN["statements"] += 1
    if st.get("Effect", "Allow") != "Allow":
        return
    for k in ("NotAction", "NotResource"):
        if k in st:
            errors.append(f"{where}: Allow with {k} grants everything else")
    actions = as_list(st.get("Action", []))
    resources = as_list(st.get("Resource", []))
    principal = st.get("Principal", {})
    root_key_admin = (
        rtype in KEY_POLICY_TYPES
        and isinstance(principal, dict)
        and all(ROOT_PRINCIPAL.match(p) for p in as_list(principal.get("AWS", [])))
        and principal.get("AWS")
    )
    for a in actions:
        if a == "*" or re.fullmatch(r"[A-Za-z0-9-]+:\*", a):
            if not (root_key_admin and a == "kms:*"):
                errors.append(f"{where}: grants Action {a!r}")
        for bad, why in NEVER_GRANT.items():
            if a.lower() == bad.lower():
                errors.append(f"{where}: grants {bad} ({why})")
    if "*" in resources and rtype not in KEY_POLICY_TYPES:
        unjustified = [a for a in actions if a not in RESOURCE_STAR_OK]
        if unjustified:
            errors.append(f"{where}: Resource '*' for {unjustified}")
    if rtype in KEY_POLICY_TYPES:
        if logs_principal(st):
            patterns = log_group_patterns(where, st, errors)
            if logs_patterns is not None:
                logs_patterns.append(patterns)
    else:
        check_via_service(where, st, actions, errors)
        check_ecr(where, actions, resources, errors)


def check_env(where, env, errors):
    SEEN["environments"] += 1
    for k, v in env.items():
        v = "" if v is None else str(v)
        if SECRET_KEY.search(k) and not v.startswith("arn:"):
            errors.append(f"{where}: {k} looks like a secret and its value is not an ARN")
        for pat, what in SECRET_VALUE:
            if not v.startswith("arn:") and pat.search(v):
                errors.append(f"{where}: {k} looks like {what}")


def check_resource(rc, errors, keys):
    rtype, addr = rc["type"], rc["address"]
    change = rc.get("change", {})
    if rc.get("mode") != "managed" or change.get("actions") == ["delete"]:
        return
    after = change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    logs_patterns = [] if rtype in KEY_POLICY_TYPES else None
    for attr in () if rtype in NOT_IAM_POLICY_TYPES else POLICY_ATTRS:
        if unknown.get(attr) is True:
            errors.append(f"{addr}.{attr}: unknown in this plan (plan after apply to check it)")
        elif after.get(attr):
            for i, st in enumerate(statements(after[attr])):
                check_statement(f"{addr}.{attr}[{i}]", rtype, st, errors, logs_patterns)
    if rtype in KEY_POLICY_TYPES and after.get("arn") and unknown.get("policy") is not True:
        keys[after["arn"]] = (addr, logs_patterns)
    for ip in after.get("inline_policy") or []:
        if ip.get("policy"):
            for i, st in enumerate(statements(ip["policy"])):
                check_statement(f"{addr}.inline_policy[{ip.get('name')}][{i}]", rtype, st, errors)
    if rtype == "aws_lambda_function":
        for env in after.get("environment") or []:
            check_env(f"{addr} environment", env.get("variables") or {}, errors)
        if any(unknown.get("environment") or []):
            errors.append(f"{addr}.environment: unknown in this plan (plan after apply to check it)")
    if rtype == "aws_ecs_task_definition":
        if unknown.get("container_definitions") is True:
            errors.append(f"{addr}.container_definitions: unknown in this plan")
        elif after.get("container_definitions"):
            for c in json.loads(after["container_definitions"]):
                env = {e["name"]: e.get("value") for e in c.get("environment") or []}
                check_env(f"{addr} container {c.get('name')} environment", env, errors)


def arn_allowed(arn, patterns):
    """Whether one statement's patterns (see log_group_patterns) allow the log group ARN."""
    if patterns == "*":
        return True
    return all(any(fnmatch.fnmatchcase(arn, v.replace("[", "[[]")) for v in values) for values in patterns)


def check_log_group_keys(changes, keys, errors):
    """Each log group encrypted with a key of the plan must be one its key policy lets
    CloudWatch Logs use the key for (ArnLike: '*' and '?' wildcards)."""
    for rc in changes:
        change = rc.get("change", {})
        if rc.get("type") != "aws_cloudwatch_log_group" or rc.get("mode") != "managed" \
                or change.get("actions") == ["delete"]:
            continue
        after = change.get("after") or {}
        key, arn = after.get("kms_key_id"), after.get("arn")
        if key not in keys or not arn:
            continue  # no key, a key outside the plan, or unknown before apply
        SEEN["log groups"] = SEEN.get("log groups", 0) + 1
        key_addr, statements_patterns = keys[key]
        if not any(arn_allowed(arn, pats) for pats in statements_patterns):
            errors.append(f"{rc['address']}: {key_addr}'s policy does not let CloudWatch Logs use the key "
                          f"for {arn} (add the log group's name to the key policy)")


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        plan = json.load(f)
    changes = plan.get("resource_changes") or []
    errors = []
    keys = {}
    for rc in changes:
        check_resource(rc, errors, keys)
    check_log_group_keys(changes, keys, errors)
    if not changes:
        errors.append("the plan has no resources: nothing was checked")
    for e in errors:
        print(f"policy_check: FAIL {e}")
    print(
        f"policy_check: {len(changes)} resources, {SEEN['statements']} policy statements, "
        f"{SEEN['environments']} environments, {SEEN.get('log groups', 0)} encrypted log groups "
        f"checked: {len(errors)} violations"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
