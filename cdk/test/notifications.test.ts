/** The source bucket's notifications, imported or created, through the queue or direct. */
import { AwsSolutionsChecks } from 'cdk-nag';
import { stageConfig } from '../lib/config';
import { eventBridgeKeyFilter } from '../lib/stack';
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

describe('eventbridge mode', () => {
  const statements = (t: ReturnType<typeof synth>['template']) =>
    (Object.values(t.findResources('AWS::SQS::QueuePolicy')) as any[]).flatMap((q) =>
      q.Properties.PolicyDocument.Statement.map((s: any) => ({ ...s, queues: q.Properties.Queues })),
    );
  const sourceRule = (t: ReturnType<typeof synth>['template']) => {
    const rules = Object.entries(t.findResources('AWS::Events::Rule')).filter(([, r]: [string, any]) => r.Properties.Name === 'yuba-dev-source-events');
    expect(rules).toHaveLength(1);
    return { id: rules[0][0], props: (rules[0][1] as any).Properties };
  };

  test('the bucket sends to EventBridge only; a rule sends its created and deleted events to the events queue', () => {
    const { template: t, stack } = synth('dev', { notifications: 'eventbridge' });
    // The bucket gets no S3 notification for these events, only EventBridge delivery, merged with
    // what the imported bucket already has (Managed: false keeps its other notifications).
    const p = notificationConfig(t);
    expect(p.NotificationConfiguration).toEqual({ EventBridgeConfiguration: {} });
    expect(p.Managed).toBe(false);
    expect(t.findResources('AWS::Lambda::Permission', { Properties: { Principal: 's3.amazonaws.com' } })).toEqual({});

    const events = stack.queues.events!;
    const { id: ruleId, props: rule } = sourceRule(t);
    expect(rule.State).toBe('ENABLED');
    expect(rule.EventPattern).toEqual({
      source: ['aws.s3'],
      'detail-type': ['Object Created', 'Object Deleted'],
      detail: { bucket: { name: ['yuba-dev-images'] } },
    });
    // The durable path: the events queue, with its DLQ for what EventBridge cannot deliver.
    expect(rule.Targets).toEqual([
      {
        Id: 'Target0',
        Arn: { 'Fn::GetAtt': [stack.getLogicalId(events.queue.node.defaultChild as any), 'Arn'] },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [stack.getLogicalId(events.dlq.node.defaultChild as any), 'Arn'] } },
        RetryPolicy: { MaximumEventAgeInSeconds: 86400, MaximumRetryAttempts: 185 },
      },
    ]);

    // EventBridge may send to the events queue and its DLQ, for this rule only; S3 to nothing.
    const all = statements(t);
    expect(all.filter((s: any) => s.Principal?.Service === 's3.amazonaws.com')).toEqual([]);
    const fromEvents = all.filter((s: any) => s.Principal?.Service === 'events.amazonaws.com');
    expect(fromEvents.map((s: any) => s.queues[0].Ref).sort()).toEqual(
      [stack.getLogicalId(events.queue.node.defaultChild as any), stack.getLogicalId(events.dlq.node.defaultChild as any)].sort(),
    );
    for (const s of fromEvents) {
      expect(s.Effect).toBe('Allow');
      expect(s.Condition).toEqual({ ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [ruleId, 'Arn'] } } });
      expect([s.Action].flat()).toContain('sqs:SendMessage');
      expect([s.Action].flat().every((a: string) => /^sqs:(SendMessage|GetQueueAttributes|GetQueueUrl)$/.test(a))).toBe(true);
    }
    // The queues stay TLS-only and SSE-SQS (EventBridge sends over TLS; SSE-SQS needs no key grant).
    for (const q of [events.queue, events.dlq]) {
      const id = stack.getLogicalId(q.node.defaultChild as any);
      expect(all.some((s: any) => s.queues[0].Ref === id && s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false')).toBe(true);
      expect(t.toJSON().Resources[id].Properties.SqsManagedSseEnabled).toBe(true);
    }

    // ingest still consumes the events queue.
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [stack.getLogicalId(events.queue.node.defaultChild as any), 'Arn'] },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  test('prefixes and suffixes become key matchers on detail.object.key', () => {
    const key = (source: object) => sourceRule(synth('dev', { notifications: 'eventbridge', source }).template).props.EventPattern.detail.object.key;
    expect(key({ prefixes: ['photos/', 'avatars/'] })).toEqual([{ prefix: 'photos/' }, { prefix: 'avatars/' }]);
    expect(key({ suffixes: ['.jpg', '.png'] })).toEqual([{ suffix: '.jpg' }, { suffix: '.png' }]);
    expect(key({ prefixes: ['photos/', 'avatars/'], suffixes: ['.jpg'] })).toEqual([{ wildcard: 'photos/*.jpg' }, { wildcard: 'avatars/*.jpg' }]);
  });

  test('a created bucket gets EventBridge delivery too, and the rule names it', () => {
    const { template: t, stack } = synth('dev', { notifications: 'eventbridge', source: { mode: 'create' } });
    expect(notificationConfig(t).NotificationConfiguration).toEqual({ EventBridgeConfiguration: {} });
    const bucketId = stack.getLogicalId(stack.source.bucket.node.defaultChild as any);
    expect(sourceRule(t).props.EventPattern.detail.bucket.name).toEqual([{ Ref: bucketId }]);
  });

  test('no AwsSolutions errors or warnings', () => {
    for (const source of [{}, { mode: 'create' as const }]) {
      const { stack } = synth('prod', { notifications: 'eventbridge', source });
      const report = new AwsSolutionsChecks(stack).validateScope(stack);
      expect(report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r: any) => r.constructPath ?? r.resourceLogicalId).join(', ')}`)).toEqual([]);
    }
  });

  test('queue and direct modes make no EventBridge rule for the bucket', () => {
    for (const notifications of ['queue', 'direct'] as const) {
      const { template: t } = synth('dev', { notifications });
      expect(Object.values(t.findResources('AWS::Events::Rule')).filter((r: any) => r.Properties.EventPattern?.source?.includes('aws.s3'))).toEqual([]);
      expect(notificationConfig(t).NotificationConfiguration.EventBridgeConfiguration).toBeUndefined();
    }
  });

  test('a misspelt mode or a pattern over EventBridge\'s size quota fails synth, naming the field', () => {
    expect(() => stageConfig('dev', { notifications: 'eventBridge' as any })).toThrow(/yuba:dev: notifications: "eventBridge" is not one of queue, direct, eventbridge/);
    const prefixes = Array.from({ length: 40 }, (_, i) => `customers/${i}/originals/`);
    expect(() => synth('dev', { notifications: 'eventbridge', source: { prefixes, suffixes: ['.jpg', '.jpeg', '.png'] } })).toThrow(
      /source.prefixes: .*event pattern of \d+ characters, more than EventBridge's 2048/,
    );
  });
});

describe('eventBridgeKeyFilter', () => {
  /** EventBridge's wildcard semantics: `*` any run, `\*` and `\\` literal. */
  const wildcardRegExp = (w: string) =>
    new RegExp(
      '^' +
        w
          .match(/\\[\\*]|\*|[^\\*]/g)!
          .map((t) => (t === '*' ? '.*' : (t.length === 2 ? t[1] : t).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
          .join('') +
        '$',
      's',
    );
  const matcher = (matchers: ReturnType<typeof eventBridgeKeyFilter>) => {
    if (matchers === undefined) return () => true;
    const tests = matchers.map((m): ((key: string) => boolean) => {
      if (typeof m === 'string') return (key) => key === m;
      if ('prefix' in m) return (key) => key.startsWith(m.prefix);
      if ('suffix' in m) return (key) => key.endsWith(m.suffix);
      const re = wildcardRegExp(m.wildcard);
      return (key) => re.test(key);
    });
    return (key: string) => tests.some((t) => t(key));
  };

  test('accepts exactly the keys ingest accepts, overlaps and literal * and \\ included', () => {
    const alphabet = ['a', 'b', '*', '\\', '/'];
    const keys: string[] = [''];
    for (let len = 1; len <= 5; len++) for (const k of keys.filter((k) => k.length === len - 1)) for (const c of alphabet) keys.push(k + c);
    const lists = [[], ['a'], ['ab'], ['a*'], ['\\'], ['ab', 'b/'], ['a*b', '']];
    const wrong: string[] = [];
    for (const prefixes of lists) {
      for (const suffixes of lists) {
        const eventBridge = matcher(eventBridgeKeyFilter(prefixes, suffixes));
        for (const key of keys) {
          const ingest = (!prefixes.length || prefixes.some((p) => key.startsWith(p))) && (!suffixes.length || suffixes.some((s) => key.endsWith(s)));
          if (eventBridge(key) !== ingest) wrong.push(`${JSON.stringify(prefixes)} x ${JSON.stringify(suffixes)}: ${JSON.stringify(key)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  test('overlapping prefix and suffix add the short keys as exact values', () => {
    expect(eventBridgeKeyFilter(['ab'], ['bc'])).toEqual([{ wildcard: 'ab*bc' }, 'abc']);
    expect(eventBridgeKeyFilter(['a*'], ['\\'])).toEqual([{ wildcard: 'a\\**\\\\' }]);
  });
});
