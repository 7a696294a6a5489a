//! The container image the scheduled CronJob runs (issue 17): the runtime
//! of the `Containerfile`, assembled from Debian packages by
//! `tests/image/build.sh` (no registry needed), checked against the
//! Containerfile, and run as the scheduled module's pod runs it — uid
//! 65532, read-only root, in-cluster configuration from the
//! service-account files, the module's command and flags — through a whole
//! `rotate --max-age` against the test world.
//!
//! Where this machine cannot build images (not root, mmdebstrap/umoci not
//! installable, mount namespaces refused) the test says why on one line,
//! writes it to `target/image-test-skipped` (which `.ci/run` prints last)
//! and passes without asserting.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kubesurge_testworld::resources::NODES;
use serde_json::Value;

use crate::rotation::{run_to_end, text};
use crate::scheduled_rbac::{ACCOUNT, NAMESPACE, RENDERED, rendered_rbac, world_under};

const UID: u32 = 65532;
const ENTRYPOINT: &str = "/usr/local/bin/kubesurge";
/// build.sh's exit status when this machine cannot build images.
const CANNOT_BUILD: i32 = 3;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn skip_marker() -> PathBuf {
    repo().join("target/image-test-skipped")
}

/// Say why the image is not tested here, where `.ci/run` shows it.
fn skip(reason: &str) {
    let line = format!("image test skipped: {reason}");
    println!("{line}");
    std::fs::write(skip_marker(), format!("{line}\n")).expect("the skip marker");
}

/// Why this machine cannot run the image as a pod, if it cannot.
fn cannot_run_here() -> Option<String> {
    let uid = Command::new("id").arg("-u").output();
    match uid {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "0" => {}
        _ => {
            return Some("not root (building the rootfs, chroot and mounts need it)".to_string());
        }
    }
    let namespace = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output();
    match namespace {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "mount namespaces refused (unshare --mount: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("unshare cannot run: {e}")),
    }
}

/// The OCI layout's image config (`index.json` → manifest → config).
fn image_config(layout: &Path) -> Value {
    let json = |path: PathBuf| -> Value {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("JSON")
    };
    let blob = |digest: &Value| {
        let digest = digest.as_str().expect("a digest");
        let (algorithm, hex) = digest.split_once(':').expect("algorithm:hex");
        layout.join("blobs").join(algorithm).join(hex)
    };
    let index = json(layout.join("index.json"));
    let manifest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "kubesurge")
        .expect("the kubesurge tag");
    let manifest = json(blob(&manifest["digest"]));
    json(blob(&manifest["config"]["digest"]))
}

/// What the Containerfile declares (its runtime stage, the build stage's
/// toolchain), read from its text.
struct Declared {
    packages: Vec<String>,
    labels: BTreeMap<String, String>,
    user: String,
    entrypoint: String,
    version: String,
    /// The Rust version of the build stage's image.
    build_toolchain: String,
}

fn declared(containerfile: &str) -> Declared {
    // Continuation lines joined, as the builder reads them.
    let joined = containerfile.replace("\\\n", " ");
    let runtime = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a runtime stage");
    let instruction = |name: &str| -> Vec<&str> {
        runtime
            .lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .collect()
    };
    let install = runtime
        .split("--no-install-recommends")
        .nth(1)
        .expect("apt-get install --no-install-recommends");
    let packages = install
        .split_whitespace()
        .take_while(|w| *w != "&&")
        .map(str::to_string)
        .collect();
    let mut labels = BTreeMap::new();
    for line in instruction("LABEL ") {
        for pair in line.split("\" ") {
            let (key, value) = pair.split_once('=').expect("key=value");
            labels.insert(
                key.trim().to_string(),
                value.trim().trim_matches('"').to_string(),
            );
        }
    }
    let version = joined
        .lines()
        .find_map(|l| l.trim().strip_prefix("ARG VERSION="))
        .expect("ARG VERSION=default")
        .to_string();
    let build_toolchain = joined
        .lines()
        .find_map(|l| l.trim().strip_prefix("FROM docker.io/library/rust:"))
        .and_then(|tag| tag.split_once("-bookworm"))
        .map(|(version, _)| version.to_string())
        .expect("FROM docker.io/library/rust:VERSION-bookworm");
    Declared {
        build_toolchain,
        packages,
        labels,
        user: instruction("USER ").concat(),
        entrypoint: instruction("ENTRYPOINT ").concat(),
        version,
    }
}

/// The value of `name=...` in build.sh.
fn build_script_setting(script: &str, name: &str) -> String {
    script
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name}= in build.sh"))
        .to_string()
}

/// The scheduled module's CronJob container, as rendered.
fn module_container() -> Value {
    let yaml = std::fs::read_to_string(repo().join(RENDERED)).expect("the rendered manifests");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("YAML");
    let cron = documents
        .into_iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("the CronJob");
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].clone()
}

/// A directory the pod's user can read through, holding `files`.
fn readable_dir(path: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(path).expect("dir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, content) in files {
        let file = path.join(name);
        std::fs::write(&file, content).expect("file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_a_scheduled_rotation_as_the_cronjob_does() {
    let _ = std::fs::remove_file(skip_marker());
    if let Some(reason) = cannot_run_here() {
        skip(&reason);
        return;
    }

    // Build: the same runtime as the Containerfile, without a registry.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("image");
    let started = Instant::now();
    let build = Command::new("bash")
        .arg(repo().join("tests/image/build.sh"))
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_kubesurge"))
        .output()
        .expect("build.sh runs");
    let build_log = String::from_utf8_lossy(&build.stderr).to_string();
    if build.status.code() == Some(CANNOT_BUILD) {
        skip(
            build_log
                .lines()
                .last()
                .unwrap_or("build.sh cannot build images"),
        );
        return;
    }
    assert!(build.status.success(), "build.sh failed:\n{build_log}");
    println!("image built in {:?}", started.elapsed());
    assert!(out.join("kubesurge.oci.tar").is_file(), "the OCI archive");

    // The image's configuration is the Containerfile's.
    let containerfile =
        std::fs::read_to_string(repo().join("Containerfile")).expect("the Containerfile");
    let stage = declared(&containerfile);
    let script = std::fs::read_to_string(repo().join("tests/image/build.sh")).expect("build.sh");
    let config = image_config(&out.join("oci"));
    let runtime = &config["config"];
    let user = format!("{UID}:{UID}");
    assert_eq!(runtime["User"], user.as_str(), "{runtime:#}");
    assert_eq!(stage.user, user);
    assert_eq!(
        runtime["Entrypoint"],
        serde_json::json!([ENTRYPOINT]),
        "{runtime:#}"
    );
    assert_eq!(stage.entrypoint, format!("[\"{ENTRYPOINT}\"]"));
    assert!(runtime.get("Cmd").is_none_or(Value::is_null), "{runtime:#}");
    assert_eq!(
        stage.packages.join(","),
        build_script_setting(&script, "packages"),
        "build.sh installs the Containerfile's packages"
    );
    assert_eq!(
        stage.labels.keys().collect::<Vec<_>>(),
        [
            "org.opencontainers.image.description",
            "org.opencontainers.image.licenses",
            "org.opencontainers.image.title",
            "org.opencontainers.image.version"
        ],
        "the Containerfile's labels"
    );
    assert_eq!(
        stage.build_toolchain,
        env!("CARGO_PKG_RUST_VERSION"),
        "the build stage's Rust is Cargo.toml's rust-version"
    );
    let cargo_version = env!("CARGO_PKG_VERSION");
    assert_eq!(stage.version, cargo_version, "the Containerfile's VERSION");
    for (key, value) in &stage.labels {
        let expected = if value == "${VERSION}" {
            cargo_version
        } else {
            value.as_str()
        };
        assert_eq!(runtime["Labels"][key], expected, "label {key}: {runtime:#}");
    }
    assert_eq!(
        runtime["Labels"]["org.opencontainers.image.licenses"],
        "Apache-2.0"
    );

    // Unpacked, as a runtime would: the entrypoint is the binary itself
    // (no shell between), the user exists with its home.
    let bundle = dir.path().join("bundle");
    let unpack = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:kubesurge", out.join("oci").display()))
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert!(unpack.status.success(), "umoci unpack: {unpack:?}");
    let rootfs = bundle.join("rootfs");
    let entry = rootfs.join(ENTRYPOINT.trim_start_matches('/'));
    let binary = std::fs::read(&entry).expect("the entrypoint");
    assert!(
        binary.starts_with(b"\x7fELF"),
        "the entrypoint is an executable, not a script"
    );
    assert_eq!(std::fs::metadata(&entry).unwrap().mode() & 0o111, 0o111);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(
        passwd.contains(&format!("nonroot:x:{UID}:{UID}:")),
        "{passwd}"
    );
    let home = std::fs::metadata(rootfs.join("home/nonroot")).expect("the home");
    assert_eq!((home.uid(), home.gid()), (UID, UID));
    for tool in ["usr/bin/ssh", "etc/ssl/certs/ca-certificates.crt"] {
        assert!(rootfs.join(tool).exists(), "{tool} in the image");
    }
    assert!(
        std::fs::read_dir(rootfs.join("var/lib/apt/lists"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "apt lists removed"
    );

    // The world, with the module's ServiceAccount and RBAC applied; the
    // token is that ServiceAccount's, as the kubelet projects it.
    let (h, _) = world_under(&rendered_rbac()).await;
    let token = h
        .world
        .apiserver
        .service_account_token(NAMESPACE, ACCOUNT, 3600)
        .expect("a token");
    let service_account = dir.path().join("serviceaccount");
    readable_dir(
        &service_account,
        &[
            ("token", token.as_str()),
            ("ca.crt", h.world.apiserver.ca_pem().as_str()),
            ("namespace", NAMESPACE),
        ],
    );
    // The ConfigMap volume: config.yaml at the module's mount path.
    let container = module_container();
    let mounts = container["volumeMounts"].as_array().expect("mounts");
    let config_mount = mounts
        .iter()
        .find(|m| m["name"] == "config")
        .and_then(|m| m["mountPath"].as_str())
        .expect("the config mount");
    assert_eq!(
        config_mount, "/etc/kubesurge",
        "where run-as-pod.sh mounts it"
    );
    assert!(
        mounts.iter().any(|m| m["mountPath"] == "/tmp"),
        "a writable /tmp: {mounts:?}"
    );
    let config_dir = dir.path().join("config");
    let rotation_config = std::fs::read_to_string(&h.config).expect("config");
    readable_dir(&config_dir, &[("config.yaml", rotation_config.as_str())]);

    // The module's command and flags; only the age is shortened so that
    // the world's nodes, minutes old at most, are all due.
    let max_age = Duration::from_secs(2);
    let mut command: Vec<String> = container["command"]
        .as_array()
        .into_iter()
        .chain(container["args"].as_array())
        .flatten()
        .map(|a| a.as_str().expect("a string").to_string())
        .collect();
    let age = command
        .iter()
        .position(|a| a == "--max-age")
        .expect("the module runs rotate --max-age")
        + 1;
    command[age] = format!("{}s", max_age.as_secs());
    assert_eq!(command[..2], ["kubesurge", "rotate"], "{command:?}");
    tokio::time::sleep(max_age + Duration::from_secs(1)).await;

    // The pod's environment: the image's (PATH, HOME), the module's
    // (KUBESURGE_NODE_NAME from the downward API: a control-plane node, as
    // the module's nodeSelector places it), and what the kubelet adds for
    // the API server's Service
    // (https://kubernetes.io/docs/concepts/services-networking/connect-applications-service/#environment-variables),
    // here the world's API server on loopback. No kubeconfig anywhere.
    let (nodes, _) = h.world.store.list(&NODES, None, |n| {
        n.pointer("/metadata/labels/node-role.kubernetes.io~1control-plane")
            .is_some()
    });
    let node_name = nodes[0]["metadata"]["name"]
        .as_str()
        .expect("a control-plane node")
        .to_string();
    let addr = h.world.apiserver.addr();
    let mut env: Vec<(String, String)> = runtime["Env"]
        .as_array()
        .expect("the image's env")
        .iter()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend([
        (
            "HOSTNAME".to_string(),
            "kubesurge-29000000-abcde".to_string(),
        ),
        ("KUBERNETES_SERVICE_HOST".to_string(), addr.ip().to_string()),
        (
            "KUBERNETES_SERVICE_PORT".to_string(),
            addr.port().to_string(),
        ),
        ("KUBESURGE_NODE_NAME".to_string(), node_name),
        // Never the cloud's metadata service from a test.
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ]);
    for variable in container["env"].as_array().expect("env") {
        if let Some(value) = variable["value"].as_str() {
            let name = variable["name"].as_str().expect("name").to_string();
            env.push((name, value.to_string()));
        }
    }
    let pod = |command: &[String]| {
        let mut pod = tokio::process::Command::new("bash");
        pod.arg(repo().join("tests/image/run-as-pod.sh"))
            .arg(&rootfs)
            .arg(&config_dir)
            .arg(&service_account)
            .args(command)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        pod
    };

    // The root is read-only and /tmp writable, as the module asks.
    let probe = run_to_end(pod(&[
        "/usr/bin/touch".to_string(),
        "/tmp/probe".to_string(),
        "/probe".to_string(),
    ]))
    .await;
    let probe_text = text(&probe);
    assert!(
        probe_text.contains("'/probe': Read-only file system")
            && !probe_text.contains("/tmp/probe"),
        "{probe_text}"
    );

    let run_started = Instant::now();
    let output = run_to_end(pod(&command)).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(!all.contains("forbidden"), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report on stdout");
    assert!(report.is_object(), "{report}");
    println!("the scheduled run took {:?}", run_started.elapsed());
    h.assert_converged();
}
