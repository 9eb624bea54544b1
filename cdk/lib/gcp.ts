/**
 * The GCP side's inputs: the workload identity federation configurations terraform/ writes
 * (`worker_credentials_json`, `reconciler_credentials_json`, and `serve_credentials_json` for the
 * delivery origin). They hold no secret (the pool's provider and the service account to
 * impersonate), so they travel as YUBA_GCS_CREDENTIALS in the environment; the AWS roles that run
 * the programs are the federated principals, and their names are fixed (see roleNames) because
 * terraform must know their ARNs before they exist.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Construct } from 'constructs';
import { StageConfig } from './config';
import { placeholderMode, refuseDeployment } from './code';

/**
 * Synth with example GCP configurations where terraform's are absent (`make package`'s synth on a
 * machine without them): the stack then refuses every deploy, as with placeholder code.
 */
export const EXAMPLE_GCP_CONTEXT = 'yuba:exampleGcp';

function exampleGcpMode(scope: Construct): boolean {
  const v = scope.node.tryGetContext(EXAMPLE_GCP_CONTEXT);
  return v === true || v === 'true';
}

/**
 * The fixed role names terraform's worker_role_arns / reconciler_role_arns / serve_role_arns must
 * list: the stage prefix and each program's role suffix from the permissions contract the Rust
 * tests generate (lib/generated/aws-iam.json), so the roles and the contract cannot disagree.
 */
const CONTRACT = JSON.parse(fs.readFileSync(path.join(__dirname, 'generated', 'aws-iam.json'), 'utf8'));

export function roleNames(c: StageConfig) {
  const role = (program: string): string => {
    const suffix = CONTRACT.programs?.[program]?.role;
    if (typeof suffix !== 'string') throw new Error(`lib/generated/aws-iam.json: programs.${program}.role is not a role name`);
    return `${c.prefix}-${suffix}`;
  };
  return {
    lambdaWorker: role('worker-lambda'),
    fargateWorker: role('worker-task'),
    reconciler: role('reconciler-task'),
    serve: role('serve-lambda'),
  };
}

/**
 * What a synth-only stack carries when no terraform output is at hand (placeholder mode). The
 * pool and provider are terraform/modules/yuba-gcp's defaults (pool_id, pool_provider_id).
 */
export function exampleCredentials(serviceAccount: string): string {
  return JSON.stringify({
    universe_domain: 'googleapis.com',
    type: 'external_account',
    audience: '//iam.googleapis.com/projects/000000000000/locations/global/workloadIdentityPools/yuba-aws/providers/aws-account',
    subject_token_type: 'urn:ietf:params:aws:token-type:aws4_request',
    token_url: 'https://sts.googleapis.com/v1/token',
    credential_source: {
      environment_id: 'aws1',
      region_url: 'http://169.254.169.254/latest/meta-data/placement/availability-zone',
      url: 'http://169.254.169.254/latest/meta-data/iam/security-credentials',
      regional_cred_verification_url: 'https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15',
      imdsv2_session_token_url: 'http://169.254.169.254/latest/api/token',
    },
    service_account_impersonation_url: `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${serviceAccount}:generateAccessToken`,
  });
}

/** The audience of a workload identity pool's provider, as terraform's outputs write it. */
const AUDIENCE = /^\/\/iam\.googleapis\.com\/projects\/[0-9]+\/locations\/global\/workloadIdentityPools\/([^/]+)\/providers\/([^/]+)$/;

/**
 * Google's rule for pool and provider ids alike: "This value must be 4-32 characters, and may
 * contain the characters [a-z0-9-]. The prefix gcp- is reserved for use by Google, and may not be
 * specified." (the documents below). The emulators take any id; Google's STS does not.
 */
const FEDERATION_ID = /^(?!gcp-)[a-z0-9-]{4,32}$/;
const POOL_ID_DOC = 'https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools/create';
const PROVIDER_ID_DOC = 'https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools.providers/create';

/** What is wrong with a configuration's audience, or undefined. */
function audienceProblem(audience: unknown): string | undefined {
  if (typeof audience !== 'string') return 'audience is missing';
  const m = AUDIENCE.exec(audience);
  if (!m) {
    return `audience is "${audience}", not //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`;
  }
  const ids: [string, string, string][] = [['pool', m[1], POOL_ID_DOC], ['provider', m[2], PROVIDER_ID_DOC]];
  for (const [what, id, doc] of ids) {
    if (!FEDERATION_ID.test(id)) {
      return `audience names the ${what} id "${id}", which Google refuses: pool and provider ids are 4-32 characters of [a-z0-9-] and do not begin with "gcp-" (${doc})`;
    }
  }
  return undefined;
}

/**
 * Reads and checks one credential configuration; returns it as compact JSON. The same fields the
 * programs check at start-up are checked here, so a wrong file fails `cdk synth`, not a deploy.
 */
export function loadCredentials(scope: Construct, file: string, which: 'worker' | 'reconciler' | 'serve'): string {
  const resolved = path.resolve(file);
  if (!fs.existsSync(resolved)) {
    if (placeholderMode(scope) || exampleGcpMode(scope)) {
      refuseDeployment(scope, `the GCP credential configuration ${file} is an example`);
      return exampleCredentials(`yuba-${which}@example-project.iam.gserviceaccount.com`);
    }
    throw new Error(
      `${resolved} not found: write it with 'terraform output -raw ${which}_credentials_json' (docs/DEPLOY.md, step 1), ` +
        `or -c ${EXAMPLE_GCP_CONTEXT}=true for a synth that cannot be deployed`,
    );
  }
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(fs.readFileSync(resolved, 'utf8'));
  } catch (e) {
    throw new Error(`${resolved}: not JSON: ${(e as Error).message}`);
  }
  const need = (field: string, ok: boolean) => {
    if (!ok) throw new Error(`${resolved}: ${field} is missing or wrong (expected terraform's ${which}_credentials_json)`);
  };
  need('type', doc.type === 'external_account');
  const audience = audienceProblem(doc.audience);
  if (audience) {
    throw new Error(`${resolved}: ${audience}; write it again from terraform/ with valid ids: 'terraform output -raw ${which}_credentials_json > ${file}'`);
  }
  need('subject_token_type', doc.subject_token_type === 'urn:ietf:params:aws:token-type:aws4_request');
  need('token_url', typeof doc.token_url === 'string');
  const source = doc.credential_source as Record<string, unknown> | undefined;
  need('credential_source.environment_id', source?.environment_id === 'aws1');
  need('credential_source.regional_cred_verification_url', typeof source?.regional_cred_verification_url === 'string');
  need('service_account_impersonation_url', typeof doc.service_account_impersonation_url === 'string');
  // A key file here would be a long-lived secret in plain sight: refuse it.
  need('private_key (must be absent)', !('private_key' in doc));
  return JSON.stringify(doc);
}
