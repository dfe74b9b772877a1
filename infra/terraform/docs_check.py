#!/usr/bin/env python3
"""Static checks that need no AWS: every variable and output of the root and of each
module is in its README, and every EMF metric the Rust code declares
(bridge_common::emf::names) is used by a metric_name or the dashboard.

Usage: docs_check.py REPO_ROOT
"""
import pathlib
import re
import sys


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
    for e in errors:
        print(f"docs_check: FAIL {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else __doc__)
