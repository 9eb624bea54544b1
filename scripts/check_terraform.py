#!/usr/bin/env python3
"""Offline checks of the GCP side (terraform/), the terraform part of `make test`.

No provider can be downloaded here, so `terraform validate` cannot run; instead:

1. assertions on every .tf file, parsed with python-hcl2: the properties yuba's security and
   its workers depend on (the bucket's access settings and its `_yuba-parts/` lifecycle rule,
   the federation's condition and grants, no keys, IAM on the bucket and the accounts only);
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
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "terraform"
CHECKOV_REQ = ROOT / "scripts" / "requirements-checkov.txt"
CHECKOV_VENV = ROOT / ".venv" / "checkov"

PARTS_PREFIX = "_yuba-parts/"
# Google's documented default mapping of AWS identities to attribute.aws_role.
AWS_ROLE_MAPPING = (
    "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/')"
    " + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
)
BUCKET_ROLES = {"roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin"}
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
        for path in tf_files(root):
            text = path.read_text()
            self.files[path] = text
            try:
                doc = hcl2.loads(text, serialization_options=OPTIONS)
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
            out.append(Failure(w, f"uniform_bucket_level_access is {json.dumps(r.body.get('uniform_bucket_level_access'))}, "
                                  "must be true (access by bucket IAM only, no object ACLs)"))
        if r.body.get("public_access_prevention") != "enforced":
            out.append(Failure(w, f"public_access_prevention is {json.dumps(r.body.get('public_access_prevention'))}, "
                                  "must be \"enforced\""))
        # Static, not dynamic: the rule must exist whatever the variables say.
        found = False
        for rule in blocks(r.body, "lifecycle_rule"):
            actions = blocks(rule, "action")
            conditions = blocks(rule, "condition")
            if not actions or not conditions:
                continue
            cond = conditions[0]
            prefixes = cfg.resolve(r.module, cond.get("matches_prefix", []))
            if (
                actions[0].get("type") == "Delete"
                and cond.get("age") == 1
                and PARTS_PREFIX in prefixes
            ):
                found = True
        if not found:
            out.append(Failure(w, f"no lifecycle_rule deleting objects under {PARTS_PREFIX!r} at age 1 "
                                  "(abandoned composite-upload parts would stay forever); it must be a "
                                  "plain lifecycle_rule block, not a dynamic one"))
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
            out.append(Failure(w, "attribute_mapping[\"attribute.aws_role\"] is not Google's documented "
                                  f"mapping of an assumed-role ARN to its role: {AWS_ROLE_MAPPING}"))
        if "google.subject" not in mapping:
            out.append(Failure(w, "attribute_mapping must map google.subject"))
        condition = cfg.resolve(r.module, r.body.get("attribute_condition", ""))
        if not condition:
            out.append(Failure(w, "no attribute_condition: every identity of the AWS account could exchange tokens"))
            continue
        if "var.aws_account_id" not in condition:
            out.append(Failure(w, "attribute_condition does not restrict the AWS account (var.aws_account_id)"))
        for var in ("var.worker_role_arns", "var.reconciler_role_arns"):
            if var not in condition:
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
            problems.append(f"{m!r} is not restricted to an AWS role (attribute.aws_role): a whole pool or another attribute")
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
                out.append(Failure(w, f"bucket = {r.body.get('bucket')!r}: IAM only on the replica bucket "
                                      "declared here (google_storage_bucket.NAME.name)"))
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
                out.append(Failure(w, f"service_account_id = {r.body.get('service_account_id')!r}: IAM only on "
                                      "the service accounts declared here"))
            role = cfg.value(r.module, r.body.get("role", ""))
            if role != "roles/iam.workloadIdentityUser":
                out.append(Failure(w, f"role {role!r} on a service account; only roles/iam.workloadIdentityUser "
                                      "(the AWS roles' federation) is granted there"))
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
        r for r in cfg.resources
        if r.type.startswith("google_service_account_iam_")
        and "workloadIdentityUser" in cfg.resolve(r.module, r.body.get("role", ""))
    ]
    if len(federated) < 2:
        out.append(Failure(where, "expected roles/iam.workloadIdentityUser grants for the workers' and the "
                                  f"reconciler's service accounts, found {len(federated)}"))
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
                    if isinstance(google, dict) and google.get("source") == "hashicorp/google" and google.get("version"):
                        pinned = True
        if not pinned:
            out.append(Failure(cfg.rel(module), "no terraform { required_providers { google = { source = "
                                                "\"hashicorp/google\", version = ... } } }"))
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
        if not any(r.module == module and r.type == "google_iam_workload_identity_pool_provider" for r in cfg.resources):
            continue
        for role in ("worker", "reconciler"):
            name = f"{role}_credentials_json"
            if name not in outputs:
                out.append(Failure(cfg.rel(module), f"no output {name} (the external_account file of the {role})"))
                continue
            text = cfg.resolve(module, outputs[name])
            missing = [m for m in CREDENTIAL_MARKERS if m not in text]
            if missing:
                out.append(Failure(f"{cfg.rel(module)}: output {name}",
                                   f"not an AWS external_account configuration: missing {missing}"))
    return out


def check_skip_comments(cfg: Config) -> list[Failure]:
    out = []
    for path, text in cfg.files.items():
        for n, line in enumerate(text.splitlines(), 1):
            m = SKIP_COMMENT.search(line)
            if m and len((m.group(2) or "").strip()) < MIN_SKIP_REASON:
                out.append(Failure(f"{cfg.rel(path)}:{n}", f"checkov skip of {m.group(1)} without a written "
                                                            "reason (#checkov:skip=ID:why it does not apply)"))
    for name in (".checkov.yaml", ".checkov.yml"):
        for d in (ROOT, cfg.root):
            if (d / name).exists():
                out.append(Failure(cfg.rel(d / name), "checkov configuration files could skip checks "
                                                      "out of sight; skip inline beside the resource"))
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


CHECKS = [check_presence, check_buckets, check_pool_providers, check_iam, check_outputs, check_versions,
          check_skip_comments, check_tfvars_examples]


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
            [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
             "--no-input", "-q", "-r", str(CHECKOV_REQ)],
        ]
        for cmd in steps:
            if subprocess.run(cmd).returncode != 0:
                raise ToolError(f"could not install checkov: {' '.join(cmd)} failed")
        stamp.write_text(want + "\n")
        log(f"checkov installed in {time.monotonic() - started:.0f} s")
    return exe


def start_checkov(exe: Path, root: Path, out_dir: Path) -> subprocess.Popen:
    env = {**os.environ, **CHECKOV_ENV}
    cmd = [str(exe), "--directory", str(root), "--framework", "terraform", "--skip-download",
           "--output", "json", "--output-file-path", str(out_dir)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=root)


def finish_checkov(proc: subprocess.Popen, out_dir: Path) -> dict:
    output, _ = proc.communicate(timeout=600)
    report = out_dir / "results_json.json"
    if proc.returncode not in (0, 1) or not report.exists():
        raise ToolError(f"checkov exited {proc.returncode} without a report:\n{output}")
    data = json.loads(report.read_text())
    merged: dict = {"passed_checks": [], "failed_checks": [], "skipped_checks": [], "parsing_errors": 0,
                    "resource_count": 0}
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
        out.append(Failure(f"{cfg_rel(root)}/{c.get('file_path', '?').lstrip('/')}:{lines[0]}: {c.get('resource')}",
                           f"checkov {c['check_id']} failed: {c.get('check_name')}"))
    for c in result["skipped_checks"]:
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        if len(reason.strip()) < MIN_SKIP_REASON or reason.strip() == "No comment provided":
            out.append(Failure(f"{cfg_rel(root)}/{c.get('file_path', '?').lstrip('/')}: {c.get('resource')}",
                               f"checkov {c['check_id']} skipped without a written reason"))
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
    return [Failure(cfg_rel(root), f"terraform fmt -check failed (run `terraform fmt -recursive terraform`):\n"
                                   f"{p.stdout}{p.stderr}")]


# --- self-test -----------------------------------------------------------------------------

MODULE = Path("modules/yuba-gcp")
KEY = 'resource "google_service_account_key" "leak" {\n  service_account_id = google_service_account.worker.name\n}\n'
PROJECT_IAM = ('resource "google_project_iam_member" "broad" {\n  project = var.project_id\n'
               '  role    = "roles/storage.admin"\n  member  = google_service_account.worker.member\n}\n')
OTHER_BUCKET_IAM = ('resource "google_storage_bucket_iam_member" "elsewhere" {\n  bucket = "someone-elses-bucket"\n'
                    '  role   = "roles/storage.objectViewer"\n  member = google_service_account.worker.member\n}\n')
TOKEN_CREATOR = ('resource "google_service_account_iam_member" "impersonate" {\n'
                 '  service_account_id = google_service_account.worker.name\n'
                 '  role               = "roles/iam.serviceAccountTokenCreator"\n'
                 '  member             = "user:someone@example.com"\n}\n')

# (what is broken, file, text to find (regex), replacement or None to append `extra`, extra,
#  what a failure must mention)
MUTATIONS = [
    ("uniform bucket-level access off", "main.tf", r"uniform_bucket_level_access = true",
     "uniform_bucket_level_access = false", None, "uniform_bucket_level_access"),
    ("public access prevention inherited", "main.tf", r'public_access_prevention\s*=\s*"enforced"',
     'public_access_prevention = "inherited"', None, "public_access_prevention"),
    ("parts rule on another prefix", "main.tf", r'parts_prefix = "_yuba-parts/"',
     'parts_prefix = "_parts/"', None, PARTS_PREFIX),
    ("parts rule after a month", "main.tf", r"\bage\s*=\s*1\n", "age = 30\n", None, PARTS_PREFIX),
    ("service account key", "main.tf", None, None, KEY, "google_service_account_key"),
    ("project-wide IAM", "main.tf", None, None, PROJECT_IAM, "google_project_iam_member"),
    ("IAM on another bucket", "main.tf", None, None, OTHER_BUCKET_IAM, "IAM only on the replica bucket"),
    ("token creator on a service account", "main.tf", None, None, TOKEN_CREATOR, "serviceAccountTokenCreator"),
    ("whole pool may impersonate", "main.tf", r"/attribute\.aws_role/\$\{p\}", "/*", None, "principalSet"),
    ("condition without the account", "main.tf", r"assertion\.account == '\$\{var\.aws_account_id\}' && ",
     "", None, "aws_account_id"),
    ("condition without the roles", "main.tf", r" && attribute\.aws_role in \$\{jsonencode\([^\n]*\)\}\"",
     '"', None, "var.worker_role_arns"),
    ("role mapping changed", "main.tf", r"assertion\.arn\.extract\('assumed-role/\{role_name\}/'\)",
     "assertion.arn", None, "attribute.aws_role"),
    ("checkov skip without a reason", "main.tf", r"#checkov:skip=CKV_GCP_62:[^\n]*", "#checkov:skip=CKV_GCP_62",
     None, "without a written reason"),
    ("credential configuration without impersonation", "outputs.tf",
     r"\n\s*service_account_impersonation_url\s*=[^\n]*", "", None, "generateAccessToken"),
]


def mutate(copy: Path, file: str, pattern: str | None, replacement: str | None, extra: str | None) -> None:
    path = copy / MODULE / file
    text = path.read_text()
    if pattern is None:
        text += "\n" + (extra or "")
    else:
        new, n = re.subn(pattern, lambda _m: replacement, text)
        if n == 0:
            raise ToolError(f"self-test: {pattern!r} no longer matches {MODULE / file}; update MUTATIONS")
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
            mutate(ck_root, "main.tf", r"uniform_bucket_level_access = true", "uniform_bucket_level_access = false", None)
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
                    out.append(Failure("self-test", f"broken copy ({what}) was not caught: expected a failure "
                                                    f"mentioning {expect!r}, got {seen}"))
                shutil.rmtree(copy)
            if ck is not None:
                result = finish_checkov(*ck)
                if not any(c["check_id"] == "CKV_GCP_29" for c in result["failed_checks"]):
                    out.append(Failure("self-test", "checkov did not fail a bucket without uniform bucket-level "
                                                    "access (CKV_GCP_29): is it scanning anything?"))
        finally:
            if ck is not None:
                stop(ck[0])
        log(f"self-test: {len(MUTATIONS)} broken copies{' + 1 through checkov' if ck else ''}, "
            f"{'all caught' if not out else f'{len(out)} not caught'}")
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
            log(f"assertions: {len(cfg.files)} files, {len(cfg.resources)} resources, "
                f"{'ok' if not found else f'{len(found)} failed'}")
            failures += found

        if not args.no_self_test:
            failures += self_test(root, checkov_exe)

        if main_ck is not None:
            result = finish_checkov(*main_ck)
            found = checkov_failures(result, root)
            skipped = ", ".join(sorted({c["check_id"] for c in result["skipped_checks"]})) or "none"
            log(f"checkov: {len(result['passed_checks'])} passed, {len(result['failed_checks'])} failed, "
                f"{len(result['skipped_checks'])} skipped inline ({skipped})")
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
