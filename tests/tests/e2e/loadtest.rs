//! The load test, run briefly as a user would: it starts its own local stack and pipeline,
//! uploads a photo mix (generated JPEGs standing in for the corpus), and writes a report whose
//! numbers account for every object.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use yuba_e2e::{binary, encode_jpeg, run_to_end};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_reports_every_object_and_its_variants() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("yuba-loadtest-smoke-{}", std::process::id()));
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus)?;
    for (i, (w, h)) in [(1200_u16, 800_u16), (900, 1400)].into_iter().enumerate() {
        let rgb: Vec<u8> = (0..usize::from(w) * usize::from(h) * 3)
            .map(|n| ((n * 7 + i * 31) % 251) as u8)
            .collect();
        std::fs::write(
            corpus.join(format!("photo-{i}.jpg")),
            encode_jpeg(&rgb, w, h, 85),
        )?;
    }
    let out = dir.join("report");
    let mut command = Command::new(binary("yuba-loadtest")?);
    command
        .args([
            "run",
            "--scenario",
            "photos",
            "--rate",
            "4",
            "--duration",
            "5",
            "--drain",
            "90",
        ])
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&out)
        .args(["--price", "egress_per_gb=0.05"]);
    let finished = run_to_end(command, Duration::from_secs(240)).await?;
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);

    let run: Value = serde_json::from_slice(&std::fs::read(out.join("run.json"))?)?;
    let objects = run["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 20, "4/s for 5 s");
    for object in objects {
        assert!(
            object["replica_s"].as_f64().is_some(),
            "never replicated: {object}"
        );
        let image = matches!(object["kind"].as_str(), Some("photo" | "small-png"));
        assert_eq!(object["variants_s"].as_f64().is_some(), image, "{object}");
    }
    let workers = run["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter(|p| p["role"] == "worker")
        .count();
    assert_eq!(workers, 2, "both worker homes measured");
    let report = std::fs::read_to_string(out.join("report.md"))?;
    for needle in [
        "p99.9",
        "latency.svg",
        "throughput.svg",
        "Storage Transfer Service",
        "egress_per_gb",
    ] {
        assert!(report.contains(needle), "{needle} missing from:\n{report}");
    }
    for plot in ["latency.svg", "throughput.svg"] {
        assert!(
            std::fs::read_to_string(out.join(plot))?.contains("<svg"),
            "{plot}"
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `--target env`: the endpoints and buckets come from yuba's own variables, the pipeline is
/// someone else's (here: started by the test), and only what is visible from outside is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_given_endpoints_measures_from_outside() -> anyhow::Result<()> {
    let stack = yuba_e2e::Stack::start("loadtest-env", 3)?;
    let _pipeline = stack.spawn_pipeline(&[])?;
    let out = stack.dir.join("report");
    let mut command = Command::new(binary("yuba-loadtest")?);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&stack.env)
        .args([
            "run",
            "--target",
            "env",
            "--scenario",
            "pass-through",
            "--rate",
            "10",
        ])
        .args(["--duration", "3", "--drain", "60", "--out"])
        .arg(&out);
    let finished = run_to_end(command, Duration::from_secs(120)).await?;
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);
    let run: Value = serde_json::from_slice(&std::fs::read(out.join("run.json"))?)?;
    let objects = run["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 30);
    assert!(
        objects.iter().all(|o| o["replica_s"].as_f64().is_some()),
        "{objects:?}"
    );
    assert_eq!(
        run["processes"],
        Value::Array(Vec::new()),
        "nothing of ours to measure"
    );
    let queues: Vec<&str> = run["queue_depth"][0]["depths"]
        .as_array()
        .expect("queue samples")
        .iter()
        .filter_map(|d| d[0].as_str())
        .collect();
    assert_eq!(queues, ["events", "lambda", "fargate"]);
    Ok(())
}
