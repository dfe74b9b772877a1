#!/usr/bin/env python3
"""Static checks that need no AWS: every variable and output of the root and of each
module is in its README, every EMF metric the Rust code declares
(bridge_common::emf::names) is used by a metric_name or the dashboard, and every
CloudWatch alarm Terraform creates has its section in docs/RUNBOOK.md, which has no
section for an alarm that no longer exists.

Usage: docs_check.py REPO_ROOT
"""
import pathlib
import re
import sys

# ---- Alarms and docs/RUNBOOK.md ----
# A small HCL reader: enough to find each alarm resource, its alarm_name and the keys
# its for_each iterates over, without being fooled by braces inside strings, template
# interpolations, comments or heredocs.

ALARM_PREFIX = "${var.name_prefix}-"
RUNBOOK = "docs/RUNBOOK.md"
CLOSING = {"{": "}", "[": "]", "(": ")"}
HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_]*)[ \t]*\n")
IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"


def skip_atom(text, i):
    """The index past the atom starting at text[i] that may hide brackets: a string,
    a comment, a heredoc or a bracketed group; i + 1 for any other character."""
    c = text[i]
    if c == '"':
        i += 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
            elif text[i] == '"':
                return i + 1
            elif text.startswith(("$${", "%%{"), i):  # escaped: a literal ${ or %{
                i += 3
            elif text[i] in "$%" and text.startswith("{", i + 1):
                i = skip_atom(text, i + 1)  # an interpolation: may hold strings and braces
            else:
                i += 1
        raise ValueError("unterminated string")
    if c == "#" or text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end  # the newline still ends an entry
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        if end < 0:
            raise ValueError("unterminated comment")
        return end + 2
    heredoc = HEREDOC.match(text, i)
    if heredoc:
        end = re.compile(rf"^[ \t]*{heredoc.group(1)}[ \t]*$", re.M).search(text, heredoc.end())
        if not end:
            raise ValueError(f"unterminated heredoc {heredoc.group(1)}")
        return end.end()
    if c in CLOSING:
        want = CLOSING[c]
        i += 1
        while i < len(text):
            if text[i] == want:
                return i + 1
            if text[i] in ")]}":
                raise ValueError(f"unbalanced {text[i]!r} at offset {i}")
            i = skip_atom(text, i)
        raise ValueError(f"unclosed {c!r}")
    return i + 1


def entry_end(text, i, stop):
    """The end of the expression starting at i: the newline or comma that ends it at
    its own depth (newlines inside brackets, strings and heredocs do not)."""
    while i < stop and text[i] not in "\n,":
        i = skip_atom(text, i)
    return min(i, stop)


def attributes(text, start, stop):
    """[(name, value_start, value_end)] of the attributes and object keys written at
    the top level of text[start:stop] (a block's or an object's inside)."""
    key = re.compile(rf'[ \t\r\n,]*(?:"([^"\\]+)"|({IDENT}))[ \t]*(?:=(?!=)|:)[ \t]*')
    out = []
    i = start
    while i < stop:
        m = key.match(text, i, stop)
        if m:
            end = entry_end(text, m.end(), stop)
            out.append((m.group(1) or m.group(2), m.end(), end))
            i = end
        else:
            i = skip_atom(text, i)
    return out


def object_keys(text, start, stop):
    """The keys of every object literal in the expression text[start:stop], e.g. both
    branches of `var.enable_writer ? { ... } : {}`, or the maps given to merge()."""
    keys = []
    i = start
    while i < stop:
        if text[i] == "{":
            end = skip_atom(text, i)
            keys += [k for k, _, _ in attributes(text, i + 1, end - 1)]
            i = end
        elif text[i] in "([":
            i += 1  # look inside calls and lists
        else:
            i = skip_atom(text, i)
    return keys


def blocks(text, kind, *labels):
    """(first label, inside start, inside end) of each top-level `kind "label" ... {`."""
    head = rf'^{kind}' + "".join(rf'\s+"{re.escape(l)}"' for l in labels) + r'(?:\s+"([^"]*)")*\s*\{'
    for m in re.finditer(head, text, re.M):
        yield m.group(1), m.end(), skip_atom(text, m.end() - 1) - 1


def for_each_keys(text, value_start, value_end, where):
    """The values each.key takes for `for_each = <text[value_start:value_end]>`: the
    keys of a local map in the same file, of a literal map, or the strings of toset([...])."""
    expr = text[value_start:value_end].strip()
    literal = re.fullmatch(r"toset\(\s*\[(.*)\]\s*\)", expr, re.S)
    if literal:
        keys = re.findall(r'"([^"]+)"', literal.group(1))
    elif re.fullmatch(rf"local\.{IDENT}", expr):
        name = expr.split(".", 1)[1]
        found = [
            (s, e)
            for _, start, stop in blocks(text, "locals")
            for k, s, e in attributes(text, start, stop)
            if k == name
        ]
        if len(found) != 1:
            raise ValueError(f"{where}: for_each = {expr}, defined {len(found)} times in this file")
        keys = object_keys(text, *found[0])
    elif expr.startswith("{"):
        keys = object_keys(text, value_start, value_end)
    else:
        raise ValueError(f"{where}: cannot read the keys of for_each = {expr}")
    if not keys:
        raise ValueError(f"{where}: for_each = {expr} has no keys to expand each.key with")
    return keys


def alarm_suffixes(tf):
    """{suffix: "file:line"} of every aws_cloudwatch_metric_alarm under tf: its
    alarm_name after "${var.name_prefix}-", with ${each.key} expanded."""
    out = {}
    for path in sorted(tf.rglob("*.tf")):
        text = path.read_text()
        for resource, start, stop in blocks(text, "resource", "aws_cloudwatch_metric_alarm"):
            where = f"{path.relative_to(tf.parent)}:{text.count(chr(10), 0, start) + 1}"
            attrs = {k: (s, e) for k, s, e in attributes(text, start, stop)}
            if "alarm_name" not in attrs:
                raise ValueError(f"{where}: alarm {resource} has no alarm_name")
            name = text[slice(*attrs["alarm_name"])].strip()
            if not (name.startswith('"' + ALARM_PREFIX) and name.endswith('"')):
                raise ValueError(f'{where}: alarm {resource} is not named "{ALARM_PREFIX}..."')
            rest = name[1 + len(ALARM_PREFIX):-1]
            if "${" not in rest and "%{" not in rest:
                names = [rest]
            elif rest.count("${") == 1 and "${each.key}" in rest and "for_each" in attrs:
                keys = for_each_keys(text, *attrs["for_each"], where)
                names = [rest.replace("${each.key}", k) for k in keys]
            else:
                raise ValueError(f"{where}: cannot expand alarm_name {name}")
            for n in names:
                if n in out:
                    raise ValueError(f"{where}: alarm {n} is also created at {out[n]}")
                out[n] = where
    return out


def runbook_errors(repo, tf):
    """Every alarm has a section "## `<suffix>`" in docs/RUNBOOK.md, and every such
    section names an alarm."""
    try:
        alarms = alarm_suffixes(tf)
    except ValueError as e:
        return [f"cannot list the alarms: {e}"]
    runbook = repo / RUNBOOK
    if not runbook.exists():
        return [f"{RUNBOOK} is missing: it needs a section for each of {len(alarms)} alarms"]
    headings = re.findall(r"^## `([^`]+)`[ \t]*$", runbook.read_text(), re.M)
    errors = [
        f"{RUNBOOK} lacks a section \"## `{a}`\" for the alarm at {alarms[a]}"
        for a in sorted(set(alarms) - set(headings))
    ]
    errors += [
        f"{RUNBOOK} has a section \"## `{h}`\" but Terraform creates no such alarm"
        for h in sorted(set(headings) - set(alarms))
    ]
    errors += [
        f"{RUNBOOK} has the section \"## `{h}`\" more than once"
        for h in sorted({h for h in headings if headings.count(h) > 1})
    ]
    if errors:
        print(f"docs_check: {len(alarms)} alarms, {len(set(alarms) & set(headings))} in {RUNBOOK}")
    else:
        print(f"docs_check: {len(alarms)} alarms, all in {RUNBOOK}")
    return errors



def main(repo):
    repo = pathlib.Path(repo)
    tf = repo / "terraform"
    errors = []
    for d in [tf, *sorted(p for p in (tf / "modules").iterdir() if p.is_dir())]:
        readme = (d / "README.md").read_text() if (d / "README.md").exists() else ""
        for f, kind in (("variables.tf", "variable"), ("outputs.tf", "output")):
            for name in re.findall(rf'^{kind} "(\w+)"', (d / f).read_text(), re.M):
                if f"`{name}`" not in readme:
                    errors.append(f"{d.relative_to(repo)}/README.md lacks {kind} `{name}`")

    emf = repo / "crates/bridge-common/src/emf.rs"
    if emf.exists():
        src = emf.read_text()
        declared = set()
        for arr in re.findall(r"_METRICS: \[&str; \d+\] =\s*\[([^\]]*)\]", src):
            declared |= set(re.findall(r'"(\w+)"', arr))
        all_tf = "\n".join(p.read_text() for p in tf.rglob("*.tf"))
        used = set(re.findall(r'metric_name\s*=\s*"(\w+)"', all_tf))
        dashboard = (tf / "modules/monitoring/dashboard.tf").read_text()
        for m in sorted(declared):
            if m not in used and f'"{m}"' not in dashboard:
                errors.append(f"EMF metric {m} (emf.rs) is in no alarm, scaling policy or dashboard")
        print(f"docs_check: {len(declared)} EMF metrics declared, {len(declared & used)} alarmed or scaled on")
    else:
        print(f"docs_check: {emf} not found, metric names not compared")
    errors += runbook_errors(repo, tf)
    for e in errors:
        print(f"docs_check: FAIL {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else __doc__)
