//! Tidy checks, in the manner of rust-analyzer's: names that cross a boundary are defined once,
//! and every other place that spells them is generated from the definition or held to it here.
//! No server is needed; they read the repository.
//!
//! - Settings: `yuba_startup::catalog` is the definition. README's table and
//!   `cdk/lib/generated/settings.json` (which the CDK app checks every environment it sets
//!   against, `cdk/test/settings.test.ts`) are rendered from it; every `YUBA_` variable the
//!   programs read is in it, and everything in it is read.
//! - Reserved prefixes: the parts prefix the worker writes under (`yuba_gcs::PARTS_PREFIX`) is the
//!   one terraform's lifecycle rule deletes and its checks expect.

use std::collections::BTreeSet;

use yuba_e2e::{check_generated, check_generated_section, program_sources, repo_root};
use yuba_startup::catalog::{AWS_SDK_SETTINGS, Home, SETTINGS, is_setting, render_table};

const README: &str = "README.md";
const SETTINGS_BEGIN: &str = "<!-- settings: generated from libs/startup/src/catalog.rs";
const SETTINGS_END: &str = "<!-- settings: end -->";
const SETTINGS_CONTRACT: &str = "cdk/lib/generated/settings.json";
const CATALOG_FILE: &str = "libs/startup/src/catalog.rs";

/// Every `YUBA_…` token in `text` (upper case, digits and `_`), in order. A token ending in `_`
/// is a family (`YUBA_RECONCILE_*` in prose).
fn yuba_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("YUBA_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        tokens.push(&tail[..end]);
        rest = &tail[end..];
    }
    tokens
}

/// Whether a token names a setting, or is the family prefix of one.
fn is_known(token: &str) -> bool {
    if token.ends_with('_') {
        SETTINGS
            .iter()
            .flat_map(|s| s.names)
            .any(|name| name.starts_with(token))
    } else {
        is_setting(token)
    }
}

#[test]
fn the_readme_settings_table_is_rendered_from_the_catalog() {
    check_generated_section(README, SETTINGS_BEGIN, SETTINGS_END, &render_table());
}

#[test]
fn the_settings_contract_file_is_up_to_date() {
    check_generated(SETTINGS_CONTRACT, &render_contract());
}

#[test]
fn every_variable_the_programs_name_is_in_the_catalog() {
    let unknown: BTreeSet<String> = program_sources()
        .iter()
        .filter(|(path, _)| path != CATALOG_FILE)
        .flat_map(|(path, source)| {
            yuba_tokens(source)
                .into_iter()
                .filter(|token| !is_known(token))
                .map(move |token| format!("{path}: {token}"))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "variables no setting of {CATALOG_FILE} lists (add them there, with their meaning and \
         default, or correct the name): {unknown:#?}"
    );
}

#[test]
fn every_setting_in_the_catalog_is_read_by_a_program() {
    let sources = program_sources();
    let unread: Vec<&str> = SETTINGS
        .iter()
        .flat_map(|s| s.names.iter().copied())
        .filter(|name| {
            let quoted = format!("\"{name}\"");
            !sources
                .iter()
                .any(|(path, source)| path != CATALOG_FILE && source.contains(&quoted))
        })
        .collect();
    assert!(
        unread.is_empty(),
        "settings {CATALOG_FILE} lists that no program reads (a rename left the old name \
         behind?): {unread:?}"
    );
}

#[test]
fn the_token_scanner_finds_names_and_families() {
    let text = r#"env.optional("YUBA_GCS_BUCKET") // YUBA_RECONCILE_* and YUBA_NOT_A_SETTING."#;
    assert_eq!(
        yuba_tokens(text),
        ["YUBA_GCS_BUCKET", "YUBA_RECONCILE_", "YUBA_NOT_A_SETTING"]
    );
    assert!(is_known("YUBA_GCS_BUCKET") && is_known("YUBA_RECONCILE_"));
    // What the scan must catch: a misspelt or forgotten name.
    assert!(!is_known("YUBA_NOT_A_SETTING") && !is_known("YUBA_GCS_BUCKETS"));
}

/// The contract file: each setting, the executables that read it, and whether only off Lambda.
fn render_contract() -> String {
    let settings: serde_json::Map<String, serde_json::Value> = SETTINGS
        .iter()
        .flat_map(|setting| setting.names.iter().map(move |name| (*name, setting)))
        .map(|(name, setting)| {
            let programs: Vec<&str> = setting.used_by.iter().map(|p| p.binary()).collect();
            let entry = serde_json::json!({
                "programs": programs,
                "offLambdaOnly": setting.home == Home::OffLambda,
            });
            (name.to_owned(), entry)
        })
        .collect();
    let contract = serde_json::json!({
        "_comment": "Generated from libs/startup/src/catalog.rs by `cargo test` \
                     (tests/tests/e2e/tidy.rs); edit it there.",
        "settings": settings,
        "awsSdk": AWS_SDK_SETTINGS,
    });
    serde_json::to_string_pretty(&contract).expect("JSON") + "\n"
}

/// terraform's lifecycle rule deletes what a worker that died mid-upload left under the parts
/// prefix; if the two disagreed, the leftovers would be kept (and billed) forever.
#[test]
fn terraform_deletes_the_parts_prefix_the_worker_writes() {
    let expected = format!("parts_prefix = \"{}\"", yuba_gcs::PARTS_PREFIX);
    for (file, spelling) in [
        ("terraform/modules/yuba-gcp/main.tf", expected.clone()),
        (
            "scripts/check_terraform.py",
            format!("PARTS_PREFIX = \"{}\"", yuba_gcs::PARTS_PREFIX),
        ),
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
        assert!(
            text.contains(&spelling),
            "{file} does not spell the parts prefix as {spelling:?} (yuba_gcs::PARTS_PREFIX)"
        );
    }
}

/// CloudFront sends the variants' path prefix to yuba-serve (cdk/lib/delivery.ts); if the two
/// spellings disagreed, variant URLs would go to S3 and fail over only after its 403.
#[test]
fn cloudfront_routes_the_variants_prefix_the_origin_parses() {
    let file = "cdk/lib/delivery.ts";
    let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
    let spelling = format!(
        "VARIANTS_PATH_PATTERN = '/{}*'",
        yuba_delivery::path::VARIANTS_PREFIX
    );
    assert!(
        text.contains(&spelling),
        "{file} does not spell the variants' path pattern as {spelling:?} \
         (yuba_delivery::path::VARIANTS_PREFIX)"
    );
}

/// terraform lets yuba-serve create objects only under `variants_prefix`, whose default must be
/// where the default key template writes variants: else every write-back is refused.
#[test]
fn terraform_lets_the_origin_write_where_the_default_template_puts_variants() {
    let template = yuba_variants::KeyTemplate::DEFAULT;
    let prefix = &template[..template.find('{').expect("a placeholder")];
    let file = "terraform/modules/yuba-gcp/variables.tf";
    let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
    let block = &text[text
        .find("variable \"variants_prefix\"")
        .expect("variants_prefix")..];
    let default = format!("default     = \"{prefix}\"");
    assert!(
        block.contains(&default),
        "{file}: variants_prefix's default is not {prefix:?}, the literal start of \
         KeyTemplate::DEFAULT ({template})"
    );
}

/// The longest a function in libs/ may be before its reader loses the thread.
const MAX_FUNCTION_LINES: usize = 80;

/// Functions allowed to be longer, each with its reason: (file, function, why).
const LONG_FUNCTIONS: &[(&str, &str, &str)] = &[];

/// Every function in `source` as (name, first line, length in lines). It relies on rustfmt's
/// layout, which `make test` enforces: a body ends at the first `}` line at the indentation of
/// the line that opened it.
fn functions(source: &str) -> Vec<(&str, usize, usize)> {
    const QUALIFIERS: [&str; 4] = ["async ", "const ", "unsafe ", "extern \"C\" "];
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let mut rest = body;
        if let Some(after) = rest.strip_prefix("pub") {
            rest = match after.strip_prefix('(') {
                Some(scoped) => scoped.split_once(") ").map_or("", |(_, tail)| tail),
                None => after.strip_prefix(' ').unwrap_or(""),
            };
        }
        while let Some(qualifier) = QUALIFIERS.iter().find(|q| rest.starts_with(**q)) {
            rest = &rest[qualifier.len()..];
        }
        let Some(signature) = rest.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue; // a declaration in a trait
        }
        let name_end = signature
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(signature.len());
        let closing = format!("{indent}}}");
        if let Some(end) = (at..lines.len()).find(|&i| lines[i] == closing) {
            found.push((&signature[..name_end], at + 1, end - at + 1));
        }
    }
    found
}

#[test]
fn no_function_in_libs_is_longer_than_its_reader_can_follow() {
    let long: Vec<String> = program_sources()
        .iter()
        .filter(|(path, _)| path.starts_with("libs/"))
        .flat_map(|(path, source)| {
            functions(source)
                .into_iter()
                .filter(move |&(name, _, length)| {
                    length > MAX_FUNCTION_LINES
                        && !LONG_FUNCTIONS
                            .iter()
                            .any(|&(file, function, _)| file == path && function == name)
                })
                .map(move |(name, line, length)| format!("{path}:{line} {name}: {length} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: split them along their seams, or list one in \
         LONG_FUNCTIONS with the reason it reads better whole: {long:#?}"
    );
}

#[test]
fn the_function_scanner_measures_what_rustfmt_writes() {
    let source = "\
impl A {
    pub(crate) async fn short(&self) -> u8 {
        1
    }
}

pub fn long() {
    let a = 1;
    if a == 1 {
    }
}

trait T {
    fn declared(&self);
}
";
    assert_eq!(functions(source), [("short", 2, 3), ("long", 7, 5)]);
}
