/**
 * The stage's image registry: the ECR repository the Fargate worker and the scheduled reconciler
 * pull their image from. A stack of its own, deployed before the main stack (which depends on
 * it), because the image must be pushed into the repository between the two deploys: a service
 * whose image does not exist yet would fail its first deployment.
 *
 * Tags are immutable (a tag names one image forever; the task definitions name the digest
 * anyway), images are scanned on push, and old images expire so that the repository does not
 * grow without bound; the number kept covers many rollbacks.
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { Construct } from 'constructs';
import { StageConfig, imageRepositoryName } from './config';

/** Images kept; an older one cannot be rolled back to. */
export const IMAGES_KEPT = 50;

export interface RegistryStackProps extends StackProps {
  readonly config: StageConfig;
}

export class RegistryStack extends Stack {
  readonly repository: ecr.Repository;

  constructor(scope: Construct, id: string, props: RegistryStackProps) {
    super(scope, id, props);
    const c = props.config;
    this.repository = new ecr.Repository(this, 'Repository', {
      repositoryName: imageRepositoryName(c),
      imageTagMutability: ecr.TagMutability.IMMUTABLE,
      imageScanOnPush: true,
      encryption: ecr.RepositoryEncryption.AES_256,
      lifecycleRules: [
        { description: 'pushes that were never tagged', tagStatus: ecr.TagStatus.UNTAGGED, maxImageAge: Duration.days(14) },
        { description: `keep the last ${IMAGES_KEPT} images`, tagStatus: ecr.TagStatus.ANY, maxImageCount: IMAGES_KEPT },
      ],
      // The only copy of every image ever deployed: kept with the stage's data. A DESTROY of a
      // repository that still holds images fails; empty it first (README, "Remove a stage").
      removalPolicy: c.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
    new CfnOutput(this, 'RepositoryUri', { value: this.repository.repositoryUri, description: 'skopeo copy ... docker://<this>:<tag>' });
  }
}
