/** The source bucket's notifications, imported or created, through the queue or direct. */
import { synth } from './helpers';

const notificationConfig = (t: ReturnType<typeof synth>['template']) => {
  const found = Object.values(t.findResources('Custom::S3BucketNotifications')) as any[];
  expect(found).toHaveLength(1);
  return found[0].Properties;
};

test('imported bucket, queue mode: created and removed events go to the events queue, filtered', () => {
  const { template: t } = synth('dev', { source: { prefixes: ['photos/', 'avatars/'], suffixes: ['.jpg'] } });
  const p = notificationConfig(t);
  expect(p.BucketName).toBe('yuba-dev-images');
  expect(p.Managed).toBe(false); // an imported bucket keeps its other notifications
  const qc = p.NotificationConfiguration.QueueConfigurations;
  expect(qc).toHaveLength(4); // 2 events x 2 prefixes x 1 suffix
  expect(new Set(qc.map((c: any) => c.Events[0]))).toEqual(new Set(['s3:ObjectCreated:*', 's3:ObjectRemoved:*']));
  for (const c of qc) {
    const rules = c.Filter.Key.FilterRules.map((r: any) => `${r.Name}=${r.Value}`).sort();
    expect(rules[1]).toBe('suffix=.jpg');
  }
  // S3 may send to the events queue, from this bucket only.
  const policies = Object.values(t.findResources('AWS::SQS::QueuePolicy')) as any[];
  const s3Allow = policies.flatMap((q) => q.Properties.PolicyDocument.Statement).filter((s: any) => s.Principal?.Service === 's3.amazonaws.com');
  expect(s3Allow).toHaveLength(1);
  expect(s3Allow[0].Condition.ArnLike['aws:SourceArn']).toBeDefined();
  // ingest filters with the same lists.
  const ingest = (Object.values(t.findResources('AWS::Lambda::Function')) as any[]).find((f) => f.Properties.FunctionName === 'yuba-dev-ingest');
  expect(ingest.Properties.Environment.Variables.YUBA_FILTER_PREFIXES).toBe('photos/,avatars/');
});

test('direct mode: S3 invokes the ingest alias; no events queue', () => {
  const { template: t } = synth('dev', { notifications: 'direct' });
  const p = notificationConfig(t);
  expect(p.NotificationConfiguration.QueueConfigurations).toBeUndefined();
  expect(p.NotificationConfiguration.LambdaFunctionConfigurations).toHaveLength(2);
  const queues = (Object.values(t.findResources('AWS::SQS::Queue')) as any[]).map((q) => q.Properties.QueueName);
  expect(queues).not.toContain('yuba-dev-events');
  t.hasResourceProperties('AWS::Lambda::Permission', { Principal: 's3.amazonaws.com', Action: 'lambda:InvokeFunction' });
});

test('created bucket: private, TLS-only, versioned, access-logged', () => {
  const { template: t } = synth('dev', { source: { mode: 'create' } });
  t.hasResourceProperties('AWS::S3::Bucket', {
    BucketName: 'yuba-dev-images',
    VersioningConfiguration: { Status: 'Enabled' },
    PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
  });
  const bucket = (Object.values(t.findResources('AWS::S3::Bucket')) as any[]).find((b) => b.Properties.BucketName === 'yuba-dev-images');
  expect(bucket.Properties.LoggingConfiguration).toBeDefined();
});
