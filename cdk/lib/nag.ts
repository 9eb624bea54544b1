/**
 * The cdk-nag (AwsSolutions) findings this app accepts, each with the reason it is accepted.
 *
 * Acknowledgements are made on the exact CloudFormation resources that trigger them (matched by
 * construct path), finding by finding (`Rule[Finding]`), never for a whole stack: a new resource
 * with the same weakness is reported. test/nag.test.ts asserts zero unacknowledged errors, and
 * that every acknowledgement here matched something (no stale entries).
 */
import { CfnResource, Stack, Token, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { IConstruct } from 'constructs';

export interface NagOptions {
  readonly sourceBucket: s3.IBucket;
  readonly hasCertificate: boolean;
  readonly hasWebAcl: boolean;
  readonly hasGeoRestriction: boolean;
  /** The reconciler's source inventory (bucket, configuration folder), when it reads one. */
  readonly sourceInventory?: { readonly bucket: string; readonly folder: string };
  /** The scheduled reconcile runs in key-range shards (lib/reconcile-fanout.ts). */
  readonly sharded?: boolean;
}

export interface Acknowledgement {
  /** Matched against the construct path below the stack (e.g. `Lambdas/WorkerRole/DefaultPolicy/Resource`). */
  readonly path: RegExp;
  readonly id: string;
  readonly reason: string;
}

/** The acknowledgements for one stack (some depend on its resources, e.g. the bucket's ARN). */
export function acknowledgements(stack: Stack, opts: NagOptions): Acknowledgement[] {
  const bucket = opts.sourceBucket;
  const owned = bucket.node.defaultChild as CfnResource | undefined;
  const objectsArn = owned ? `<${stack.getLogicalId(owned)}.Arn>/*` : `arn:<AWS::Partition>:s3:::${bucket.bucketName}/*`;
  const inArn = (value: string, pseudo: string) => (Token.isUnresolved(value) ? `<${pseudo}>` : value);
  const clusterTasksArn = `arn:<AWS::Partition>:ecs:${inArn(stack.region, 'AWS::Region')}:${inArn(stack.account, 'AWS::AccountId')}:task/<${logicalIdAt(stack, 'Network/Cluster/Resource')}>/*`;
  const list: Acknowledgement[] = [
    {
      path: /^FargateWorker\/TaskRole\/DefaultPolicy\/Resource$/,
      id: `AwsSolutions-IAM5[Resource::${clusterTasksArn}]`,
      reason:
        'The Fargate worker protects its own task from scale-in through the ECS agent, which calls ecs:UpdateTaskProtection with the task role; a task\'s ARN names its cluster but not its service, and the task ID is known only at run time, so the grant is this one action on the tasks of the stage\'s own cluster.',
    },
    {
      path: /^(Lambdas\/WorkerRole|FargateWorker\/TaskRole|Reconciler\/TaskRole)\/DefaultPolicy\/Resource$/,
      id: `AwsSolutions-IAM5[Resource::${objectsArn}]`,
      reason:
        'The workers replicate any key of the source bucket, so object-level reads need the bucket\'s object ARN with a wildcard; the statement allows only s3:GetObject (and s3:GetObjectVersion on a versioned bucket) on this one bucket.',
    },
    {
      path: /^(FargateWorker|Reconciler)\/Task\/ExecutionRole\/DefaultPolicy\/Resource$/,
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecr:GetAuthorizationToken, which ECS needs to pull the image, supports no resource but "*"; the image pull itself (ecr:BatchGetImage, GetDownloadUrlForLayer) and the log writes are scoped to the repository and the log group.',
    },
    {
      path: /^(FargateWorker|Reconciler)\/Task\/Resource$/,
      id: 'AwsSolutions-ECS2',
      reason:
        'The environment holds configuration, not secrets: queue URLs, bucket names, limits and the GCP external_account configuration, which by design holds no secret (the pool provider and the service account to impersonate; the token comes from the task role). Secrets Manager would add cost and a start-up dependency for no confidentiality.',
    },
    {
      path: /^Lambdas\/(Ingest|Worker)Deployment\/ServiceRole\/Resource$/,
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited]',
      reason:
        'CodeDeploy\'s own service role for Lambda canaries: the AWS-managed "Limited" policy lets it shift alias weights, read the rollback alarms and invoke lifecycle hooks (only functions named CodeDeployHook_*), which is what a canary needs and is maintained by AWS as the service changes.',
    },
    {
      path: /^BucketNotificationsHandler[0-9a-f]+\/Role\/Resource$/,
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason:
        'CDK\'s built-in custom resource that writes the bucket\'s notification configuration at deploy time (the only way to add notifications to an imported bucket); it runs only during deployments and its role is made by aws-cdk-lib.',
    },
    ...(['Ingest', 'Worker'] as const).map((which) => ({
      path: new RegExp(`^Lambdas/${which}Deployment/ServiceRole/DefaultPolicy/Resource$`),
      id: `AwsSolutions-IAM5[Resource::<${logicalIdAt(stack, `Lambdas/${which}Canary/PreTraffic/Resource`)}.Arn>:*]`,
      reason:
        'CodeDeploy invokes the pre-traffic probe (canary.ts) by whatever version or alias it resolves; CDK grants that as the function ARN with ":*", scoped to this one probe function.',
    })),
    {
      path: /^Lambdas\/CanaryBucket\/Resource$/,
      id: 'AwsSolutions-S1',
      reason:
        'The canary bucket holds the two small probe objects that each deployment rewrites; only the probes (PutObject on their key) and the Lambda worker (GetObject on those keys) may touch it, and CloudTrail records the writes.',
    },
    {
      path: /^AccessLogs\/Resource$/,
      id: 'AwsSolutions-S1',
      reason: 'This is the access-log bucket itself; logging its own access into itself would log the log writes, without end.',
    },
  ];
  if (opts.sourceInventory) {
    const { bucket: inventoryBucket, folder } = opts.sourceInventory;
    list.push({
      path: /^Reconciler\/TaskRole\/DefaultPolicy\/Resource$/,
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${inventoryBucket}/${folder}*]`,
      reason:
        'S3 Inventory names each report\'s folder by the time it began and its data files by random ids, so reading the newest report needs the configuration\'s folder with a wildcard; the statement allows only s3:GetObject under that one folder, and listing is held to it by the s3:prefix condition.',
    });
  }
  if (opts.sharded) {
    const plans = `<${logicalIdAt(stack, 'Reconciler/FanOut/Plans/Resource')}.Arn>/*`;
    const task = logicalIdAt(stack, 'Reconciler/Task/Resource');
    const part = (n: number) => `{"Fn::Select":[${n},{"Fn::Split":[":",{"Ref":"${task}"}]}]}`;
    const family = (n: number) => `{"Fn::Select":[${n},{"Fn::Split":["/",${part(5)}]}]}`;
    const anyRevision = `arn:${part(1)}:${part(2)}:${part(3)}:${part(4)}:${family(0)}/${family(1)}:*`;
    list.push(
      {
        path: /^Reconciler\/TaskRole\/DefaultPolicy\/Resource$/,
        id: `AwsSolutions-IAM5[Resource::${plans}]`,
        reason:
          'A sharded run keeps each run\'s plan, its shards\' parts of the report and their summaries under a folder named after the execution, in a bucket the stack makes for nothing else; the statement allows only s3:PutObject and s3:GetObject in it.',
      },
      {
        path: /^Reconciler\/FanOut\/StateMachine\/Role\/DefaultPolicy\/Resource$/,
        id: `AwsSolutions-IAM5[Resource::${anyRevision}]`,
        reason:
          'The state machine runs the reconciler\'s task definition by family (its latest revision), and CDK grants ecs:RunTask on that one family\'s revisions; nothing else may be run.',
      },
      {
        path: /^Reconciler\/FanOut\/StateMachine\/Role\/DefaultPolicy\/Resource$/,
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Waiting for an ECS task (.sync) needs ecs:DescribeTasks and ecs:StopTask, and delivering the execution\'s logs and X-Ray traces needs the CloudWatch Logs delivery and X-Ray APIs, none of which takes a resource but "*" (CDK\'s own grants for these integrations).',
      },
    );
  }
  if (!opts.hasCertificate) {
    list.push({
      path: /^Delivery\/Distribution\/Resource$/,
      id: 'AwsSolutions-CFR4',
      reason:
        'Without a custom domain the distribution uses the default *.cloudfront.net certificate, whose viewer TLS policy CloudFront fixes (TLSv1); set delivery.domainNames and delivery.certificateArn to enforce TLS 1.2 (TLSv1.2_2021 is configured for that case).',
    });
  }
  if (!opts.hasWebAcl) {
    list.push({
      path: /^Delivery\/Distribution\/Resource$/,
      id: 'AwsSolutions-CFR2',
      reason:
        'A read-only image CDN in front of a private bucket (OAC) and the replica server: GET/HEAD only, cached, no application logic to protect. Accounts whose policy requires WAF set delivery.webAclArn.',
    });
  }
  if (!opts.hasGeoRestriction) {
    list.push({
      path: /^Delivery\/Distribution\/Resource$/,
      id: 'AwsSolutions-CFR1',
      reason: 'Images are served to users everywhere; delivery.allowCountries restricts the distribution where a product must.',
    });
  }
  return list;
}

/** The logical id of the CloudFormation resource at `path` below the stack. */
function logicalIdAt(stack: Stack, path: string): string {
  const found = stack.node.tryFindChild(path.split('/')[0]) && stack.node.findAll().find((n) => n.node.path === `${stack.node.path}/${path}`);
  if (!found) return `(nothing at ${path})`;
  return stack.getLogicalId(found as CfnResource);
}

/** Applies the acknowledgements; returns those that matched no resource (for the test). */
export function applyNagSuppressions(stack: Stack, opts: NagOptions): Acknowledgement[] {
  const prefix = stack.node.path + '/';
  const unused: Acknowledgement[] = [];
  for (const ack of acknowledgements(stack, opts)) {
    const targets = stack.node.findAll().filter((n: IConstruct) => ack.path.test(n.node.path.startsWith(prefix) ? n.node.path.slice(prefix.length) : n.node.path));
    if (targets.length === 0) unused.push(ack);
    for (const t of targets) Validations.of(t).acknowledge({ id: ack.id, reason: ack.reason });
  }
  return unused;
}
