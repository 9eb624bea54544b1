//! What `make package` built (scripts/package.py), opened the way AWS opens it: a Lambda zip
//! unzipped, the OCI image archive unpacked layer by layer into a root file system, and the
//! arm64 binaries run from either with qemu-user, so that the smoke tests replicate with what
//! AWS would run rather than with the workspace's own debug builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::repo_root;

/// The sysroot of Debian's arm64 cross C library (libc6-arm64-cross), which stands in for the
/// Lambda runtime's own (provided.al2023) when a zip's bootstrap runs here.
pub const ARM64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// `target/package`, or `YUBA_PACKAGE_DIR`, with its manifest.
#[derive(Debug)]
pub struct Package {
    pub dir: PathBuf,
    pub manifest: Value,
}

/// An unpacked image: its root file system and the parts of its configuration a runtime uses.
#[derive(Debug)]
pub struct Image {
    pub rootfs: PathBuf,
    /// `uid:gid`, as the image's `User`.
    pub user: String,
    pub env: Vec<(String, String)>,
    pub digest: String,
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The blob a descriptor (`{"digest": "sha256:..."}`) names in an OCI layout.
fn blob(layout: &Path, descriptor: &Value) -> anyhow::Result<PathBuf> {
    let digest = descriptor["digest"]
        .as_str()
        .context("a descriptor without a digest")?;
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("{digest} is not a sha256 digest"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

impl Package {
    pub fn open() -> anyhow::Result<Package> {
        let dir = std::env::var_os("YUBA_PACKAGE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/package"));
        let manifest = read_json(&dir.join("manifest.json")).with_context(|| {
            format!(
                "no package in {}: run `make package` (or scripts/package.py --no-synth) first",
                dir.display()
            )
        })?;
        Ok(Package { dir, manifest })
    }

    /// Unzips `bin`'s Lambda zip into `into` with the system's unzip, which keeps the modes the
    /// zip records as Lambda's does; returns the `bootstrap` it holds.
    pub fn unzip_lambda(&self, bin: &str, into: &Path) -> anyhow::Result<PathBuf> {
        let zip = self.manifest["lambda"][bin]["zip"]
            .as_str()
            .with_context(|| format!("the package has no Lambda zip of {bin}"))?;
        run(Command::new("unzip")
            .arg("-q")
            .arg(self.dir.join(zip))
            .arg("-d")
            .arg(into))?;
        Ok(into.join("bootstrap"))
    }

    /// Unpacks the image archive into `into`: the layout, then each layer of the manifest in
    /// order into `into/rootfs`, as a container runtime would.
    pub fn unpack_image(&self, into: &Path) -> anyhow::Result<Image> {
        let image = &self.manifest["image"];
        let archive = image["archive"]
            .as_str()
            .context("the package has no image")?;
        let layout = into.join("layout");
        let rootfs = into.join("rootfs");
        std::fs::create_dir_all(&layout)?;
        std::fs::create_dir_all(&rootfs)?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(self.dir.join(archive))
            .arg("-C")
            .arg(&layout))?;
        let index = read_json(&layout.join("index.json"))?;
        let [descriptor] = index["manifests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        else {
            bail!("the image index should name exactly one manifest: {index}");
        };
        let digest = descriptor["digest"].as_str().unwrap_or_default().to_owned();
        ensure!(
            image["digest"].as_str() == Some(digest.as_str()),
            "the archive holds {digest}, the package manifest says {}",
            image["digest"]
        );
        let manifest = read_json(&blob(&layout, descriptor)?)?;
        let config = read_json(&blob(&layout, &manifest["config"])?)?;
        ensure!(
            config["architecture"] == "arm64" && config["os"] == "linux",
            "the image is for {}/{}, not linux/arm64",
            config["os"],
            config["architecture"]
        );
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            run(Command::new("tar")
                .arg("-xzf")
                .arg(blob(&layout, layer)?)
                .arg("-C")
                .arg(&rootfs))?;
        }
        let env = config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| pair.as_str()?.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(Image {
            rootfs,
            user: config["config"]["User"]
                .as_str()
                .context("the image names no user")?
                .to_owned(),
            env,
            digest,
        })
    }
}

/// `program` (an arm64 executable) under qemu-user, its libraries looked up in `sysroot` first.
pub fn arm64(program: &Path, sysroot: &Path) -> Command {
    let mut command = Command::new("qemu-aarch64");
    command.arg("-L").arg(sysroot).arg(program);
    command
}

impl Image {
    /// `program` of the image run as a container runtime with a read-only root would: as the
    /// image's user, in a mount namespace where every mount but /proc, /sys and /dev is
    /// read-only (as on ECS with `readonlyRootFilesystem`, where /tmp is read-only too), with
    /// the image's environment. The script checks that a write really fails before it starts
    /// the program, so a machine where the remount did not take fails the test, not passes it.
    pub fn command(&self, program: &str) -> anyhow::Result<Command> {
        let (uid, gid) = self
            .user
            .split_once(':')
            .with_context(|| format!("the image's user {} is not uid:gid", self.user))?;
        let path = self.rootfs.join(program.trim_start_matches('/'));
        ensure!(path.exists(), "{program} is not in the image");
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "sh", "-c"])
            .arg(
                "uid=$1 gid=$2; shift 2
                 mount --make-rprivate / || exit 97
                 awk '{print $5}' /proc/self/mountinfo | while read -r m; do
                   case $m in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) ;;
                     *) mount -o remount,bind,ro \"$m\" 2>/dev/null ;; esac
                 done
                 for dir in / \"$PWD\" \"${TMPDIR:-/tmp}\"; do
                   if touch \"$dir/.yuba-write-probe\" 2>/dev/null; then
                     echo \"$dir is still writable\" >&2; exit 97
                   fi
                 done
                 exec setpriv --reuid=\"$uid\" --regid=\"$gid\" --clear-groups -- \"$@\"",
            )
            .args(["sh", uid, gid])
            .arg("qemu-aarch64")
            .arg("-L")
            .arg(&self.rootfs)
            .arg(&path);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(command)
    }
}
