#!/usr/bin/env python3
"""Least-privilege and no-secrets checks on a Terraform plan.

Usage: terraform show -json plan.out > plan.json && policy_check.py plan.json

Fails (exit 1) when, in any resource the plan would leave in place:
  - an Allow statement grants Action "*" or "service:*", or uses NotAction/NotResource;
  - an Allow statement has Resource "*" and an action not listed in RESOURCE_STAR_OK;
  - a statement grants logs:CreateLogGroup (Terraform creates every log group);
  - a Lambda or ECS container environment value looks like a secret.
Run it on a plan made after apply: on a first plan policies are still unknown,
and an unknown policy is reported as a failure rather than passed unseen.
Stdlib only.
"""
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

SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.I)
SECRET_VALUE = [
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a URI with a password in it"),
    (re.compile(r"^[A-Za-z0-9+/=_-]{32,}$"), "a long random token (an API secret?)"),
]

POLICY_ATTRS = ("policy", "assume_role_policy")


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements(doc):
    if isinstance(doc, str):
        doc = json.loads(doc)
    return as_list(doc.get("Statement", []))


SEEN = {"statements": 0, "environments": 0}


def check_statement(where, rtype, st, errors):
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


def check_env(where, env, errors):
    SEEN["environments"] += 1
    for k, v in env.items():
        v = "" if v is None else str(v)
        if SECRET_KEY.search(k) and not v.startswith("arn:"):
            errors.append(f"{where}: {k} looks like a secret and its value is not an ARN")
        for pat, what in SECRET_VALUE:
            if not v.startswith("arn:") and pat.search(v):
                errors.append(f"{where}: {k} looks like {what}")


def check_resource(rc, errors):
    rtype, addr = rc["type"], rc["address"]
    change = rc.get("change", {})
    if rc.get("mode") != "managed" or change.get("actions") == ["delete"]:
        return
    after = change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    for attr in POLICY_ATTRS:
        if unknown.get(attr) is True:
            errors.append(f"{addr}.{attr}: unknown in this plan (plan after apply to check it)")
        elif after.get(attr):
            for i, st in enumerate(statements(after[attr])):
                check_statement(f"{addr}.{attr}[{i}]", rtype, st, errors)
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


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        plan = json.load(f)
    changes = plan.get("resource_changes") or []
    errors = []
    for rc in changes:
        check_resource(rc, errors)
    if not changes:
        errors.append("the plan has no resources: nothing was checked")
    for e in errors:
        print(f"policy_check: FAIL {e}")
    print(
        f"policy_check: {len(changes)} resources, {SEEN['statements']} policy statements, "
        f"{SEEN['environments']} environments checked: {len(errors)} violations"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
