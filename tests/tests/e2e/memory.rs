//! Memory bounded whatever the images: decompression amplification sent many at once.
//!
//! The amplification image is a PNG of 7000 × 7000 16-bit RGBA pixels (49 MP, within every
//! limit) that compresses to a few hundred KB; decoded naively it is 392 MB, and one render of it
//! used to peak at 578 MB, eight at once at 4.3 GB. Here 8 (and 32) of them are put on the
//! worker's queue at once, with one more under `full/`, whose profile needs the image at full
//! size (more than the worker's whole images budget), through one worker process given
//! `YUBA_MEMORY_MIB` of memory. Asserted: the worker's peak RSS (`VmHWM`, read from /proc at the
//! end) stays within that memory; every original is replicated; every image that fits gets its
//! variants; the one that does not is recorded as `too_large_for_memory`; nothing is left on the
//! queue or dead-lettered.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use yuba_e2e::{
    Stack, amplification_png, check_generated, dump_logs, eventually, gcs_sha256, procstat,
    queue_depth, replica_of, sha256_hex,
};
use yuba_replicate::{
    ALLOCATOR_SLACK_PERCENT, Footprint, MEMORY_SETTING, MIN_IMAGES_BUDGET_MIB, PROCESS_BASE_MIB,
    images_budget,
};
use yuba_transform::{Limits, MemoryEstimate, estimate_memory};

/// The worker's whole memory: the base (64 MiB) and its uploads' buffers (10 MiB here) leave
/// (384 − 74) × 0.9 = 279 MiB for images, about two amplification renders at once.
const MEMORY_MIB: u64 = 384;
const TIMEOUT: Duration = Duration::from_secs(240);
const VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "large", "width": 1600, "height": 1600, "format": "jpeg"},
        {"name": "medium", "width": 800, "height": 800, "format": "webp"},
        {"name": "thumb", "width": 200, "height": 200, "fit": "cover", "format": "jpeg"},
        {"name": "full", "width": 7000, "height": 7000, "format": "png", "prefixes": ["full/"]}
    ]
}"#;

async fn amplification_at_once(name: &str, at_once: usize) -> anyhow::Result<()> {
    let stack = Stack::start(name, 3)?;
    let queue = stack.var("YUBA_FARGATE_QUEUE_URL").to_owned();
    let dlq = stack.var("YUBA_FARGATE_DLQ_URL").to_owned();
    let memory = MEMORY_MIB.to_string();
    let worker = stack.spawn(
        "yuba-worker",
        "worker",
        &[
            ("YUBA_QUEUE_URL", queue.as_str()),
            ("YUBA_VARIANTS", VARIANTS),
            ("YUBA_MEMORY_MIB", memory.as_str()),
            ("YUBA_CONCURRENCY", "8"),
            ("YUBA_UPLOAD_CHUNK_BYTES", "262144"),
        ],
    )?;
    let image = amplification_png();
    assert!(image.len() < 2_000_000, "{} bytes", image.len());
    let keys: Vec<String> = (0..at_once)
        .map(|i| format!("uploads/amplify-{i}.png"))
        .chain(["full/amplify.png".to_owned()])
        .collect();
    for key in &keys {
        stack.put(key, &image).await?;
    }
    for key in &keys {
        stack.enqueue_replicate(&queue, key).await?;
    }

    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let processes = [worker];
    for key in &keys {
        let replica = replica_of(&processes, &gcs, bucket, key, TIMEOUT).await?;
        assert_eq!(
            gcs_sha256(&gcs, bucket, key).await?,
            sha256_hex(&image),
            "{key}"
        );
        let variants = replica.metadata.get("yuba-variants").cloned();
        let error = replica.metadata.get("yuba-variants-error").cloned();
        if key.starts_with("full/") {
            assert_eq!(variants.as_deref(), None, "{key}");
            let error = error.unwrap_or_default();
            assert!(
                error.starts_with("too_large_for_memory: "),
                "{key}: {error}"
            );
        } else {
            assert_eq!(error, None, "{key}\n{}", dump_logs(&processes));
            assert_eq!(
                variants.as_deref(),
                Some("large.jpg,medium.webp,thumb.jpg"),
                "{key}"
            );
        }
    }
    let sqs = stack.sqs().await;
    eventually(Duration::from_secs(30), "the queue to drain", || async {
        Ok((queue_depth(&sqs, &queue).await? == 0).then_some(()))
    })
    .await?;
    assert_eq!(
        queue_depth(&sqs, &dlq).await?,
        0,
        "nothing is dead-lettered"
    );

    let peak = procstat::peak_rss_bytes(processes[0].pid()).expect("the worker's VmHWM") >> 20;
    println!("{at_once} amplification images at once: worker peak RSS {peak} MiB of {MEMORY_MIB}");
    assert!(
        peak <= MEMORY_MIB,
        "peak RSS {peak} MiB, more than the {MEMORY_MIB} MiB the worker was given\n{}",
        dump_logs(&processes)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_amplification_images_at_once_stay_within_the_budget() -> anyhow::Result<()> {
    amplification_at_once("memory-8", 8).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_amplification_images_at_once_stay_within_the_budget() -> anyhow::Result<()> {
    amplification_at_once("memory-32", 32).await
}

/// The sizing rule the CDK applies (`cdk/lib/config.ts`), generated from the worker's own:
/// its constants, the estimate of the photo it sizes for, and worked examples of
/// [`images_budget`] that the CDK's tests check its arithmetic against.
const SIZING_CONTRACT: &str = "cdk/lib/generated/memory.json";

/// The frame header of a 24 MP (6000 × 4000) progressive JPEG, 4:2:0: what a current camera
/// writes, and the largest ordinary photo the deployment is sized for.
fn photo_header() -> Vec<u8> {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC2, 0, 17, 8];
    jpeg.extend_from_slice(&4000u16.to_be_bytes());
    jpeg.extend_from_slice(&6000u16.to_be_bytes());
    jpeg.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    jpeg
}

fn render_sizing() -> String {
    const MIB: u64 = 1024 * 1024;
    const PHOTO_BYTES: u64 = 12 * MIB;
    let config = yuba_variants::VariantConfig::from_json(
        r#"{"profiles": [{"name": "large", "width": 1600, "height": 1600, "format": "jpeg"}]}"#,
    )
    .unwrap();
    let MemoryEstimate::Bytes(render) = estimate_memory(
        &photo_header(),
        false,
        &[&config.profiles[0]],
        &Limits::default(),
    ) else {
        panic!("the photo's header is complete");
    };
    let examples: Vec<serde_json::Value> = [(2048, 8, 4, 8), (1024, 8, 4, 4), (3008, 16, 4, 8)]
        .into_iter()
        .map(|(memory_mib, chunk_mib, parallel_uploads, concurrency)| {
            let footprint = Footprint {
                upload_chunk_bytes: chunk_mib * MIB,
                parallel_uploads,
                concurrency,
            };
            serde_json::json!({
                "memoryMiB": memory_mib,
                "uploadChunkBytes": chunk_mib * MIB,
                "parallelUploads": parallel_uploads,
                "concurrency": concurrency,
                "imagesBudgetBytes": images_budget(memory_mib, &footprint),
            })
        })
        .collect();
    let contract = serde_json::json!({
        "memorySetting": MEMORY_SETTING,
        "processBaseMiB": PROCESS_BASE_MIB,
        "allocatorSlackPercent": ALLOCATOR_SLACK_PERCENT,
        "minImagesBudgetMiB": MIN_IMAGES_BUDGET_MIB,
        "photo": {
            "description": "a 24 MP (6000 x 4000) progressive 4:2:0 JPEG of 12 MiB, variants up to 1600 px",
            "jobMiB": (render + PHOTO_BYTES).div_ceil(MIB),
        },
        "examples": examples,
    });
    let mut text = serde_json::to_string_pretty(&contract).unwrap();
    text.push('\n');
    text
}

#[test]
fn the_sizing_contract_is_up_to_date() {
    check_generated(SIZING_CONTRACT, &render_sizing());
}
