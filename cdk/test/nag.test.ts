/**
 * cdk-nag AwsSolutions: zero errors for every stage and the configuration variants that change
 * which resources exist; every acknowledgement carries a written reason and matches something.
 */
import { AwsSolutionsChecks } from 'cdk-nag';
import { Overrides, StageConfig, StageName } from '../lib/config';
import { acknowledgements } from '../lib/nag';
import { synth } from './helpers';

const cases: Array<[string, StageName, Overrides<StageConfig>]> = [
  ['dev', 'dev', {}],
  ['prod', 'prod', {}],
  ['dev, created bucket, delivery, direct notifications', 'dev', { source: { mode: 'create' }, delivery: { enabled: true }, notifications: 'direct' }],
  ['prod, source inventory', 'prod', { reconciler: { sourceInventory: { bucket: 'yuba-prod-inventories', folder: 'reports/yuba-prod-images/daily/', storageGiB: 100 } } }],
  ['prod, sharded over a source inventory', 'prod', { reconciler: { sourceInventory: { bucket: 'yuba-prod-inventories', folder: 'reports/yuba-prod-images/daily/', storageGiB: 100 }, shards: 16 } }],
  [
    'prod, SSE-KMS bucket, custom domain, WAF, geo restriction',
    'prod',
    {
      source: { kmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555' },
      delivery: {
        domainNames: ['images.example.com'],
        certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555',
        webAclArn: 'arn:aws:wafv2:us-east-1:123456789012:global/webacl/yuba/11111111-2222-3333-4444-555555555555',
        allowCountries: ['DE', 'FR'],
      },
    },
  ],
];

test.each(cases)('%s: no AwsSolutions errors', (_name, stage, overrides) => {
  const { stack } = synth(stage, overrides);
  const report = new AwsSolutionsChecks(stack).validateScope(stack);
  const errors = report.violations
    .filter((v) => v.severity === 'error')
    .map((v) => `${v.ruleName}: ${v.violatingResources.map((r: any) => r.constructPath ?? r.resourceLogicalId).join(', ')}`);
  expect(errors).toEqual([]);
  const warnings = report.violations.filter((v) => v.severity !== 'error').map((v) => v.ruleName);
  expect(warnings).toEqual([]);
  // Only the acknowledgements that depend on configuration may be unused.
  const unused = stack.unusedNagAcknowledgements.map((a) => a.id);
  for (const id of unused) expect(id).toMatch(/^AwsSolutions-(CFR\d|S1)$/);
});

test('every acknowledgement has a written reason', () => {
  const { stack } = synth('prod');
  for (const a of acknowledgements(stack, { sourceBucket: stack.source.bucket, hasCertificate: false, hasWebAcl: false, hasGeoRestriction: false })) {
    expect(a.reason.length).toBeGreaterThan(60);
  }
});
