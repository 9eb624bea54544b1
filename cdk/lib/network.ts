/**
 * The VPC and ECS cluster the Fargate worker and the reconciler run in.
 *
 * Tasks only make outbound HTTPS calls (S3, SQS, STS, ECR, CloudWatch Logs, Google): their
 * security group has no ingress and allows egress on 443 only. With `natGateways: 0` (dev) tasks
 * sit in public subnets with a public IP, which is safe without ingress and saves the NAT's cost;
 * otherwise in private subnets behind NAT. S3 traffic takes a gateway endpoint either way (free,
 * and the bulk of the bytes). Flow logs record rejected traffic for investigations.
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { Construct } from 'constructs';
import { StageConfig } from './config';
import { stageLogGroup } from './log-group';

export class Network extends Construct {
  readonly vpc: ec2.Vpc;
  readonly cluster: ecs.Cluster;
  readonly taskSecurityGroup: ec2.SecurityGroup;
  readonly subnets: ec2.SubnetSelection;
  readonly assignPublicIp: boolean;

  constructor(scope: Construct, id: string, props: { config: StageConfig }) {
    super(scope, id);
    const c = props.config;
    const isPublic = c.natGateways === 0;
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      vpcName: c.prefix,
      maxAzs: 2,
      natGateways: c.natGateways,
      subnetConfiguration: isPublic
        ? [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false }]
        : [
            { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
            { name: 'tasks', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
          ],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      restrictDefaultSecurityGroup: false,
    });
    const flowLogs = stageLogGroup(this, 'FlowLogs', c);
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });
    this.subnets = { subnetType: isPublic ? ec2.SubnetType.PUBLIC : ec2.SubnetType.PRIVATE_WITH_EGRESS };
    this.assignPublicIp = isPublic;

    this.taskSecurityGroup = new ec2.SecurityGroup(this, 'Tasks', {
      vpc: this.vpc,
      description: 'yuba tasks: no ingress, HTTPS out only',
      allowAllOutbound: false,
    });
    this.taskSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to AWS APIs and Google');

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      clusterName: c.prefix,
      vpc: this.vpc,
      enableFargateCapacityProviders: true,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
  }
}
