/**
 * The settings the programs read from their environment: the contract
 * `cdk/lib/generated/settings.json`, written from the Rust catalog (libs/startup/src/catalog.rs)
 * by `tests/tests/e2e/tidy.rs` under `cargo test`. A variable the program does not read is
 * ignored silently and its default used, so every environment the app sets is held to it:
 * `validate()` checks the reconciler's extra environment at synth, `cdk/test/settings.test.ts`
 * every environment in the synthesized templates.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface SettingsContract {
  readonly settings: Record<string, { readonly programs: string[]; readonly offLambdaOnly: boolean }>;
  /** The AWS SDK's own variables a deployment may set; every program leaves them to the SDK. */
  readonly awsSdk: string[];
}

export const SETTINGS_CONTRACT_FILE = path.join(__dirname, 'generated', 'settings.json');

export function loadSettingsContract(file = SETTINGS_CONTRACT_FILE): SettingsContract {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as SettingsContract;
}

export const SETTINGS: SettingsContract = loadSettingsContract();

/**
 * Why `program` (an executable, `yuba-worker`) would not read `name` where it runs, or undefined
 * when it does.
 */
export function settingProblem(contract: SettingsContract, program: string, onLambda: boolean, name: string): string | undefined {
  if (contract.awsSdk.includes(name)) return undefined;
  const setting = contract.settings[name];
  if (setting === undefined) return `${name} is no setting of any yuba program (lib/generated/settings.json)`;
  if (!setting.programs.includes(program)) return `${name} is read by ${setting.programs.join(', ')}, not ${program}`;
  if (onLambda && setting.offLambdaOnly) return `${name} is read only off Lambda; on Lambda it would be ignored`;
  return undefined;
}
