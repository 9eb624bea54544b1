/**
 * yuba-serve's Lambda home: the delivery origin behind CloudFront (delivery.ts). It reads the GCS
 * replica with its own keyless identity (terraform's serve service account, through the workload
 * identity pool: serve_credentials_json), renders a missing variant on demand and writes it back.
 *
 * - A function URL with `InvokeMode: RESPONSE_STREAM`, so an original larger than the 6 MB of a
 *   buffered response is served (up to 200 MB; past the first 6 MB at most 2 MB/s,
 *   https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html), and
 *   `AuthType: AWS_IAM`, which CloudFront's origin access control needs to sign for it
 *   (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-lambda.html).
 * - Outside any VPC: "Lambda function URLs do not support response streaming within a VPC
 *   environment" (the streaming page above).
 * - Its role may write its own log group and nothing else: the program calls no AWS API but
 *   sts:GetCallerIdentity, which needs no permission (lib/generated/aws-iam.json, serve-lambda).
 */
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { StageConfig, metricsNamespace } from './config';
import { rustLambdaCode } from './code';
import { roleNames } from './gcp';
import { stageLogGroup } from './log-group';

export interface ServeProps {
  readonly config: StageConfig;
  /** The serve identity's external_account configuration (YUBA_GCS_CREDENTIALS). */
  readonly credentials: string;
}

export class Serve extends Construct {
  readonly fn: lambda.Function;
  readonly url: lambda.FunctionUrl;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ServeProps) {
    super(scope, id);
    const c = props.config;
    const s = c.delivery.serve;
    const name = `${c.prefix}-serve`;
    this.logGroup = stageLogGroup(this, 'Logs', c, `/aws/lambda/${name}`);
    const role = new iam.Role(this, 'Role', {
      roleName: roleNames(c).serve,
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `yuba yuba-serve (${c.stage})`,
    });
    role.addToPolicy(
      new iam.PolicyStatement({ sid: 'WriteOwnLogs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [this.logGroup.logGroupArn] }),
    );
    this.fn = new lambda.Function(this, 'Function', {
      functionName: name,
      code: rustLambdaCode(this, 'yuba-serve'),
      handler: 'bootstrap',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.ARM_64,
      memorySize: s.memoryMiB,
      timeout: Duration.seconds(s.timeoutSeconds),
      role,
      logGroup: this.logGroup,
      reservedConcurrentExecutions: s.reservedConcurrency,
      environment: serveEnvironment(c, props.credentials),
      // The settings and IAM tests find the program by this description.
      description: `yuba yuba-serve (${c.stage})`,
    });
    this.url = this.fn.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.AWS_IAM, invokeMode: lambda.InvokeMode.RESPONSE_STREAM });
  }
}

/**
 * yuba-serve's environment on Lambda: the replica, its identity, the variant profiles the worker
 * renders (the same document, so a variant made on a miss is the worker's), logs and metrics as
 * the other programs have them. Not YUBA_SERVE_ADDRESS, which only the plain HTTP home reads.
 */
export function serveEnvironment(c: StageConfig, credentials: string): Record<string, string> {
  return {
    YUBA_LOG_FORMAT: 'json',
    YUBA_GCS_BUCKET: c.gcp.bucket,
    YUBA_GCS_CREDENTIALS: credentials,
    YUBA_METRICS_NAMESPACE: metricsNamespace(c),
    ...(c.variants ? { YUBA_VARIANTS: c.variants } : {}),
  };
}
