/** The GCP credential configurations synth takes: their audience must name a pool and provider Google accepts. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import { exampleCredentials, loadCredentials } from '../lib/gcp';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yuba-cdk-gcp-'));
const scope = () => new Stack(new App());
const PROJECT = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools';

/** The example configuration with another audience, loaded as synth loads terraform's output. */
function loadWithAudience(audience: unknown) {
  const doc = { ...JSON.parse(exampleCredentials('yuba-worker@p.iam.gserviceaccount.com')), audience };
  const file = path.join(dir, 'worker-gcp.json');
  fs.writeFileSync(file, JSON.stringify(doc));
  return () => loadCredentials(scope(), file, 'worker');
}

/** A default of terraform/modules/yuba-gcp/variables.tf. */
function terraformDefault(variable: string): string {
  const text = fs.readFileSync(path.join(__dirname, '..', '..', 'terraform', 'modules', 'yuba-gcp', 'variables.tf'), 'utf8');
  const m = new RegExp(`variable "${variable}" \\{[^}]*?default\\s*=\\s*"([^"]*)"`).exec(text);
  if (!m) throw new Error(`no default of ${variable} in the module`);
  return m[1];
}

test('the example configuration names the pool and provider terraform creates by default', () => {
  const audience: string = JSON.parse(exampleCredentials('w@p')).audience;
  expect(audience).toMatch(new RegExp(`/workloadIdentityPools/${terraformDefault('pool_id')}/providers/${terraformDefault('pool_provider_id')}$`));
  expect(JSON.parse(loadWithAudience(audience)()).audience).toBe(audience);
});

test.each([
  ['yuba', 'aws-account'],
  ['yuba-dev-aws', 'aws1'],
  ['a'.repeat(32), '0-9-'],
])('pool %s and provider %s are valid ids', (pool, provider) => {
  expect(() => loadWithAudience(`${PROJECT}/${pool}/providers/${provider}`)()).not.toThrow();
});

test.each([
  ['yuba', 'aws', /provider id "aws", which Google refuses: .*4-32 characters of \[a-z0-9-\]/],
  ['yub', 'aws-account', /pool id "yub", which Google refuses/],
  ['a'.repeat(33), 'aws-account', /pool id "a{33}"/],
  ['gcp-yuba', 'aws-account', /pool id "gcp-yuba", which Google refuses: .*do not begin with "gcp-"/],
  ['yuba-aws', 'gcp-aws', /provider id "gcp-aws"/],
  ['Yuba-aws', 'aws-account', /pool id "Yuba-aws"/],
  ['yuba_aws', 'aws-account', /pool id "yuba_aws"/],
])('pool %s with provider %s fails synth, naming the rule', (pool, provider, message) => {
  expect(loadWithAudience(`${PROJECT}/${pool}/providers/${provider}`)).toThrow(message);
});

test('the message names Google\'s document and how to write the file again', () => {
  expect(loadWithAudience(`${PROJECT}/yuba/providers/aws`)).toThrow(
    /projects\.locations\.workloadIdentityPools\.providers\/create.*terraform output -raw worker_credentials_json/,
  );
  expect(loadWithAudience(`${PROJECT}/gcp-yuba/providers/aws-account`)).toThrow(
    /https:\/\/cloud\.google\.com\/iam\/docs\/reference\/rest\/v1\/projects\.locations\.workloadIdentityPools\/create/,
  );
});

test.each([
  ['not a provider', '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/yuba-aws'],
  ['a project id for a number', '//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/yuba-aws/providers/aws-account'],
  ['another location', '//iam.googleapis.com/projects/123456789012/locations/europe-west1/workloadIdentityPools/yuba-aws/providers/aws-account'],
  ['a workforce pool', '//iam.googleapis.com/locations/global/workforcePools/yuba-aws/providers/aws-account'],
  ['another host', '//sts.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/yuba-aws/providers/aws-account'],
])('an audience that is %s fails synth', (_what, audience) => {
  expect(loadWithAudience(audience)).toThrow(/not \/\/iam\.googleapis\.com\/projects\/NUMBER\/locations\/global\/workloadIdentityPools\/POOL\/providers\/PROVIDER/);
});

test('a missing audience fails synth', () => {
  expect(loadWithAudience(undefined)).toThrow(/audience is missing/);
  expect(loadWithAudience(7)).toThrow(/audience is missing/);
});
