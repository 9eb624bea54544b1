#!/usr/bin/env python3
"""cfn-lint on every CloudFormation template of the CDK app, the last step of `make cdk-check`.

    .venv/bin/python scripts/check_cfn.py                 # cdk/cdk.out, as `npm run synth` left it
    .venv/bin/python scripts/check_cfn.py --assembly DIR  # another cloud assembly

The templates are those the cloud assembly's manifests name (every stage's nested assembly),
not whatever files lie in the directory, so a stale template is not linted and a missing one is
noticed. First a self-check: cfn-lint must fail a copy of one template with a Lambda function's
Runtime made invalid, or this check could pass without looking. cfn-lint (pinned in
requirements-dev.txt) runs offline with its bundled resource specifications.

Exit 0 when no template has an error (warnings are printed, not failed), 1 when one has, or
when the self-check passed the broken copy, 2 when there is nothing to lint or no cfn-lint.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
# cfn-lint's exit code is a bit mask: 1 it failed to run, 2 errors, 4 warnings, 8 informational.
FAILED, ERRORS = 1, 2
BROKEN_RUNTIME = "not-a-runtime"


def templates(assembly: Path) -> list[Path]:
    """The stack templates a cloud assembly's manifest names, nested assemblies included."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    found: list[Path] = []
    for artifact in manifest.get("artifacts", {}).values():
        props = artifact.get("properties", {})
        if artifact["type"] == "cdk:cloud-assembly":
            found += templates(assembly / props["directoryName"])
        elif artifact["type"] == "aws:cloudformation:stack":
            found.append(assembly / props["templateFile"])
    return found


def lint(paths: list[Path]) -> tuple[int, str]:
    proc = subprocess.run([str(CFN_LINT), "--format", "parseable", *map(str, paths)], capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def self_check(paths: list[Path]) -> str | None:
    """Why cfn-lint cannot be trusted, if it passes a Lambda function with an invalid Runtime."""
    for path in paths:
        template = json.loads(path.read_text())
        functions = [
            r
            for r in template.get("Resources", {}).values()
            if r.get("Type") == "AWS::Lambda::Function" and "Runtime" in r.get("Properties", {})
        ]
        if functions:
            break
    else:
        return "no template has a Lambda function with a Runtime to break"
    functions[0]["Properties"]["Runtime"] = BROKEN_RUNTIME
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / path.name
        broken.write_text(json.dumps(template, indent=1))
        code, output = lint([broken])
    if code & ERRORS and BROKEN_RUNTIME in output:
        return None
    return f"cfn-lint exited {code} on {path.name} with Runtime {BROKEN_RUNTIME!r}:\n{output}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--assembly",
        type=Path,
        default=ROOT / "cdk" / "cdk.out",
        help="the cloud assembly `cdk synth` wrote (default: cdk/cdk.out)",
    )
    args = ap.parse_args()
    if not CFN_LINT.exists():
        print(f"check_cfn: {CFN_LINT} is missing; run scripts/bootstrap.sh", file=sys.stderr)
        return 2
    if not (args.assembly / "manifest.json").exists():
        print(f"check_cfn: no cloud assembly in {args.assembly}; run `npm run synth` in cdk/", file=sys.stderr)
        return 2
    paths = templates(args.assembly)
    if not paths:
        print(f"check_cfn: the cloud assembly in {args.assembly} names no stack template", file=sys.stderr)
        return 2

    problem = self_check(paths)
    if problem:
        print(f"check_cfn: self-check failed: {problem}", file=sys.stderr)
        return 1
    code, output = lint(paths)
    if output:
        print(output)
    rules = [line.split(":")[5] for line in output.splitlines() if line.count(":") >= 6]
    errors = sum(rule.startswith("E") for rule in rules)
    warnings = sum(rule.startswith("W") for rule in rules)
    names = ", ".join(str(p.relative_to(args.assembly)) for p in paths)
    print(f"check_cfn: {len(paths)} templates ({names}): {errors} errors, {warnings} warnings")
    if code & (FAILED | ERRORS):
        print(f"check_cfn: cfn-lint exited {code}: the templates have errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
