#!/usr/bin/env python3
"""Offline checks of the GCP side (terraform/), the terraform part of `make test`.

No provider can be downloaded here, so `terraform validate` cannot run; instead:

1. assertions on every .tf file, parsed with python-hcl2: the properties yuba's security and
   its workers depend on (the bucket's access settings and its `_yuba-parts/` lifecycle rule,
   the federation's condition and grants, no keys, IAM on the bucket and the accounts only;
   yuba-serve reads the bucket unconditioned and creates objects under the variants' prefix
   only, through an IAM condition on the object name);
   Google's formats of every id and name created (pool, provider, service accounts, bucket),
   evaluated from the module's defaults and through the example with its
   terraform.tfvars.example, and the validations of the variables they are made of, tried on
   samples; and the AWS roles the example trusts, against the CDK app's
   (cdk/lib/generated/aws-iam.json);
2. a self-test: the same assertions on copies of terraform/ broken one way at a time, each of
   which must fail (and one through checkov), so that a check that stopped seeing anything
   cannot pass silently;
3. checkov on terraform/ (in its own virtualenv, .venv/checkov: it pins boto3 and ships its own
   `hcl2` module, both at odds with requirements-dev.txt); every failed check fails, and a
   check is skipped only by an inline `#checkov:skip=CKV_...:reason` beside the resource;
4. `terraform fmt -check`, when a terraform binary is on PATH.

    .venv/bin/python scripts/check_terraform.py             # all of it (make terraform-check)
    .venv/bin/python scripts/check_terraform.py --self-test # only the self-test
    .venv/bin/python scripts/check_terraform.py --no-checkov --dir /tmp/copy-of-terraform

Exit 0 when everything passed, 1 when a check failed, 2 when a tool could not be run.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions
from lark import Token, Tree

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "terraform"
CHECKOV_REQ = ROOT / "scripts" / "requirements-checkov.txt"
CHECKOV_VENV = ROOT / ".venv" / "checkov"
CDK_CONFIG = ROOT / "cdk" / "lib" / "config.ts"

PARTS_PREFIX = "_yuba-parts/"
# Google's documented default mapping of AWS identities to attribute.aws_role.
AWS_ROLE_MAPPING = (
    "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/')"
    " + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
)
BUCKET_ROLES = {
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/storage.objectUser",
    "roles/storage.objectAdmin",
}
FORBIDDEN_TYPES = {
    "google_service_account_key": "a long-lived key; the AWS side authenticates by federation",
    "google_storage_hmac_key": "a long-lived key; the AWS side authenticates by federation",
}
IAM_TYPE = re.compile(r"_iam_(member|binding|policy|audit_config|custom_role)$")
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
MIN_SKIP_REASON = 20

# Offline: no policy mappings from the vendor's platform, no update check against PyPI.
CHECKOV_ENV = {
    "BC_SKIP_MAPPING": "TRUE",
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
}


def log(msg: str) -> None:
    print(f"terraform-check: {msg}", flush=True)


@dataclass
class Failure:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Resource:
    type: str
    name: str
    body: dict
    path: Path
    line: int
    module: Path  # the directory: locals and variables are per module

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"


class ToolError(Exception):
    pass


def cfg_rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- parsing -------------------------------------------------------------------------------

OPTIONS = SerializationOptions(with_comments=False, strip_string_quotes=True, explicit_blocks=False)


@functools.lru_cache(maxsize=256)
def parse_tree(text: str) -> Tree:
    """The lark parse tree of a file, which check_ids evaluates. Cached by content: the
    self-test's copies share all but the file each one breaks."""
    return hcl2.parses_to_tree(text)


@functools.lru_cache(maxsize=256)
def load(text: str) -> dict:
    """hcl2.loads(text), from the parse tree check_ids evaluates (transform builds new objects,
    it does not change the tree). Cached by content: the self-test's copies share all but the file
    each one breaks. The checks only read what it returns."""
    return hcl2.serialize(hcl2.transform(parse_tree(text)), serialization_options=OPTIONS)


def tf_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def block_line(text: str, kind: str, *labels: str) -> int:
    pattern = r"^\s*" + re.escape(kind) + "".join(r'\s+"' + re.escape(label) + '"' for label in labels) + r"\s*\{"
    m = re.search(pattern, text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else 1


class Config:
    """Every .tf file under a root: resources, locals, outputs, terraform blocks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[Path, str] = {}
        self.parsed: dict[Path, dict] = {}
        self.resources: list[Resource] = []
        self.locals: dict[Path, dict] = {}
        self.outputs: dict[Path, dict[str, object]] = {}
        self.errors: list[Failure] = []
        self.notes: list[str] = []  # what the checks found, for the log of a full run
        for path in tf_files(root):
            text = path.read_text()
            self.files[path] = text
            try:
                doc = load(text)
            except Exception as e:  # the parser's errors have no common base class
                self.errors.append(Failure(self.rel(path), f"does not parse as HCL: {e}"))
                continue
            self.parsed[path] = doc
            module = path.parent
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        line = block_line(text, "resource", rtype, name)
                        self.resources.append(Resource(rtype, name, body, path, line, module))
            for block in doc.get("locals", []):
                self.locals.setdefault(module, {}).update(block)
            for block in doc.get("output", []):
                for name, body in block.items():
                    self.outputs.setdefault(module, {})[name] = body.get("value")

    def rel(self, path: Path) -> str:
        return cfg_rel(path)

    @functools.cached_property
    def modules(self) -> dict[Path, HclModule]:
        """Each directory as expression trees, for the checks that evaluate (check_ids)."""
        return hcl_modules(self)

    def where(self, r: Resource) -> str:
        return f"{self.rel(r.path)}:{r.line}: {r.address}"

    def of_type(self, rtype: str) -> list[Resource]:
        return [r for r in self.resources if r.type == rtype]

    def resolve(self, module: Path, value: object, depth: int = 0) -> str:
        """The value as text, with every local.NAME it uses replaced by the local's own text.

        Enough to ask "does this expression depend on var.X / contain Y", which is what the
        assertions ask; it evaluates nothing.
        """
        text = value if isinstance(value, str) else json.dumps(value)
        if depth > 8:
            return text
        module_locals = self.locals.get(module, {})

        def expand(m: re.Match) -> str:
            name = m.group(1)
            if name not in module_locals:
                return m.group(0)
            return "(" + self.resolve(module, module_locals[name], depth + 1) + ")"

        return re.sub(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)", expand, text)

    def value(self, module: Path, value: object, depth: int = 0) -> object:
        """A value that is just a reference to a local (`"${local.NAME}"`) replaced by the local's value."""
        if isinstance(value, str) and depth < 8:
            m = re.fullmatch(r"\$\{local\.([A-Za-z_][A-Za-z0-9_-]*)\}", value)
            if m and m.group(1) in self.locals.get(module, {}):
                return self.value(module, self.locals[module][m.group(1)], depth + 1)
        return value


def blocks(body: dict, name: str) -> list[dict]:
    value = body.get(name, [])
    return value if isinstance(value, list) else [value]


def refers_to(text: str, address: str) -> bool:
    return re.search(r"(?<![\w.])" + re.escape(address) + r"\b", text) is not None


# --- assertions ----------------------------------------------------------------------------


def check_buckets(cfg: Config) -> list[Failure]:
    out = []
    for r in cfg.of_type("google_storage_bucket"):
        w = cfg.where(r)
        if r.body.get("uniform_bucket_level_access") is not True:
            out.append(
                Failure(
                    w,
                    f"uniform_bucket_level_access is {json.dumps(r.body.get('uniform_bucket_level_access'))}, "
                    "must be true (access by bucket IAM only, no object ACLs)",
                )
            )
        if r.body.get("public_access_prevention") != "enforced":
            out.append(
                Failure(
                    w,
                    f"public_access_prevention is {json.dumps(r.body.get('public_access_prevention'))}, "
                    'must be "enforced"',
                )
            )
        # Static, not dynamic: the rule must exist whatever the variables say.
        found = False
        for rule in blocks(r.body, "lifecycle_rule"):
            actions = blocks(rule, "action")
            conditions = blocks(rule, "condition")
            if not actions or not conditions:
                continue
            cond = conditions[0]
            prefixes = cfg.resolve(r.module, cond.get("matches_prefix", []))
            if actions[0].get("type") == "Delete" and cond.get("age") == 1 and PARTS_PREFIX in prefixes:
                found = True
        if not found:
            out.append(
                Failure(
                    w,
                    f"no lifecycle_rule deleting objects under {PARTS_PREFIX!r} at age 1 "
                    "(abandoned composite-upload parts would stay forever); it must be a "
                    "plain lifecycle_rule block, not a dynamic one",
                )
            )
    return out


def check_pool_providers(cfg: Config) -> list[Failure]:
    out = []
    for r in cfg.of_type("google_iam_workload_identity_pool_provider"):
        w = cfg.where(r)
        aws = blocks(r.body, "aws")
        if not aws or "var.aws_account_id" not in cfg.resolve(r.module, aws[0].get("account_id", "")):
            out.append(Failure(w, "needs an aws { account_id = var.aws_account_id } block"))
        if r.body.get("oidc") or r.body.get("saml"):
            out.append(Failure(w, "must be an AWS provider only (no oidc or saml block)"))
        mapping = r.body.get("attribute_mapping")
        mapping = mapping if isinstance(mapping, dict) else {}
        role_map = cfg.value(r.module, mapping.get("attribute.aws_role", ""))
        if not isinstance(role_map, str) or " ".join(role_map.split()) != AWS_ROLE_MAPPING:
            out.append(
                Failure(
                    w,
                    'attribute_mapping["attribute.aws_role"] is not Google\'s documented '
                    f"mapping of an assumed-role ARN to its role: {AWS_ROLE_MAPPING}",
                )
            )
        if "google.subject" not in mapping:
            out.append(Failure(w, "attribute_mapping must map google.subject"))
        condition = cfg.resolve(r.module, r.body.get("attribute_condition", ""))
        if not condition:
            out.append(Failure(w, "no attribute_condition: every identity of the AWS account could exchange tokens"))
            continue
        if "var.aws_account_id" not in condition:
            out.append(Failure(w, "attribute_condition does not restrict the AWS account (var.aws_account_id)"))
        for var in ("var.worker_role_arns", "var.reconciler_role_arns", "var.serve_role_arns"):
            # The list's own roles (a for over the variable), not a mention of it elsewhere: every
            # list's ARNs are parsed together, which names all three variables.
            if not re.search(r"\bfor\s+\w+\s+in\s+" + re.escape(var) + r"\b", condition):
                out.append(Failure(w, f"attribute_condition does not restrict to the roles of {var}"))
        if "attribute.aws_role" not in condition:
            out.append(Failure(w, "attribute_condition must test attribute.aws_role (the mapped role)"))
    return out


def principal_problems(text: str) -> list[str]:
    problems = []
    members = re.findall(r"principal(?:Set)?://[^\"'\s\]]*", text)
    if not members:
        problems.append("no principalSet:// member")
    for m in members:
        if not m.startswith("principalSet://iam.googleapis.com/"):
            problems.append(f"{m!r} is not a principalSet of a workload identity pool")
        elif "/attribute.aws_role/" not in m:
            problems.append(
                f"{m!r} is not restricted to an AWS role (attribute.aws_role): a whole pool or another attribute"
            )
        elif m.rstrip("/").endswith("*"):
            problems.append(f"{m!r} is a wildcard")
    for other in ("allUsers", "allAuthenticatedUsers", "serviceAccount:", "user:", "group:", "domain:"):
        if other in text:
            problems.append(f"members include {other!r}")
    return problems


def check_iam(cfg: Config) -> list[Failure]:
    out = []
    buckets = {r.name for r in cfg.of_type("google_storage_bucket")}
    accounts = {r.name for r in cfg.of_type("google_service_account")}
    for r in cfg.resources:
        w = cfg.where(r)
        if r.type in FORBIDDEN_TYPES:
            out.append(Failure(w, f"{r.type} is not allowed: {FORBIDDEN_TYPES[r.type]}"))
            continue
        if not IAM_TYPE.search(r.type):
            continue
        if r.type.startswith("google_project_iam_"):
            out.append(Failure(w, f"{r.type}: no project-wide IAM; grant on the bucket or the service accounts"))
        elif r.type.startswith("google_storage_bucket_iam_"):
            if r.type.endswith("_policy"):
                out.append(Failure(w, f"{r.type} replaces the bucket's whole policy; use _member or _binding"))
                continue
            bucket = cfg.resolve(r.module, r.body.get("bucket", ""))
            if not any(refers_to(bucket, f"google_storage_bucket.{b}") for b in buckets):
                out.append(
                    Failure(
                        w,
                        f"bucket = {r.body.get('bucket')!r}: IAM only on the replica bucket "
                        "declared here (google_storage_bucket.NAME.name)",
                    )
                )
            role = cfg.value(r.module, r.body.get("role", ""))
            if role not in BUCKET_ROLES:
                out.append(Failure(w, f"role {role!r} on the bucket; allowed: {', '.join(sorted(BUCKET_ROLES))}"))
            members = cfg.resolve(r.module, r.body.get("member", r.body.get("members", "")))
            for public in ("allUsers", "allAuthenticatedUsers"):
                if public in members:
                    out.append(Failure(w, f"grants to {public}: the replica is never public"))
        elif r.type.startswith("google_service_account_iam_"):
            if r.type.endswith("_policy"):
                out.append(Failure(w, f"{r.type} replaces the account's whole policy; use _binding"))
                continue
            sa = cfg.resolve(r.module, r.body.get("service_account_id", ""))
            if not any(refers_to(sa, f"google_service_account.{a}") for a in accounts):
                out.append(
                    Failure(
                        w,
                        f"service_account_id = {r.body.get('service_account_id')!r}: IAM only on "
                        "the service accounts declared here",
                    )
                )
            role = cfg.value(r.module, r.body.get("role", ""))
            if role != "roles/iam.workloadIdentityUser":
                out.append(
                    Failure(
                        w,
                        f"role {role!r} on a service account; only roles/iam.workloadIdentityUser "
                        "(the AWS roles' federation) is granted there",
                    )
                )
                continue
            members = cfg.resolve(r.module, r.body.get("member", r.body.get("members", "")))
            for problem in principal_problems(members):
                out.append(Failure(w, f"workloadIdentityUser: {problem}"))
        else:
            out.append(Failure(w, f"{r.type}: IAM only on the replica bucket and the service accounts"))
    return out


def check_presence(cfg: Config) -> list[Failure]:
    """The module must still contain what the other assertions look at, or they prove nothing."""
    out = []
    where = cfg.rel(cfg.root)
    wanted = {
        "google_storage_bucket": "the replica bucket",
        "google_iam_workload_identity_pool": "the workload identity pool",
        "google_iam_workload_identity_pool_provider": "the AWS provider",
        "google_service_account": "the service accounts",
    }
    for rtype, what in wanted.items():
        if not cfg.of_type(rtype):
            out.append(Failure(where, f"no {rtype} ({what}) found"))
    federated = [
        r
        for r in cfg.resources
        if r.type.startswith("google_service_account_iam_")
        and "workloadIdentityUser" in cfg.resolve(r.module, r.body.get("role", ""))
    ]
    if len(federated) < 2:
        out.append(
            Failure(
                where,
                "expected roles/iam.workloadIdentityUser grants for the workers' and the "
                f"reconciler's service accounts, found {len(federated)}",
            )
        )
    return out


def check_versions(cfg: Config) -> list[Failure]:
    out = []
    modules = {r.module for r in cfg.resources} | {p.parent for p in cfg.parsed if "module" in cfg.parsed[p]}
    for module in sorted(modules):
        pinned = False
        for path, doc in cfg.parsed.items():
            if path.parent != module:
                continue
            for tf in doc.get("terraform", []):
                for rp in blocks(tf, "required_providers"):
                    google = rp.get("google")
                    if (
                        isinstance(google, dict)
                        and google.get("source") == "hashicorp/google"
                        and google.get("version")
                    ):
                        pinned = True
        if not pinned:
            out.append(
                Failure(
                    cfg.rel(module),
                    'no terraform { required_providers { google = { source = "hashicorp/google", version = ... } } }',
                )
            )
    return out


CREDENTIAL_MARKERS = [
    "jsonencode(",
    "external_account",
    "//iam.googleapis.com/",
    "urn:ietf:params:aws:token-type:aws4_request",
    "https://sts.googleapis.com/v1/token",
    "aws1",
    "region_url",
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/",
    ":generateAccessToken",
]


def check_outputs(cfg: Config) -> list[Failure]:
    out = []
    for module, outputs in cfg.outputs.items():
        if not any(
            r.module == module and r.type == "google_iam_workload_identity_pool_provider" for r in cfg.resources
        ):
            continue
        for role in ("worker", "reconciler", "serve"):
            name = f"{role}_credentials_json"
            if name not in outputs:
                out.append(Failure(cfg.rel(module), f"no output {name} (the external_account file of the {role})"))
                continue
            text = cfg.resolve(module, outputs[name])
            missing = [m for m in CREDENTIAL_MARKERS if m not in text]
            if missing:
                out.append(
                    Failure(
                        f"{cfg.rel(module)}: output {name}",
                        f"not an AWS external_account configuration: missing {missing}",
                    )
                )
    return out


def check_skip_comments(cfg: Config) -> list[Failure]:
    out = []
    for path, text in cfg.files.items():
        for n, line in enumerate(text.splitlines(), 1):
            m = SKIP_COMMENT.search(line)
            if m and len((m.group(2) or "").strip()) < MIN_SKIP_REASON:
                out.append(
                    Failure(
                        f"{cfg.rel(path)}:{n}",
                        f"checkov skip of {m.group(1)} without a written "
                        "reason (#checkov:skip=ID:why it does not apply)",
                    )
                )
    for name in (".checkov.yaml", ".checkov.yml"):
        for d in (ROOT, cfg.root):
            if (d / name).exists():
                out.append(
                    Failure(
                        cfg.rel(d / name),
                        "checkov configuration files could skip checks out of sight; skip inline beside the resource",
                    )
                )
    return out


def check_tfvars_examples(cfg: Config) -> list[Failure]:
    out = []
    for example in sorted(cfg.root.rglob("*.tfvars.example")):
        try:
            values = hcl2.loads(example.read_text(), serialization_options=OPTIONS)
        except Exception as e:
            out.append(Failure(cfg.rel(example), f"does not parse as HCL: {e}"))
            continue
        required = set()
        for path, doc in cfg.parsed.items():
            if path.parent == example.parent:
                for block in doc.get("variable", []):
                    required |= {name for name, body in block.items() if "default" not in body}
        for name in sorted(required - set(values)):
            out.append(Failure(cfg.rel(example), f"does not set the required variable {name}"))
    return out


# --- evaluating expressions ----------------------------------------------------------------
#
# An id is only known once the variables it is made of are: the checks below evaluate the
# expressions that make each id, from the variables' defaults and the example's
# terraform.tfvars.example, through locals and module calls, and the validations of those
# variables, as terraform would. python-hcl2 parses but evaluates nothing, so this is a small
# evaluator over its parse tree. Evaluating the HCL as written, rather than looking for the
# validation blocks one expects, is what lets the self-test remove or weaken a validation and
# see it caught. It knows the part of HCL these files use and stops on anything else
# (Unsupported), so that the check fails on an expression it does not understand instead of
# passing it. Regular expressions run on Python's `re`, which agrees with terraform's RE2 on
# the classes, anchors and counts used here.


class EvalError(Exception):
    """An error terraform would report while evaluating: what can() turns into false."""


class Unsupported(Exception):
    """An expression beyond this evaluator: the check fails and says which."""


class Unset(Unsupported):
    """A variable with neither a value nor a default (an input the caller must give)."""


META_ARGUMENTS = {"source", "version", "providers", "count", "for_each", "depends_on"}


def kids(node: Tree) -> list[Tree]:
    """A node's sub-trees, without its punctuation and newlines."""
    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def name_of(node: Tree) -> str:
    """The text of an identifier, or of a plain string (a block label)."""
    if node.data == "identifier":
        return str(node.children[0])
    return "".join(str(part.children[0]) for part in kids(node))


def unescape(text: str) -> str:
    simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}

    def one(m: re.Match) -> str:
        code = m.group(1)
        return chr(int(code[1:], 16)) if code[0] in "uU" else simple.get(code, "\\" + code)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", one, text)


def as_text(value: object) -> str:
    """A value as a template interpolates it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise EvalError(f"cannot interpolate {value!r} into a string")


def as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise EvalError(f"{value!r} is not a bool")
    return value


def as_number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EvalError(f"{value!r} is not a number")
    return value


def hcl_equal(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def fn_regex(pattern: str, text: str) -> object:
    m = re.search(pattern, text)
    if m is None:
        raise EvalError(f"regex {pattern!r} does not match {text!r}")
    if m.re.groupindex:
        return m.groupdict()
    return list(m.groups()) if m.re.groups else m.group(0)


def fn_substr(text: str, offset: int, length: int) -> str:
    if offset < 0:
        offset += len(text)
    return text[offset:] if length == -1 else text[offset : offset + length]


def fn_coalesce(*values: object) -> object:
    for value in values:
        if value is not None and value != "":
            return value
    raise EvalError("coalesce() has no argument that is neither null nor an empty string")


FUNCTIONS = {
    "alltrue": lambda values: all(as_bool(v) for v in values),
    "anytrue": lambda values: any(as_bool(v) for v in values),
    "coalesce": fn_coalesce,
    "concat": lambda *lists: [item for items in lists for item in items],
    "contains": lambda values, value: value in values,
    "endswith": lambda text, suffix: text.endswith(suffix),
    "join": lambda separator, values: separator.join(values),
    "length": len,
    "lower": lambda text: text.lower(),
    "regex": fn_regex,
    "split": lambda separator, text: text.split(separator),
    "startswith": lambda text, prefix: text.startswith(prefix),
    "strcontains": lambda text, part: part in text,
    "substr": fn_substr,
}

BINARY = {
    "&&": lambda a, b: as_bool(a) and as_bool(b),
    "||": lambda a, b: as_bool(a) or as_bool(b),
    "==": hcl_equal,
    "!=": lambda a, b: not hcl_equal(a, b),
    "<": lambda a, b: as_number(a) < as_number(b),
    "<=": lambda a, b: as_number(a) <= as_number(b),
    ">": lambda a, b: as_number(a) > as_number(b),
    ">=": lambda a, b: as_number(a) >= as_number(b),
    "+": lambda a, b: as_number(a) + as_number(b),
    "-": lambda a, b: as_number(a) - as_number(b),
    "*": lambda a, b: as_number(a) * as_number(b),
}


@dataclass
class Variable:
    default: Tree | None  # None: no default, the caller must give a value
    nullable: bool
    validations: list[tuple[Tree, Tree]]  # (condition, error_message)
    source: str  # the variable block's text


# The messages of the validations a value fails, by (variable block, value): a condition may refer
# to its own variable only (terraform before 1.9 allows nothing else), so this is all it depends
# on, and the self-test's copies, which mostly share their variables, reuse it.
VERDICTS: dict[tuple[str, str], list[str]] = {}


class HclModule:
    """One directory of .tf files as expression trees: variables, locals, module calls and the
    top-level attributes of resources."""

    def __init__(self, directory: Path, texts: list[str]) -> None:
        self.dir = directory
        self.variables: dict[str, Variable] = {}
        self.locals: dict[str, Tree] = {}
        self.calls: dict[str, dict[str, Tree]] = {}
        self.call_dirs: dict[str, Path] = {}
        self.resources: dict[tuple[str, str], dict[str, Tree]] = {}
        for text in texts:
            for kind, labels, body, block in self.blocks(parse_tree(text).children[0]):
                attrs = self.attributes(body)
                if kind == "variable":
                    validations = [self.attributes(b) for k, _, b, _ in self.blocks(body) if k == "validation"]
                    self.variables[labels[0]] = Variable(
                        attrs.get("default"),
                        constant(attrs["nullable"]) if "nullable" in attrs else True,
                        [(v["condition"], v["error_message"]) for v in validations],
                        text[block.meta.start_pos : block.meta.end_pos],
                    )
                elif kind == "locals":
                    self.locals.update(attrs)
                elif kind == "module":
                    self.calls[labels[0]] = attrs
                    self.call_dirs[labels[0]] = (directory / str(constant(attrs["source"]))).resolve()
                elif kind == "resource":
                    self.resources[(labels[0], labels[1])] = attrs

    @staticmethod
    def blocks(body: Tree) -> list[tuple[str, list[str], Tree, Tree]]:
        """(type, labels, body, block) of each block in a body."""
        out = []
        for block in (b for b in kids(body) if b.data == "block"):
            parts = kids(block)
            out.append((name_of(parts[0]), [name_of(p) for p in parts[1:-1]], parts[-1], block))
        return out

    @staticmethod
    def attributes(body: Tree) -> dict[str, Tree]:
        return {name_of(kids(a)[0]): kids(a)[1] for a in kids(body) if a.data == "attribute"}


class Instance:
    """A module with values for its variables (`inputs`: thunks, evaluated when first read, as a
    module call's arguments are), evaluating its expressions as terraform would."""

    def __init__(
        self, module: HclModule, modules: dict[Path, HclModule], inputs: dict[str, Callable[[], object]] | None = None
    ) -> None:
        self.module = module
        self.modules = modules
        self.inputs = inputs or {}
        self.values: dict[str, object] = {}
        self.local_values: dict[str, object] = {}
        self.pending: set[str] = set()
        self.children: dict[str, Instance] = {}
        self.reads: set[str] = set()  # the variables read so far, with or without a value

    def var(self, name: str) -> object:
        self.reads.add(name)
        if name not in self.values:
            self.values[name] = self._var(name)
        return self.values[name]

    def _var(self, name: str) -> object:
        var = self.module.variables.get(name)
        if var is None:
            raise Unsupported(f"var.{name} is not declared in {cfg_rel(self.module.dir)}")
        if name in self.inputs:
            value = self.inputs[name]()
            # A module's nullable = false variable takes its default where the caller passes null.
            if value is not None or var.nullable:
                return value
        if var.default is None:
            raise Unset(f"var.{name} has no value and no default")
        return constant(var.default)

    def local(self, name: str) -> object:
        if name not in self.local_values:
            if name not in self.module.locals:
                raise Unsupported(f"local.{name} is not defined in {cfg_rel(self.module.dir)}")
            if name in self.pending:
                raise Unsupported(f"local.{name} refers to itself")
            self.pending.add(name)
            try:
                self.local_values[name] = self.eval(self.module.locals[name])
            finally:
                self.pending.discard(name)
        return self.local_values[name]

    def child(self, call: str) -> Instance:
        """The module that `module "CALL"` instantiates, with the call's arguments as inputs."""
        if call in self.children:
            return self.children[call]
        args, directory = self.module.calls[call], self.module.call_dirs[call]
        if directory not in self.modules:
            raise Unsupported(f"module.{call}: {cfg_rel(directory)} is not among the files checked")
        inputs = {name: functools.partial(self.eval, expr) for name, expr in args.items() if name not in META_ARGUMENTS}
        self.children[call] = Instance(self.modules[directory], self.modules, inputs)
        return self.children[call]

    def failed_validations(self, name: str) -> list[str]:
        """The error messages of var.NAME's validations that its value fails."""
        key = (self.module.variables[name].source, repr(self.var(name)))
        if key not in VERDICTS:
            VERDICTS[key] = self._failed_validations(name)
        return VERDICTS[key]

    def _failed_validations(self, name: str) -> list[str]:
        out = []
        for condition, message in self.module.variables[name].validations:
            try:
                ok = self.eval(condition) is True
            except EvalError:
                ok = False  # an error in a condition fails the plan too
            if not ok:
                out.append(str(constant(message)))
        return out

    def eval(self, node: Tree, scope: dict[str, object] | None = None) -> object:
        scope = scope or {}
        kind, parts = node.data, kids(node)
        if kind == "expr_term":  # a term, or a parenthesized expression
            return self.eval(parts[0], scope)
        if kind == "int_lit":
            return int(node.children[0])
        if kind == "float_lit":
            return float(node.children[0])
        if kind == "literal_value":
            return {"true": True, "false": False, "null": None}[str(node.children[0])]
        if kind == "string":
            return self.template(parts, scope)
        if kind == "tuple":
            return [self.eval(p, scope) for p in parts]
        if kind == "object":
            return {self.key(kids(elem)[0], scope): self.eval(kids(elem)[1], scope) for elem in parts}
        if kind == "identifier":
            if name_of(node) in scope:
                return scope[name_of(node)]
            raise Unsupported(f"{name_of(node)}: only var., local., literals and functions are evaluated")
        if kind == "get_attr_expr_term":
            return self.attribute(parts[0], name_of(kids(parts[1])[0]), scope)
        if kind == "index_expr_term":  # x[i], or x.0
            if parts[1].data == "braces_index":
                index = self.eval(kids(parts[1])[0], scope)
            else:
                index = int(str(parts[1].children[-1]))
            try:
                return self.eval(parts[0], scope)[index]
            except (IndexError, KeyError, TypeError) as e:
                raise EvalError(f"index {index!r}: {e}") from None
        if kind == "function_call":
            return self.call(parts, scope)
        if kind == "unary_op":
            value = self.eval(parts[0], scope)
            return not as_bool(value) if str(node.children[0]) == "!" else -as_number(value)
        if kind == "binary_op":
            op = str(kids(parts[1])[0].children[0]).strip()
            if op not in BINARY:
                raise Unsupported(f"operator {op}")
            return BINARY[op](self.eval(parts[0], scope), self.eval(kids(parts[1])[1], scope))
        if kind == "conditional":
            return self.eval(parts[1] if as_bool(self.eval(parts[0], scope)) else parts[2], scope)
        if kind == "for_tuple_expr":
            return self.for_tuple(parts, scope)
        raise Unsupported(f"{kind} expressions are not evaluated by this check")

    def template(self, parts: list[Tree], scope: dict[str, object]) -> object:
        pieces: list[object] = []
        for part in parts:
            child = part.children[0]
            if isinstance(child, Token):
                text = str(child)
                pieces.append(unescape(text) if child.type == "STRING_CHARS" else text[1:])  # $${ and %%{
            elif child.data == "interpolation":
                pieces.append(self.eval(kids(child)[0], scope))
            else:
                raise Unsupported("template directives (%{...}) are not evaluated by this check")
        if len(parts) == 1 and not isinstance(parts[0].children[0], Token):
            return pieces[0]  # "${x}" is x itself, not its text
        return "".join(as_text(p) for p in pieces)

    def key(self, node: Tree, scope: dict[str, object]) -> str:
        term = kids(node)[0]
        inner = kids(term)[0] if term.data == "expr_term" else term
        return name_of(inner) if inner.data == "identifier" else as_text(self.eval(term, scope))

    def attribute(self, base: Tree, name: str, scope: dict[str, object]) -> object:
        inner = kids(base)[0] if base.data == "expr_term" else base
        if inner.data == "identifier" and name_of(inner) not in scope:
            if name_of(inner) == "var":
                return self.var(name)
            if name_of(inner) == "local":
                return self.local(name)
        value = self.eval(base, scope)
        if isinstance(value, dict) and name in value:
            return value[name]
        raise EvalError(f"no attribute {name!r} in {value!r}")

    def call(self, parts: list[Tree], scope: dict[str, object]) -> object:
        name = name_of(parts[0])
        arguments = parts[-1] if parts[-1].data == "arguments" else None
        args = kids(arguments) if arguments is not None else []
        if arguments is not None and any(isinstance(t, Token) and t.type == "ELLIPSIS" for t in arguments.children):
            raise Unsupported(f"{name}(...): expanding arguments is not evaluated by this check")
        if name == "can":
            try:
                self.eval(args[0], scope)
                return True
            except EvalError:
                return False
        if name not in FUNCTIONS:
            raise Unsupported(f"function {name}() is not known to this check; add it to FUNCTIONS")
        values = [self.eval(a, scope) for a in args]
        try:
            return FUNCTIONS[name](*values)
        except (TypeError, ValueError, AttributeError, re.error) as e:
            raise EvalError(f"{name}(): {e}") from None

    def for_tuple(self, parts: list[Tree], scope: dict[str, object]) -> list[object]:
        intro, body, *condition = parts
        names = [name_of(p) for p in kids(intro)[:-1]]
        collection = self.eval(kids(intro)[-1], scope)
        items = collection.items() if isinstance(collection, dict) else enumerate(collection)
        out = []
        for key, value in items:
            inner = {**scope, **({names[0]: value} if len(names) == 1 else {names[0]: key, names[1]: value})}
            if not condition or as_bool(self.eval(kids(condition[0])[0], inner)):
                out.append(self.eval(body, inner))
        return out


def constant(node: Tree) -> object:
    """A value that refers to nothing (a default, a source, a tfvars value)."""
    return nothing().eval(node)


@functools.cache
def nothing() -> Instance:
    return Instance(HclModule(Path(), []), {})


def hcl_modules(cfg: Config) -> dict[Path, HclModule]:
    texts: dict[Path, list[str]] = {}
    for path, text in cfg.files.items():
        if path in cfg.parsed:  # a file that does not parse is reported already
            texts.setdefault(path.parent.resolve(), []).append(text)
    return {d: HclModule(d, t) for d, t in texts.items()}


def tfvars_values(path: Path) -> dict[str, object]:
    attrs = HclModule.attributes(parse_tree(path.read_text()).children[0])
    return {name: constant(expr) for name, expr in attrs.items()}


# --- Google's ids and names ----------------------------------------------------------------
#
# The emulators accept any id; Google does not. Each rule below is Google's documented format,
# written once in Python; every id the module creates is evaluated (from the module's defaults,
# and through the example with its terraform.tfvars.example) and held to it, and so is every
# variable that feeds an id: its validations must reject what the rule rejects.

POOL_ID_DOC = "https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools/create"
PROVIDER_ID_DOC = (
    "https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools.providers/create"
)
SERVICE_ACCOUNT_ID_DOC = "https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/create"
BUCKET_NAME_DOC = "https://cloud.google.com/storage/docs/buckets#naming"
# "close misspellings, such as g00gle": Google names no list; these are the ones refused here.
GOOGLE_SPELLINGS = ("google", "g00gle", "g0ogle", "go0gle")


def federation_id_problem(value: str, doc: str) -> str | None:
    # Pools and providers alike (doc): "This value must be 4-32 characters, and may contain the
    # characters [a-z0-9-]. The prefix gcp- is reserved for use by Google, and may not be
    # specified."
    if not re.fullmatch(r"[a-z0-9-]{4,32}", value):
        return f"is not 4-32 characters of [a-z0-9-] ({doc})"
    if value.startswith("gcp-"):
        return f"begins with gcp-, which Google reserves ({doc})"
    return None


def pool_id_problem(value: str) -> str | None:
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools/create
    return federation_id_problem(value, POOL_ID_DOC)


def provider_id_problem(value: str) -> str | None:
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools.providers/create
    return federation_id_problem(value, PROVIDER_ID_DOC)


def service_account_id_problem(value: str) -> str | None:
    # https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/create: "must
    # be 6-30 characters long, and match the regular expression [a-z]([-a-z0-9]*[a-z0-9])".
    if not 6 <= len(value) <= 30:
        return f"is {len(value)} characters, not 6-30 ({SERVICE_ACCOUNT_ID_DOC})"
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])", value):
        return f"does not match [a-z]([-a-z0-9]*[a-z0-9]) ({SERVICE_ACCOUNT_ID_DOC})"
    return None


def bucket_name_problem(value: str) -> str | None:
    # https://cloud.google.com/storage/docs/buckets#naming: only lowercase letters, digits, '-',
    # '_' and '.'; start and end with a letter or digit; 3-63 characters, or up to 222 with dots
    # and at most 63 in each dot-separated component; not an IP address in dotted-decimal
    # notation; not beginning with "goog"; not containing "google" or close misspellings.
    problems = []
    if not re.fullmatch(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?", value):
        problems.append(
            "has characters other than a-z, 0-9, '-', '_' and '.', or does not start and end with a letter or digit"
        )
    limit = 222 if "." in value else 63
    if not 3 <= len(value) <= limit:
        problems.append(f"is {len(value)} characters, not 3-{limit}")
    if any(len(part) > 63 for part in value.split(".")):
        problems.append("has a dot-separated component longer than 63 characters")
    if re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", value):
        problems.append("is an IP address in dotted-decimal notation")
    if value.startswith("goog"):
        problems.append("begins with goog")
    if any(spelling in value for spelling in GOOGLE_SPELLINGS):
        problems.append("contains google or a close misspelling")
    return f"{'; '.join(problems)} ({BUCKET_NAME_DOC})" if problems else None


@dataclass(frozen=True)
class IdRule:
    attribute: str
    what: str
    problem: Callable[[str], str | None]
    project_wide: bool  # unique in the GCP project (two stages there must not share it)

    def check(self, value: object) -> str | None:
        return self.problem(value) if isinstance(value, str) else f"is {value!r}, not a string"


ID_RULES = {
    "google_iam_workload_identity_pool": IdRule(
        "workload_identity_pool_id", "workload identity pool id", pool_id_problem, True
    ),
    # Unique within its pool only.
    "google_iam_workload_identity_pool_provider": IdRule(
        "workload_identity_pool_provider_id", "workload identity pool provider id", provider_id_problem, False
    ),
    "google_service_account": IdRule("account_id", "service account id", service_account_id_problem, True),
    # Global, and given per stage (it is the CDK stage's gcp.bucket).
    "google_storage_bucket": IdRule("name", "bucket name", bucket_name_problem, False),
}


def id_samples() -> list[str]:
    """Values tried on every variable that feeds an id: each rule's edges, valid and not."""
    letters = "abcdefghijklmnopqrstuvwxyz" * 10
    lengths = (0, 1, 2, 3, 4, 5, 6, 7, 18, 19, 20, 21, 25, 26, 28, 29, 30, 31, 32, 33, 62, 63, 64)
    return [letters[:n] for n in lengths] + [
        "yuba",
        "yuba-dev",
        "yuba-prod",
        "yuba-aws",
        "aws",
        "aws-account",
        "yuba-dev-replica",
        "Yuba-dev",
        "yuba_dev",
        "yuba.dev",
        "yuba dev",
        "-yuba",
        "yuba-",
        "_yuba",
        "yuba_",
        ".yuba",
        "yuba.",
        "1yuba",
        "yuba1",
        "123",
        "gcp",
        "gcp-",
        "gcp-yuba",
        "gcpyuba",
        "x-gcp-yuba",
        "goog",
        "goog-replica",
        "my-google-replica",
        "my-g00gle-replica",
        "my-go0gle-replica",
        "gogle-replica",
        "192.168.5.4",
        "192.168.5",
        "1.2.3.4.5",
        "my.replica.example.com",
        "a" * 63 + "." + "b" * 63,
        "a" * 64 + ".b",
        ".".join(["a" * 63] * 3 + ["a" * 30]),
        ".".join(["a" * 63] * 3 + ["a" * 31]),
    ]


SAMPLES = id_samples()


def cdk_stage_prefix_rule() -> re.Pattern:
    """The CDK's rule for a stage prefix (STAGE_PREFIX in cdk/lib/config.ts), read from there: it
    names the stage's AWS roles, and terraform's aws_stage_prefix must refuse exactly what it
    refuses. (A JavaScript regex literal of the syntax Python's re shares.)"""
    text = CDK_CONFIG.read_text()
    m = re.search(r"^export const STAGE_PREFIX = /(.+)/;$", text, re.M)
    if not m:
        raise ToolError(f"{cfg_rel(CDK_CONFIG)} no longer defines STAGE_PREFIX as a regex literal; update this script")
    return re.compile(m.group(1))


CDK_PREFIX = cdk_stage_prefix_rule()
STAGE_PREFIX_VARIABLE = "aws_stage_prefix"
DEV, PROD = "yuba-dev", "yuba-prod"  # the CDK app's stages' prefixes
# The stage prefixes the example is tried with: the CDK app's two stages, and its rule's edges.
STAGE_PREFIXES = {
    DEV: "the dev stage",
    PROD: "the prod stage",
    "yuba-" + "x" * 15: "20 characters, the longest the CDK allows",
    "y": "1 character, the shortest the CDK allows",
}
# The file that names the AWS roles of the CDK app's programs (programs.<name>.role, the role
# being PREFIX-ROLE), and which of the module's role lists a program's binary belongs in: the
# programs that reach GCS, as the workers or as the reconciler. None: needs no GCP access.
AWS_IAM_CONTRACT = ROOT / "cdk" / "lib" / "generated" / "aws-iam.json"
GCP_ROLE_LISTS = {
    "yuba-worker": "worker_role_arns",
    "yuba-reconciler": "reconciler_role_arns",
    "yuba-serve": "serve_role_arns",
    "yuba-ingest": None,
}


@dataclass
class Deployment:
    """A root module with its inputs: a module with its defaults, or the example with its
    terraform.tfvars.example."""

    root: HclModule
    inputs: dict[str, object]
    label: str
    modules: dict[Path, HclModule]

    def instance(self, **override: object) -> Instance:
        values = {**self.inputs, **override}
        return Instance(self.root, self.modules, {k: (lambda v=v: v) for k, v in values.items()})


@dataclass
class Made:
    """One id a deployment creates: its resource, rule and value (or why it has none)."""

    instance: Instance
    key: tuple[tuple[str, ...], str, str]  # (module calls from the root, resource type, name)
    rule: IdRule
    value: object = None
    error: Exception | None = None

    @property
    def resource(self) -> tuple[str, str]:
        return self.key[1:]


def made_ids(root: Instance, only: set[tuple] | None = None, path: tuple[str, ...] = ()) -> list[Made]:
    """Every id the root and the modules it calls create (or those of `only`), evaluated."""
    out = []
    for (rtype, name), attrs in root.module.resources.items():
        rule = ID_RULES.get(rtype)
        if rule is None or (only is not None and (path, rtype, name) not in only):
            continue
        made = Made(root, (path, rtype, name), rule)
        try:
            if rule.attribute not in attrs:
                raise Unsupported(f"has no {rule.attribute}")
            made.value = root.eval(attrs[rule.attribute])
        except (EvalError, Unsupported) as e:
            made.error = e
        out.append(made)
    for call in root.module.calls:
        if only is None or any(key[0][: len(path) + 1] == (*path, call) for key in only):
            out += made_ids(root.child(call), only, (*path, call))
    return out


def deployments(cfg: Config) -> tuple[list[Deployment], list[Deployment]]:
    """The modules that create ids, with their defaults; the roots that call a module, with their
    terraform.tfvars.example."""
    modules = cfg.modules
    own = [
        Deployment(m, {}, f"{cfg_rel(d)} (its defaults)", modules)
        for d, m in sorted(modules.items())
        if any(rtype in ID_RULES for rtype, _ in m.resources)
    ]
    roots = []
    for d, m in sorted(modules.items()):
        if not m.calls:
            continue
        inputs, label = {}, cfg_rel(d)
        for example in sorted(d.glob("*.tfvars.example")):
            inputs = tfvars_values(example)
            label = f"{cfg_rel(d)} with {example.name}"
        roots.append(Deployment(m, inputs, label, modules))
    return own, roots


def resource_where(cfg: Config, made: Made) -> str:
    for r in cfg.resources:
        if r.module.resolve() == made.instance.module.dir and (r.type, r.name) == made.resource:
            return cfg.where(r)
    return f"{cfg_rel(made.instance.module.dir)}: {'.'.join(made.resource)}"


def id_failures(cfg: Config, made: list[Made], context: str, unset_ok: bool) -> list[Failure]:
    out = []
    for m in made:
        if isinstance(m.error, Unset) and unset_ok:
            continue  # a required input: checked through the example and the validations
        if m.error is not None:
            out.append(
                Failure(f"{context}: {resource_where(cfg, m)}", f"the {m.rule.what} cannot be evaluated: {m.error}")
            )
        elif (problem := m.rule.check(m.value)) is not None:
            out.append(Failure(f"{context}: {resource_where(cfg, m)}", f"{m.rule.what} {m.value!r} {problem}"))
    return out


def accepted(root: Instance) -> bool:
    """Whether terraform would accept the inputs: the validations of every variable read while
    evaluating the ids (after made_ids), in the root and the modules it calls."""

    def instances(inst: Instance) -> list[Instance]:
        return [inst] + [i for call in inst.module.calls for i in instances(inst.child(call))]

    for inst in instances(root):
        for name in sorted(inst.reads):
            try:
                inst.var(name)
            except Unset:
                continue
            except EvalError:
                return False
            if inst.failed_validations(name):
                return False
    return True


def validation_failures(dep: Deployment, exact: bool) -> list[Failure]:
    """Each variable the deployment's ids are made of, tried with SAMPLES: its validations (and
    the module's, for the example) must refuse every value that makes an invalid id and, when
    `exact` (the module's own variables), accept every value that makes only valid ones."""
    out = []
    fed_by: dict[str, set[tuple]] = {}  # variable -> the ids it is read for
    for made in made_ids(dep.instance()):
        inst = dep.instance()
        made_ids(inst, {made.key})
        for name in inst.reads:
            fed_by.setdefault(name, set()).add(made.key)
    for name, keys in sorted(fed_by.items()):
        where = f"{dep.label}: var.{name}"
        if exact and not dep.root.variables[name].validations:
            out.append(Failure(where, "feeds a Google id or name but has no validation block"))
            continue
        if exact:
            for _, message in dep.root.variables[name].validations:
                if "https://cloud.google.com/" not in str(constant(message)):
                    out.append(Failure(where, "a validation's error_message does not name Google's document"))
        outcomes = set()
        for sample in SAMPLES:
            inst = dep.instance(**{name: sample})
            fed = [m for m in made_ids(inst, keys) if not isinstance(m.error, Unset)]
            broken = [m for m in fed if m.error is not None or m.rule.check(m.value) is not None]
            ok = accepted(inst) and not any(m.error for m in fed)
            outcomes.add(ok)
            if ok and broken:
                m = broken[0]
                out.append(
                    Failure(
                        where,
                        f"accepts {sample!r}, which makes the {m.rule.what} {m.value!r}: it {m.rule.check(m.value)}",
                    )
                )
            elif exact and not ok and not broken:
                out.append(
                    Failure(
                        where,
                        f"refuses {sample!r}, which makes only valid ids ({', '.join(repr(m.value) for m in fed)})",
                    )
                )
        if outcomes != {True, False}:
            out.append(
                Failure(
                    where,
                    f"{'accepts' if True in outcomes else 'refuses'} every sample: the samples "
                    "should find a value it accepts and one it refuses",
                )
            )
    return out


def stage_failures(cfg: Config, dep: Deployment, base: list[Made]) -> list[Failure]:
    """The example with each of STAGE_PREFIXES: valid ids (those that differ from `base`, which
    are reported already), and none shared by dev and prod."""
    out = []
    seen = {(m.key, repr(m.value)) for m in base}
    project_ids: dict[str, set[tuple[str, object]]] = {}
    for prefix, what in STAGE_PREFIXES.items():
        made = made_ids(dep.instance(**{STAGE_PREFIX_VARIABLE: prefix}))
        new = [m for m in made if (m.key, repr(m.value)) not in seen]
        out += id_failures(cfg, new, f"{dep.label}, {STAGE_PREFIX_VARIABLE} = {prefix!r} ({what})", False)
        project_ids[prefix] = {(m.rule.what, m.value) for m in made if m.rule.project_wide and m.error is None}
    for what, value in sorted(project_ids[DEV] & project_ids[PROD], key=str):
        out.append(
            Failure(
                dep.label,
                f"dev and prod in one GCP project would both create the {what} {value!r}: "
                f"derive it from {STAGE_PREFIX_VARIABLE}",
            )
        )
    return out


def check_ids(cfg: Config) -> list[Failure]:
    out = []
    own, roots = deployments(cfg)
    for dep in own:
        made = made_ids(dep.instance())
        out += id_failures(cfg, made, dep.label, True)
        out += validation_failures(dep, exact=True)
        cfg.notes.append(
            f"ids of {dep.label}: " + ", ".join(f"{m.rule.what} {m.value!r}" for m in made if m.error is None)
        )
    for dep in roots:
        made = made_ids(dep.instance())
        out += id_failures(cfg, made, dep.label, False)
        out += validation_failures(dep, exact=False)
        if STAGE_PREFIX_VARIABLE in dep.root.variables:
            out += stage_failures(cfg, dep, made)
        cfg.notes.append(
            f"ids of {dep.label}: " + ", ".join(f"{m.rule.what} {m.value!r}" for m in made if m.error is None)
        )
    if not own:
        out.append(Failure(cfg.rel(cfg.root), f"no module creates any of {', '.join(ID_RULES)}"))
    return out


def check_role_contract(cfg: Config) -> list[Failure]:
    """The roles the example trusts are the CDK app's: PREFIX-ROLE for each program with a role
    in cdk/lib/generated/aws-iam.json, in the list its binary's access belongs in."""
    out = []
    where = cfg_rel(AWS_IAM_CONTRACT)
    try:
        programs = json.loads(AWS_IAM_CONTRACT.read_text())["programs"]
    except (OSError, ValueError, KeyError) as e:
        return [Failure(where, f"cannot read the programs' roles: {e}")]
    roles: dict[str, list[str]] = {arg: [] for arg in GCP_ROLE_LISTS.values() if arg is not None}
    for program, p in sorted(programs.items()):
        if p.get("binary") not in GCP_ROLE_LISTS:
            out.append(
                Failure(
                    where,
                    f"programs.{program}: binary {p.get('binary')!r} is unknown to "
                    "check_terraform.py; say in GCP_ROLE_LISTS whether it reaches GCS",
                )
            )
        elif GCP_ROLE_LISTS[p["binary"]] is not None:
            if not p.get("role"):
                out.append(
                    Failure(
                        where,
                        f"programs.{program} reaches GCS but has no fixed role name "
                        "(role: null), so terraform cannot trust it",
                    )
                )
            else:
                roles[GCP_ROLE_LISTS[p["binary"]]].append(p["role"])

    _, roots = deployments(cfg)
    roots = [dep for dep in roots if any("worker_role_arns" in args for args in dep.root.calls.values())]
    if not roots:
        out.append(Failure(cfg.rel(cfg.root), "no root module passes worker_role_arns to the module"))
    for dep in roots:
        if STAGE_PREFIX_VARIABLE not in dep.root.variables:
            out.append(
                Failure(
                    dep.label,
                    f"no variable {STAGE_PREFIX_VARIABLE}: the role ARNs must be derived from "
                    "the CDK stage's prefix, not typed",
                )
            )
            continue
        # The variable is the CDK's prefix: it must refuse exactly what the CDK refuses.
        for sample in SAMPLES + list(STAGE_PREFIXES):
            inst = dep.instance(**{STAGE_PREFIX_VARIABLE: sample})
            ok = not inst.failed_validations(STAGE_PREFIX_VARIABLE)
            if ok != bool(CDK_PREFIX.fullmatch(sample)):
                out.append(
                    Failure(
                        f"{dep.label}: var.{STAGE_PREFIX_VARIABLE}",
                        f"{'accepts' if ok else 'refuses'} {sample!r}, which the CDK's stage prefix rule "
                        f"{CDK_PREFIX.pattern} (cdk/lib/config.ts) {'refuses' if ok else 'accepts'}",
                    )
                )
                break
        for prefix in (DEV, PROD):
            inst = dep.instance(**{STAGE_PREFIX_VARIABLE: prefix})
            for call, args in dep.root.calls.items():
                if "worker_role_arns" not in args:
                    continue
                child = inst.child(call)
                for arg, suffixes in roles.items():
                    if arg not in args:
                        if suffixes:
                            out.append(
                                Failure(
                                    dep.label,
                                    f"module.{call} is not given {arg}, so the CDK app's roles "
                                    f"{', '.join(suffixes)} ({where}) cannot act as their service account",
                                )
                            )
                        continue
                    try:
                        account, got = inst.var("aws_account_id"), child.var(arg)
                    except (EvalError, Unsupported) as e:
                        out.append(Failure(dep.label, f"module.{call}.{arg} cannot be evaluated: {e}"))
                        continue
                    want = [f"arn:aws:iam::{account}:role/{prefix}-{suffix}" for suffix in suffixes]
                    if sorted(got) != sorted(want):
                        out.append(
                            Failure(
                                f"{dep.label}, {STAGE_PREFIX_VARIABLE} = {prefix!r}",
                                f"module.{call}.{arg} is {got}, but the CDK app's roles "
                                f"({where}: programs.*.role) are {want}",
                            )
                        )
    return out


# --- yuba-serve's access ------------------------------------------------------------------
#
# yuba-serve reads the replica and writes back only the variants it renders on a miss. Its read
# grant has no condition: listing is authorised on the bucket (an IAM condition sees the bucket's
# resource name, projects/_/buckets/BUCKET, for storage.objects.list; Google's 403 for exactly
# that is quoted in https://github.com/lanes-sh/link/pull/100), so a condition on object names
# would refuse every list. Its write grant is roles/storage.objectCreator, create only (a
# write with ifGenerationMatch=0 never overwrites; "To replace an existing object, both
# storage.objects.create and storage.objects.delete permissions are required",
# https://cloud.google.com/storage/docs/access-control/iam-permissions), under the variants'
# prefix only: resource.name.startsWith("projects/_/buckets/BUCKET/objects/PREFIX")
# (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name). Conditions on
# a bucket need uniform bucket-level access
# (https://cloud.google.com/storage/docs/access-control/iam#conditions), which check_buckets holds.

SERVE_ACCOUNT = "google_service_account.serve"
READER_ROLE = "roles/storage.objectViewer"
CREATOR_ROLE = "roles/storage.objectCreator"
VARIANTS_PREFIX_VARIABLE = "variants_prefix"
VARIANTS_CONDITION = re.compile(
    r"resource\.name\.startsWith\(([\"'])projects/_/buckets/\$\{google_storage_bucket\.([\w-]+)\.name\}"
    r"/objects/\$\{var\." + VARIANTS_PREFIX_VARIABLE + r"\}\1\)"
)
# Values of variants_prefix and whether terraform must accept them: the prefix is all of
# yuba-serve's write access, so it must end a path segment ("_variants" would admit
# "_variants-x"), be literal and fit in the condition's CEL string, and stay off the parts.
VARIANTS_PREFIX_SAMPLES = {
    "_variants/": True,
    "v/": True,
    "yuba/variants/": True,
    "": False,
    "/": False,
    "_variants": False,
    "/_variants/": False,
    "{variant}/": False,
    'a"b/': False,
    "a\\b/": False,
    "_yuba-parts/": False,
    "_yuba-parts/v/": False,
}


def serve_bindings(cfg: Config) -> list[Resource]:
    """The bucket grants whose members include yuba-serve's service account."""
    return [
        r
        for r in cfg.resources
        if r.type.startswith("google_storage_bucket_iam_")
        and refers_to(cfg.resolve(r.module, r.body.get("member", r.body.get("members", ""))), SERVE_ACCOUNT)
    ]


def condition_expression(cfg: Config, r: Resource) -> str | None:
    found = blocks(r.body, "condition")
    if not found:
        return None
    return " ".join(cfg.resolve(r.module, found[0].get("expression", "")).split())


def serve_write_problems(cfg: Config, r: Resource, buckets: set[str]) -> list[str]:
    role = cfg.value(r.module, r.body.get("role", ""))
    expression = condition_expression(cfg, r)
    out = []
    if role != CREATOR_ROLE:
        out.append(
            f"yuba-serve gets {role}; only {CREATOR_ROLE} (create, never overwrite or delete: ifGenerationMatch=0)"
        )
    if expression is None:
        out.append(
            f"an unconditioned write role {role} on the bucket: yuba-serve may write under var.{VARIANTS_PREFIX_VARIABLE} only"
        )
        return out
    m = VARIANTS_CONDITION.fullmatch(expression)
    if m is None or m.group(2) not in buckets:
        out.append(
            f'condition {expression!r} is not resource.name.startsWith("projects/_/buckets/'
            f'${{google_storage_bucket.NAME.name}}/objects/${{var.{VARIANTS_PREFIX_VARIABLE}}}")'
        )
    return out


def check_serve_access(cfg: Config) -> list[Failure]:
    where = cfg.rel(cfg.root)
    if not any(r.name == "serve" for r in cfg.of_type("google_service_account")):
        return [Failure(where, f"no {SERVE_ACCOUNT} (yuba-serve's identity)")]
    buckets = {r.name for r in cfg.of_type("google_storage_bucket")}
    grants = serve_bindings(cfg)
    reads = [r for r in grants if cfg.value(r.module, r.body.get("role", "")) == READER_ROLE]
    writes = [r for r in grants if r not in reads]
    out = []
    if not any(condition_expression(cfg, r) is None for r in reads):
        out.append(
            Failure(where, f"yuba-serve has no unconditioned {READER_ROLE} on the bucket: it cannot read and list")
        )
    for r in reads:
        if condition_expression(cfg, r) is not None:
            out.append(
                Failure(
                    cfg.where(r),
                    f"{READER_ROLE} with a condition: listing is authorised on the bucket, so a "
                    "condition on object names refuses every list",
                )
            )
    if not writes:
        out.append(Failure(where, "yuba-serve has no write grant: it cannot write back a variant rendered on a miss"))
    for r in writes:
        out += [Failure(cfg.where(r), problem) for problem in serve_write_problems(cfg, r, buckets)]
    return out


def check_variants_prefix(cfg: Config) -> list[Failure]:
    """The validations of var.variants_prefix accept a prefix exactly when it is safe to grant."""
    out = []
    for d, m in sorted(cfg.modules.items()):
        if not any(rtype == "google_service_account" and name == "serve" for rtype, name in m.resources):
            continue
        label = f"{cfg_rel(d)}: var.{VARIANTS_PREFIX_VARIABLE}"
        if VARIANTS_PREFIX_VARIABLE not in m.variables:
            out.append(Failure(label, "is not declared: yuba-serve's write condition is made of it"))
            continue
        dep = Deployment(m, {}, cfg_rel(d), cfg.modules)
        for sample, ok in VARIANTS_PREFIX_SAMPLES.items():
            accepted = not dep.instance(**{VARIANTS_PREFIX_VARIABLE: sample}).failed_validations(
                VARIANTS_PREFIX_VARIABLE
            )
            if accepted != ok:
                out.append(Failure(label, f"{'accepts' if accepted else 'refuses'} {sample!r}"))
    return out


CHECKS = [
    check_presence,
    check_buckets,
    check_pool_providers,
    check_iam,
    check_outputs,
    check_versions,
    check_skip_comments,
    check_tfvars_examples,
    check_ids,
    check_role_contract,
    check_serve_access,
    check_variants_prefix,
]


def assertions(root: Path) -> tuple[Config, list[Failure]]:
    cfg = Config(root)
    failures = list(cfg.errors)
    for check in CHECKS:
        failures += check(cfg)
    return cfg, failures


# --- checkov -------------------------------------------------------------------------------


def ensure_checkov() -> Path:
    """.venv/checkov with scripts/requirements-checkov.txt, re-made when that file changes."""
    want = hashlib.sha256(CHECKOV_REQ.read_bytes()).hexdigest()
    stamp = CHECKOV_VENV / ".stamp"
    exe = CHECKOV_VENV / "bin" / "checkov"

    def fresh() -> bool:
        return stamp.exists() and stamp.read_text().strip() == want and exe.exists()

    if fresh():
        return exe
    CHECKOV_VENV.parent.mkdir(parents=True, exist_ok=True)
    # Serialize with parallel runs (make -j, several worktrees' hooks); same idea as bootstrap.sh.
    with open(CHECKOV_VENV.parent / "checkov.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if fresh():
            return exe
        log(f"installing {CHECKOV_REQ.relative_to(ROOT)} into {CHECKOV_VENV.relative_to(ROOT)} (once)")
        started = time.monotonic()
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(CHECKOV_VENV)],
            [
                str(CHECKOV_VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "-r",
                str(CHECKOV_REQ),
            ],
        ]
        for cmd in steps:
            if subprocess.run(cmd).returncode != 0:
                raise ToolError(f"could not install checkov: {' '.join(cmd)} failed")
        stamp.write_text(want + "\n")
        log(f"checkov installed in {time.monotonic() - started:.0f} s")
    return exe


def start_checkov(exe: Path, root: Path, out_dir: Path) -> subprocess.Popen:
    env = {**os.environ, **CHECKOV_ENV}
    cmd = [
        str(exe),
        "--directory",
        str(root),
        "--framework",
        "terraform",
        "--skip-download",
        "--output",
        "json",
        "--output-file-path",
        str(out_dir),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)


def finish_checkov(proc: subprocess.Popen, out_dir: Path) -> dict:
    output, _ = proc.communicate(timeout=600)
    report = out_dir / "results_json.json"
    if proc.returncode not in (0, 1) or not report.exists():
        raise ToolError(f"checkov exited {proc.returncode} without a report:\n{output}")
    data = json.loads(report.read_text())
    merged: dict = {
        "passed_checks": [],
        "failed_checks": [],
        "skipped_checks": [],
        "parsing_errors": 0,
        "resource_count": 0,
    }
    # One report per framework; with --framework terraform, one (a list only when there are more).
    for rep in data if isinstance(data, list) else [data]:
        for key in ("passed_checks", "failed_checks", "skipped_checks"):
            merged[key] += rep.get("results", {}).get(key, [])
        merged["parsing_errors"] += rep.get("summary", {}).get("parsing_errors", 0)
        merged["resource_count"] += rep.get("summary", {}).get("resource_count", 0)
    return merged


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def checkov_failures(result: dict, root: Path) -> list[Failure]:
    out = []
    for c in result["failed_checks"]:
        lines = c.get("file_line_range") or [0, 0]
        out.append(
            Failure(
                f"{cfg_rel(root)}/{c.get('file_path', '?').lstrip('/')}:{lines[0]}: {c.get('resource')}",
                f"checkov {c['check_id']} failed: {c.get('check_name')}",
            )
        )
    for c in result["skipped_checks"]:
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        if len(reason.strip()) < MIN_SKIP_REASON or reason.strip() == "No comment provided":
            out.append(
                Failure(
                    f"{cfg_rel(root)}/{c.get('file_path', '?').lstrip('/')}: {c.get('resource')}",
                    f"checkov {c['check_id']} skipped without a written reason",
                )
            )
    if result["parsing_errors"]:
        out.append(Failure(cfg_rel(root), f"checkov could not parse {result['parsing_errors']} file(s)"))
    if not result["passed_checks"]:
        out.append(Failure(cfg_rel(root), "checkov passed no check at all: it scanned nothing"))
    return out


# --- terraform fmt -------------------------------------------------------------------------


def terraform_fmt(root: Path) -> list[Failure] | None:
    exe = shutil.which("terraform")
    if exe is None:
        return None
    p = subprocess.run([exe, "fmt", "-check", "-recursive", "-diff", str(root)], capture_output=True, text=True)
    if p.returncode == 0:
        return []
    return [
        Failure(
            cfg_rel(root),
            f"terraform fmt -check failed (run `terraform fmt -recursive terraform`):\n{p.stdout}{p.stderr}",
        )
    ]


# --- self-test -----------------------------------------------------------------------------

MAIN = "modules/yuba-gcp/main.tf"
OUTPUTS = "modules/yuba-gcp/outputs.tf"
VARIABLES = "modules/yuba-gcp/variables.tf"
EXAMPLE_MAIN = "examples/basic/main.tf"
EXAMPLE_VARIABLES = "examples/basic/variables.tf"
EXAMPLE_TFVARS = "examples/basic/terraform.tfvars.example"
KEY = 'resource "google_service_account_key" "leak" {\n  service_account_id = google_service_account.worker.name\n}\n'
PROJECT_IAM = (
    'resource "google_project_iam_member" "broad" {\n  project = var.project_id\n'
    '  role    = "roles/storage.admin"\n  member  = google_service_account.worker.member\n}\n'
)
OTHER_BUCKET_IAM = (
    'resource "google_storage_bucket_iam_member" "elsewhere" {\n  bucket = "someone-elses-bucket"\n'
    '  role   = "roles/storage.objectViewer"\n  member = google_service_account.worker.member\n}\n'
)
SERVE_ADMIN = (
    'resource "google_storage_bucket_iam_member" "serve_admin" {\n'
    "  bucket = google_storage_bucket.replica.name\n"
    '  role   = "roles/storage.objectAdmin"\n'
    "  member = google_service_account.serve.member\n}\n"
)
TOKEN_CREATOR = (
    'resource "google_service_account_iam_member" "impersonate" {\n'
    "  service_account_id = google_service_account.worker.name\n"
    '  role               = "roles/iam.serviceAccountTokenCreator"\n'
    '  member             = "user:someone@example.com"\n}\n'
)

# (what is broken, file under terraform/, text to find (regex), replacement (may use \\1) or None
#  to append `extra`, extra, what a failure must mention)
MUTATIONS = [
    (
        "uniform bucket-level access off",
        MAIN,
        r"uniform_bucket_level_access = true",
        "uniform_bucket_level_access = false",
        None,
        "uniform_bucket_level_access",
    ),
    (
        "public access prevention inherited",
        MAIN,
        r'public_access_prevention\s*=\s*"enforced"',
        'public_access_prevention = "inherited"',
        None,
        "public_access_prevention",
    ),
    (
        "parts rule on another prefix",
        MAIN,
        r'parts_prefix = "_yuba-parts/"',
        'parts_prefix = "_parts/"',
        None,
        PARTS_PREFIX,
    ),
    ("parts rule after a month", MAIN, r"\bage\s*=\s*1\n", "age = 30\n", None, PARTS_PREFIX),
    ("service account key", MAIN, None, None, KEY, "google_service_account_key"),
    ("project-wide IAM", MAIN, None, None, PROJECT_IAM, "google_project_iam_member"),
    ("IAM on another bucket", MAIN, None, None, OTHER_BUCKET_IAM, "IAM only on the replica bucket"),
    ("token creator on a service account", MAIN, None, None, TOKEN_CREATOR, "serviceAccountTokenCreator"),
    ("whole pool may impersonate", MAIN, r"/attribute\.aws_role/\$\{p\}", "/*", None, "principalSet"),
    (
        "condition without the account",
        MAIN,
        r"assertion\.account == '\$\{var\.aws_account_id\}' && ",
        "",
        None,
        "aws_account_id",
    ),
    (
        "condition without the roles",
        MAIN,
        r" && attribute\.aws_role in \$\{jsonencode\([^\n]*\)\}\"",
        '"',
        None,
        "var.worker_role_arns",
    ),
    (
        "role mapping changed",
        MAIN,
        r"assertion\.arn\.extract\('assumed-role/\{role_name\}/'\)",
        "assertion.arn",
        None,
        "attribute.aws_role",
    ),
    (
        "checkov skip without a reason",
        MAIN,
        r"#checkov:skip=CKV_GCP_62:[^\n]*",
        "#checkov:skip=CKV_GCP_62",
        None,
        "without a written reason",
    ),
    (
        "credential configuration without impersonation",
        OUTPUTS,
        r"\n\s*service_account_impersonation_url\s*=[^\n]*",
        "",
        None,
        "generateAccessToken",
    ),
    # Google's ids and names (check_ids), and the roles the CDK app names (check_role_contract).
    (
        "provider id of 3 characters",
        VARIABLES,
        r'default     = "aws-account"',
        'default     = "aws"',
        None,
        "workload identity pool provider id 'aws' is not 4-32",
    ),
    (
        "pool id with Google's prefix",
        VARIABLES,
        r'default     = "yuba-aws"',
        'default     = "gcp-yuba"',
        None,
        "workload identity pool id 'gcp-yuba' begins with gcp-",
    ),
    (
        "31-character service account id",
        EXAMPLE_TFVARS,
        None,
        None,
        'name_prefix = "yuba-development-eu1"\n',
        "service account id 'yuba-development-eu1-reconciler' is 31 characters",
    ),
    (
        "bucket name containing google",
        EXAMPLE_TFVARS,
        r'bucket_name = "yuba-dev-replica"',
        'bucket_name = "yuba-google-replica"',
        None,
        "bucket name 'yuba-google-replica' contains google",
    ),
    (
        "provider id validation removed",
        VARIABLES,
        r'(variable "pool_provider_id" \{[^}]*?)\n  validation \{.*?\n  \}\n',
        "\\1",
        None,
        "var.pool_provider_id: feeds a Google id or name but has no validation",
    ),
    (
        "bucket validation lets google through",
        VARIABLES,
        r'\["google", ',
        "[",
        None,
        "var.bucket_name: accepts 'my-google-replica'",
    ),
    (
        "name_prefix validation one character too long",
        VARIABLES,
        r"length\(id\) <= 30",
        "length(id) <= 31",
        None,
        "var.name_prefix: accepts 'abcdefghijklmnopqrst'",
    ),
    (
        "stage prefix not cut to 19 characters",
        EXAMPLE_MAIN,
        r"substr\(var\.aws_stage_prefix, 0, 19\)",
        "var.aws_stage_prefix",
        None,
        "the longest the CDK allows",
    ),
    (
        "dev and prod share the pool",
        EXAMPLE_MAIN,
        r'"\$\{local\.name_prefix\}-aws"',
        '"yuba-aws"',
        None,
        "dev and prod in one GCP project would both create the workload identity pool id 'yuba-aws'",
    ),
    ("a role suffix renamed in the example", EXAMPLE_MAIN, r"-worker-task", "-worker-fargate", None, "programs.*.role"),
    (
        "stage prefix looser than the CDK's",
        EXAMPLE_VARIABLES,
        r"\{0,19\}",
        "{0,39}",
        None,
        "which the CDK's stage prefix rule",
    ),
    # yuba-serve's access (check_serve_access, check_variants_prefix, check_role_contract).
    (
        "serve writes anywhere (the condition removed)",
        MAIN,
        r'\n  condition \{\n    title       = "variants-only".*?\n  \}\n',
        "\n",
        None,
        "an unconditioned write role roles/storage.objectCreator",
    ),
    (
        "serve writes under the whole bucket (the prefix left out of the condition)",
        MAIN,
        r"/objects/\$\{var\.variants_prefix\}",
        "/objects/",
        None,
        "is not resource.name.startsWith",
    ),
    (
        "serve may overwrite and delete (objectUser)",
        MAIN,
        r'creator_role = "roles/storage\.objectCreator"',
        'creator_role = "roles/storage.objectUser"',
        None,
        "only roles/storage.objectCreator",
    ),
    (
        "serve admin on the whole bucket",
        MAIN,
        None,
        None,
        SERVE_ADMIN,
        "an unconditioned write role roles/storage.objectAdmin",
    ),
    (
        "serve reads under the prefix only",
        MAIN,
        r'("serve_reads" \{.*?member = google_service_account\.serve\.member\n)',
        r'\1  condition {\n    title      = "v"\n    expression = "resource.name.startsWith(\\"projects/_/buckets/b/objects/v/\\")"\n  }\n',
        None,
        "refuses every list",
    ),
    (
        "variants_prefix without its trailing slash",
        VARIABLES,
        r' && endswith\(var\.variants_prefix, "/"\)',
        "",
        None,
        "var.variants_prefix: accepts '_variants'",
    ),
    (
        "the pool does not admit yuba-serve's roles",
        MAIN,
        r", local\.serve_principals\)",
        ")",
        None,
        "var.serve_role_arns",
    ),
    (
        "the example trusts no serve role",
        EXAMPLE_MAIN,
        r"\n  serve_role_arns      = local\.serve_role_arns",
        "",
        None,
        "is not given serve_role_arns",
    ),
    (
        "no serve credentials output",
        OUTPUTS,
        r'output "serve_credentials_json"',
        'output "serve_json"',
        None,
        "no output serve_credentials_json",
    ),
    (
        "stage prefix may start with gcp",
        EXAMPLE_VARIABLES,
        r' && !startswith\(var\.aws_stage_prefix, "gcp"\)',
        "",
        None,
        "which the CDK's stage prefix rule",
    ),
]


def mutate(copy: Path, file: str, pattern: str | None, replacement: str | None, extra: str | None) -> None:
    path = copy / file
    text = path.read_text()
    if pattern is None:
        text += "\n" + (extra or "")
    else:
        new, n = re.subn(pattern, lambda m: m.expand(replacement), text, flags=re.S)
        if n == 0:
            raise ToolError(f"self-test: {pattern!r} no longer matches terraform/{file}; update MUTATIONS")
        text = new
    path.write_text(text)


def self_test(root: Path, checkov_exe: Path | None) -> list[Failure]:
    out = []
    with tempfile.TemporaryDirectory(prefix="yuba-tf-selftest-") as tmp:
        base = Path(tmp) / "pristine"
        shutil.copytree(root, base, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
        _, baseline = assertions(base)
        if baseline:
            return [Failure("self-test", "the unbroken copy already fails; fix those first")]
        # The checkov case runs in the background while the assertion cases run.
        ck = None
        if checkov_exe is not None:
            ck_root = Path(tmp) / "checkov-case"
            shutil.copytree(base, ck_root)
            mutate(ck_root, MAIN, r"uniform_bucket_level_access = true", "uniform_bucket_level_access = false", None)
            ck_out = Path(tmp) / "checkov-case-report"
            ck = (start_checkov(checkov_exe, ck_root, ck_out), ck_out)
        try:
            for i, (what, file, pattern, replacement, extra, expect) in enumerate(MUTATIONS):
                copy = Path(tmp) / f"case{i}"
                shutil.copytree(base, copy)
                mutate(copy, file, pattern, replacement, extra)
                _, failures = assertions(copy)
                if not any(expect in str(f) for f in failures):
                    seen = "; ".join(str(f) for f in failures) or "nothing"
                    out.append(
                        Failure(
                            "self-test",
                            f"broken copy ({what}) was not caught: expected a failure "
                            f"mentioning {expect!r}, got {seen}",
                        )
                    )
                shutil.rmtree(copy)
            if ck is not None:
                result = finish_checkov(*ck)
                if not any(c["check_id"] == "CKV_GCP_29" for c in result["failed_checks"]):
                    out.append(
                        Failure(
                            "self-test",
                            "checkov did not fail a bucket without uniform bucket-level "
                            "access (CKV_GCP_29): is it scanning anything?",
                        )
                    )
        finally:
            if ck is not None:
                stop(ck[0])
        log(
            f"self-test: {len(MUTATIONS)} broken copies{' + 1 through checkov' if ck else ''}, "
            f"{'all caught' if not out else f'{len(out)} not caught'}"
        )
    return out


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=TF_DIR, help="terraform root to check (default: terraform/)")
    ap.add_argument("--self-test", action="store_true", help="only the self-test")
    ap.add_argument("--no-checkov", action="store_true", help="skip checkov (assertions, self-test and fmt only)")
    ap.add_argument("--no-self-test", action="store_true", help="skip the self-test")
    args = ap.parse_args()
    root = args.dir.resolve()
    started = time.monotonic()
    failures: list[Failure] = []
    main_ck = None
    try:
        checkov_exe = None if args.no_checkov else ensure_checkov()
        if checkov_exe is not None and not args.self_test:
            # In the background: checkov takes seconds, the rest a fraction of one.
            ck_dir = Path(tempfile.mkdtemp(prefix="yuba-tf-checkov-"))
            main_ck = (start_checkov(checkov_exe, root, ck_dir), ck_dir)

        if not args.self_test:
            cfg, found = assertions(root)
            log(
                f"assertions: {len(cfg.files)} files, {len(cfg.resources)} resources, "
                f"{'ok' if not found else f'{len(found)} failed'}"
            )
            for note in cfg.notes:
                log(f"  {note}")
            failures += found

        if not args.no_self_test:
            failures += self_test(root, checkov_exe)

        if main_ck is not None:
            result = finish_checkov(*main_ck)
            found = checkov_failures(result, root)
            skipped = ", ".join(sorted({c["check_id"] for c in result["skipped_checks"]})) or "none"
            log(
                f"checkov: {len(result['passed_checks'])} passed, {len(result['failed_checks'])} failed, "
                f"{len(result['skipped_checks'])} skipped inline ({skipped})"
            )
            for c in result["skipped_checks"]:
                reason = (c.get("check_result") or {}).get("suppress_comment", "")
                log(f"  skipped {c['check_id']} on {c.get('resource')}: {reason}")
            failures += found
        elif not args.self_test:
            log("checkov: not run (--no-checkov)")

        if not args.self_test:
            fmt = terraform_fmt(root)
            if fmt is None:
                log("terraform fmt: skipped, no terraform binary on PATH")
            else:
                log(f"terraform fmt -check: {'ok' if not fmt else 'failed'}")
                failures += fmt
    except ToolError as e:
        log(f"error: {e}")
        return 2
    finally:
        if main_ck is not None:
            stop(main_ck[0])
            shutil.rmtree(main_ck[1], ignore_errors=True)

    for f in failures:
        print(f"FAIL {f}", flush=True)
    log(f"{'passed' if not failures else f'{len(failures)} failure(s)'} in {time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
