//! The filesystems of the machines that run scripts (the control-plane
//! machines): one private directory per machine under a temporary
//! directory the cloud owns, with
//!
//! ```text
//! <base>/bin/{common,apt,dnf,yum}/   the stand-ins (see [`super::standins`])
//! <base>/bin/tools/                  links to the host programs scripts use
//! <base>/machines/<id>/root/         the machine's `/` (KUBESURGE_ROOT)
//! <base>/machines/<id>/home/         HOME and the working directory
//! <base>/machines/<id>/run/          the scripts as they are run
//! ```
//!
//! The root holds what a kubeadm node has: the package repository
//! configuration (`/etc/apt/sources.list.d/kubernetes.list` and its keyring,
//! or `/etc/yum.repos.d/kubernetes.repo`), the static pod manifests in
//! `/etc/kubernetes/manifests`, `admin.conf` and `kubelet.conf`, and the
//! package state the stand-ins keep. It is the truth about the node: the
//! control endpoint reads the installed versions and manifests from it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::discovery::parse_version;
use super::standins::{self, DEB_REVISION, Family, HOST_TOOLS, RPM_RELEASE};

/// Where the stand-ins keep package state, under the machine's root.
pub const STATE_DIR: &str = "var/lib/kubesurge-sim";
/// The packages a kubeadm node has from pkgs.k8s.io.
pub const KUBERNETES_PACKAGES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];
/// The static pods kubeadm writes on a control-plane node.
pub const CONTROL_PLANE_COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// How a machine installs packages: what its `PATH` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackageManager {
    /// Debian/Ubuntu: `apt-get`, `apt-mark`, a deb repository.
    Apt,
    /// RHEL 8+/Fedora: `dnf` (and `yum` as its alias), an rpm repository.
    Dnf,
    /// `yum` only, an rpm repository.
    Yum,
}

impl PackageManager {
    fn family(self) -> Family {
        match self {
            PackageManager::Apt => Family::Apt,
            PackageManager::Dnf => Family::Dnf,
            PackageManager::Yum => Family::Yum,
        }
    }

    fn is_rpm(self) -> bool {
        self != PackageManager::Apt
    }
}

/// The cloud's directory of machine filesystems, made on first use.
#[derive(Default)]
pub(crate) struct NodeRoots {
    layout: Mutex<Option<Arc<Layout>>>,
}

impl NodeRoots {
    /// The layout, made (with the stand-ins) the first time.
    pub(crate) fn layout(&self) -> io::Result<Arc<Layout>> {
        let mut slot = self.layout.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(layout) = slot.as_ref() {
            return Ok(layout.clone());
        }
        let layout = Arc::new(Layout::create()?);
        *slot = Some(layout.clone());
        Ok(layout)
    }

    /// The layout if any machine has a filesystem.
    pub(crate) fn existing(&self) -> Option<Arc<Layout>> {
        self.layout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forget the layout; its directory goes when the last user drops it.
    pub(crate) fn release(&self) {
        self.layout.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The directory tree of [`NodeRoots`]; removed when dropped.
pub(crate) struct Layout {
    base: PathBuf,
    /// The host's bash, the interpreter of scripts and stand-ins.
    pub(crate) bash: PathBuf,
}

impl Drop for Layout {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.base) {
            tracing::debug!(error = %e, dir = %self.base.display(), "cannot remove the machines' filesystems");
        }
    }
}

/// A program on the host's `PATH`.
fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

impl Layout {
    fn create() -> io::Result<Layout> {
        let bash = find_on_path("bash").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "bash is not on PATH: the simulated machines run scripts with it",
            )
        })?;
        let suffix: u64 = rand::random();
        let base = std::env::temp_dir().join(format!(
            "kubesurge-sim-{}-{suffix:016x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&base)?;
        // From here on, a failure removes what was made.
        let layout = Layout { base, bash };
        layout.install_bin()?;
        Ok(layout)
    }

    fn install_bin(&self) -> io::Result<()> {
        let bash = self.bash.to_string_lossy().into_owned();
        for stand_in in standins::all(&bash) {
            let dir = self.bin(stand_in.family);
            std::fs::create_dir_all(&dir)?;
            write_executable(&dir.join(stand_in.name), &stand_in.text)?;
        }
        for family in [Family::Apt, Family::Dnf, Family::Yum] {
            std::fs::create_dir_all(self.bin(family))?;
        }
        let tools = self.base.join("bin/tools");
        std::fs::create_dir_all(&tools)?;
        for tool in HOST_TOOLS {
            // A tool the host lacks is missing on the machines too: a
            // script that needs it fails with "command not found".
            if let Some(path) = find_on_path(tool) {
                std::os::unix::fs::symlink(path, tools.join(tool))?;
            }
        }
        Ok(())
    }

    fn bin(&self, family: Family) -> PathBuf {
        self.base.join("bin").join(family.dir_name())
    }

    pub(crate) fn machine_dir(&self, id: &str) -> PathBuf {
        self.base.join("machines").join(id)
    }

    /// The machine's `/`.
    pub(crate) fn root(&self, id: &str) -> PathBuf {
        self.machine_dir(id).join("root")
    }

    pub(crate) fn home(&self, id: &str) -> PathBuf {
        self.machine_dir(id).join("home")
    }

    pub(crate) fn run_dir(&self, id: &str) -> PathBuf {
        self.machine_dir(id).join("run")
    }

    /// `PATH` on a machine with `manager`: its stand-ins, the common ones,
    /// the host tools, nothing else.
    pub(crate) fn path_env(&self, manager: PackageManager) -> String {
        [
            self.bin(manager.family()),
            self.bin(Family::Common),
            self.base.join("bin/tools"),
        ]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
    }
}

#[cfg(unix)]
fn write_executable(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// What a control-plane machine's filesystem starts with.
pub(crate) struct Seed<'a> {
    /// Kubernetes version of its packages (`v1.34.3`).
    pub version: &'a str,
    pub package_manager: PackageManager,
    /// Its static pod manifests.
    pub static_pods: &'a [Value],
    /// The API server URL in its kubeconfigs.
    pub server: &'a str,
}

/// Lay out a fresh control-plane machine under `root`.
pub(crate) fn seed(root: &Path, home: &Path, seed: &Seed<'_>) -> io::Result<()> {
    std::fs::create_dir_all(root)?;
    std::fs::create_dir_all(home)?;
    let manifests = root.join("etc/kubernetes/manifests");
    std::fs::create_dir_all(&manifests)?;
    for pod in seed.static_pods {
        if let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) {
            write_manifest(root, name, pod)?;
        }
    }
    // The kubeconfigs kubeadm writes on every control-plane node. The
    // stand-ins answer kubectl from the world itself; these name the
    // server and carry no credential.
    for (file, user) in [
        ("admin.conf", "kubernetes-admin"),
        ("kubelet.conf", "system:node"),
    ] {
        std::fs::write(
            root.join("etc/kubernetes").join(file),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: {}\n\
                 users:\n- name: {user}\n  user: {{}}\n\
                 contexts:\n- name: {user}@kubernetes\n  context:\n    cluster: kubernetes\n    user: {user}\n\
                 current-context: {user}@kubernetes\n",
                seed.server
            ),
        )?;
    }
    set_package_manager(root, seed.package_manager, seed.version)
}

/// Make the machine an apt, dnf or yum machine with the Kubernetes
/// packages at `version` from the repository of its minor, as a node
/// installed by the pkgs.k8s.io instructions is (apt packages held).
pub(crate) fn set_package_manager(
    root: &Path,
    manager: PackageManager,
    version: &str,
) -> io::Result<()> {
    let (_, minor, patch) = parse_version(version).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{version:?} is not a Kubernetes version"),
        )
    })?;
    for stale in ["etc/apt", "etc/yum.repos.d", "var/lib/apt", STATE_DIR] {
        match std::fs::remove_dir_all(root.join(stale)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let state = root.join(STATE_DIR);
    std::fs::create_dir_all(state.join("installed"))?;
    std::fs::create_dir_all(state.join("held"))?;
    let repo = format!("https://pkgs.k8s.io/core:/stable:/v1.{minor}");
    let package_version = if manager.is_rpm() {
        std::fs::create_dir_all(root.join("etc/yum.repos.d"))?;
        std::fs::write(
            root.join("etc/yum.repos.d/kubernetes.repo"),
            format!(
                "[kubernetes]\nname=Kubernetes\nbaseurl={repo}/rpm/\nenabled=1\ngpgcheck=1\n\
                 gpgkey={repo}/rpm/repodata/repomd.xml.key\n\
                 exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
            ),
        )?;
        write_os_release(
            root,
            "rocky",
            "Rocky Linux 9.5 (Blue Onyx)",
            "rhel centos fedora",
        )?;
        format!("1.{minor}.{patch}-{RPM_RELEASE}")
    } else {
        std::fs::create_dir_all(root.join("etc/apt/sources.list.d"))?;
        std::fs::create_dir_all(root.join("etc/apt/keyrings"))?;
        std::fs::write(
            root.join("etc/apt/sources.list.d/kubernetes.list"),
            format!("deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] {repo}/deb/ /\n"),
        )?;
        std::fs::write(
            root.join("etc/apt/keyrings/kubernetes-apt-keyring.gpg"),
            "kubesurge-sim dearmored key\n",
        )?;
        // As after the `apt-get update` of the original install.
        std::fs::create_dir_all(root.join("var/lib/apt/lists"))?;
        std::fs::write(
            root.join("var/lib/apt/lists/kubesurge-sim-kubernetes"),
            format!("{minor}\n"),
        )?;
        for package in KUBERNETES_PACKAGES {
            std::fs::write(state.join("held").join(package), "")?;
        }
        write_os_release(root, "ubuntu", "Ubuntu 24.04.1 LTS", "debian")?;
        format!("1.{minor}.{patch}-{DEB_REVISION}")
    };
    for package in KUBERNETES_PACKAGES {
        std::fs::write(
            state.join("installed").join(package),
            format!("{package_version}\n"),
        )?;
    }
    Ok(())
}

fn write_os_release(root: &Path, id: &str, pretty: &str, like: &str) -> io::Result<()> {
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(
        root.join("etc/os-release"),
        format!("PRETTY_NAME=\"{pretty}\"\nID={id}\nID_LIKE=\"{like}\"\n"),
    )
}

/// The installed version of a package as a Kubernetes version (`v1.35.2`).
pub(crate) fn installed_version(root: &Path, package: &str) -> Option<String> {
    let text =
        std::fs::read_to_string(root.join(STATE_DIR).join("installed").join(package)).ok()?;
    let upstream = text.trim().split('-').next()?;
    let (major, minor, patch) = parse_version(upstream)?;
    Some(format!("v{major}.{minor}.{patch}"))
}

fn manifest_path(root: &Path, component: &str) -> PathBuf {
    root.join("etc/kubernetes/manifests")
        .join(format!("{component}.yaml"))
}

/// A static pod manifest of the machine.
pub(crate) fn read_manifest(root: &Path, component: &str) -> Option<Value> {
    let text = std::fs::read_to_string(manifest_path(root, component)).ok()?;
    serde_saphyr::from_str(&text).ok()
}

/// Write a static pod manifest (YAML, as kubeadm does).
pub(crate) fn write_manifest(root: &Path, component: &str, manifest: &Value) -> io::Result<()> {
    let yaml = serde_saphyr::to_string(manifest)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let path = manifest_path(root, component);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, yaml)
}

/// The version (`v1.35.2`) a manifest's image is tagged with.
pub(crate) fn image_version(manifest: &Value) -> Option<String> {
    let image = manifest
        .pointer("/spec/containers/0/image")
        .and_then(Value::as_str)?;
    let tag = image.rsplit_once(':')?.1;
    parse_version(tag).map(|(a, b, c)| format!("v{a}.{b}.{c}"))
}

/// The version of a component's static pod on the machine.
pub(crate) fn manifest_version(root: &Path, component: &str) -> Option<String> {
    read_manifest(root, component).and_then(|m| image_version(&m))
}

/// Every file under `root` with its content, by path relative to it.
pub(crate) fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                out.insert(relative.to_string_lossy().into_owned(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(component: &str, version: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": component, "namespace": "kube-system"},
            "spec": {"containers": [{"name": component, "image": format!("registry.k8s.io/{component}:{version}")}]},
        })
    }

    #[test]
    fn a_seeded_apt_machine_has_held_packages_its_repository_and_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let (root, home) = (dir.path().join("root"), dir.path().join("home"));
        let pods = [pod("kube-apiserver", "v1.34.3")];
        seed(
            &root,
            &home,
            &Seed {
                version: "v1.34.3",
                package_manager: PackageManager::Apt,
                static_pods: &pods,
                server: "https://127.0.0.1:6443",
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/apt/sources.list.d/kubernetes.list")).unwrap(),
            "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /\n"
        );
        assert_eq!(
            installed_version(&root, "kubeadm").as_deref(),
            Some("v1.34.3")
        );
        assert!(root.join(STATE_DIR).join("held/kubelet").exists());
        assert_eq!(
            manifest_version(&root, "kube-apiserver").as_deref(),
            Some("v1.34.3")
        );
        let text =
            std::fs::read_to_string(root.join("etc/kubernetes/manifests/kube-apiserver.yaml"))
                .unwrap();
        assert!(
            text.contains("registry.k8s.io/kube-apiserver:v1.34.3"),
            "{text}"
        );

        set_package_manager(&root, PackageManager::Dnf, "v1.34.3").unwrap();
        assert!(!root.join("etc/apt").exists());
        let repo = std::fs::read_to_string(root.join("etc/yum.repos.d/kubernetes.repo")).unwrap();
        assert!(repo.contains("baseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/\n"));
        assert!(repo.contains("exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"));
        assert_eq!(
            std::fs::read_to_string(root.join(STATE_DIR).join("installed/kubelet")).unwrap(),
            "1.34.3-150500.1.1\n"
        );
        assert!(!root.join(STATE_DIR).join("held/kubelet").exists());
        assert!(files(&root).contains_key("etc/os-release"));
    }
}
