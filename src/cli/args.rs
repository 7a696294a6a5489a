//! The command line, as clap types. Nothing here does anything: `cli::run`
//! acts on a parsed [`Cli`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use super::jsonpath::Template;
use super::output::Encoding;
use crate::exit::exit_codes_help;
use crate::kube::client::ClientOptions;
use crate::kube::impersonate::Impersonation;
use crate::settings::{Overrides, parse_duration};
use crate::version::KubeVersion;

/// Upgrade and rotate self-managed (kubeadm) Kubernetes clusters on cloud
/// VMs: the control plane in place, one minor at a time, then workers
/// replaced by surge.
#[derive(Debug, Parser)]
#[command(
    name = "kubesurge",
    version,
    after_help = concat!(
        "Examples:
  # Try it on an emulated cluster first
  kubesurge sandbox
  # What an upgrade would do, then do it
  kubesurge plan --to v1.35.2 --config kubesurge.yaml
  kubesurge upgrade --to v1.35.2 --config kubesurge.yaml
  # Replace workers older than 30 days
  kubesurge rotate --max-age 30d --config kubesurge.yaml

",
        exit_codes_help!()
    )
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Kubeconfig file(s), joined like PATH [default: ~/.kube/config, else
    /// the in-cluster service account]
    #[arg(long, env = "KUBECONFIG", global = true, value_name = "FILE")]
    pub kubeconfig: Option<OsString>,

    /// Kubeconfig context to use [default: its current-context]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The RotationConfig file (kind RotationConfig, apiVersion
    /// kubesurge.io/v1alpha1): cluster name, pools, drain, window [default:
    /// none; no pools]
    #[arg(long, env = "KUBESURGE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How long to wait for the API server to accept a connection, and
    /// then for each answer to make progress, before the call fails (and is
    /// retried where a retry may help): 30s, 2m; 0 for no limit. A watch
    /// quiet for longer is reopened [default: connect 30s, no read limit]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<Duration>,

    /// Act as this user (kubectl's --as): every request is authorized as
    /// that user, which the kubeconfig's user must be allowed to
    /// impersonate [default: the kubeconfig user's `as`, else none]
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,

    /// Act in this group too (repeat for more; kubectl's --as-group); needs
    /// --as
    #[arg(
        long = "as-group",
        global = true,
        value_name = "GROUP",
        requires = "as_user"
    )]
    pub as_group: Vec<String>,

    /// Format of stderr: text for people, json for log collectors (every
    /// line one object, progress and messages included, a slot's lines
    /// with its run_id, pool and old_node)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More logs: -v debug, -vv trace (RUST_LOG overrides both)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Fewer logs: -q warnings only, -qq errors only
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
}

impl GlobalArgs {
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            request_timeout: self.request_timeout,
            impersonation: Impersonation {
                user: self.as_user.clone(),
                groups: self.as_group.clone(),
                ..Impersonation::default()
            },
        }
    }
}

/// A duration (30s, 2m), or 0 for no limit, as kubectl takes it.
fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text).map_err(|error| error.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people
    Text,
    /// One JSON object per line
    Json,
}

/// How `plan`, `check`, `status` and `version` print their result: `table`,
/// `json`, `yaml` or `jsonpath=TEMPLATE`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum OutputFormat {
    /// A table for people
    #[default]
    Table,
    /// One document (apiVersion kubesurge.io/v1alpha1, with its kind) as
    /// JSON, YAML, or what a JSONPath template makes of it
    Document(Encoding),
}

/// How `upgrade` and `rotate` print their report: as [`OutputFormat`], or
/// `name`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ReportFormat {
    /// A table for people
    #[default]
    Table,
    /// The report as a document, as [`OutputFormat::Document`]
    Document(Encoding),
    /// node/NAME per line: the new nodes the run made; with --dry-run (and
    /// for a rotate outside the maintenance window), the nodes it would
    /// replace
    Name,
}

const OUTPUT_FORMATS: &str = "table, json, yaml, jsonpath=TEMPLATE";

/// `-o` of `plan`, `check`, `status`, `version`.
pub(crate) fn parse_output_format(text: &str) -> Result<OutputFormat, String> {
    match text {
        "table" => Ok(OutputFormat::Table),
        other => parse_encoding(other, OUTPUT_FORMATS).map(OutputFormat::Document),
    }
}

/// `-o` of `upgrade` and `rotate`.
pub(crate) fn parse_report_format(text: &str) -> Result<ReportFormat, String> {
    let formats = "table, json, yaml, jsonpath=TEMPLATE, name";
    match text {
        "table" => Ok(ReportFormat::Table),
        "name" => Ok(ReportFormat::Name),
        other => parse_encoding(other, formats).map(ReportFormat::Document),
    }
}

fn parse_encoding(text: &str, formats: &str) -> Result<Encoding, String> {
    match text {
        "json" => Ok(Encoding::Json),
        "yaml" => Ok(Encoding::Yaml),
        "jsonpath" => Err(format!(
            "jsonpath needs a template, as kubectl's: -o 'jsonpath={{.kind}}' (one of {formats})"
        )),
        other => match other.strip_prefix("jsonpath=") {
            Some(template) => Template::parse(template)
                .map(Encoding::JsonPath)
                .map_err(|error| error.to_string()),
            None => Err(format!(
                "{other:?} is not an output format (one of {formats})"
            )),
        },
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what an upgrade would do, changing nothing: inventory, version
    /// skew, control-plane hops, which pools rotate and when, budgets.
    #[command(after_help = concat!(
        "Examples:
  # What upgrading to v1.35.2 would do, as a table
  kubesurge plan --to v1.35.2 --config kubesurge.yaml
  # The same plan as JSON, for a script
  kubesurge plan --to v1.35.2 --config kubesurge.yaml -o json

",
        exit_codes_help!()
    ))]
    Plan(PlanArgs),

    /// Prove, changing nothing, that a run would work: the skew plan, the
    /// target's packages on every control-plane node and images in every
    /// pool, every node mapped to an instance the run may terminate, the
    /// PodDisruptionBudgets that would block a drain now. A line per check,
    /// with its fix.
    #[command(after_help = concat!(
        "Examples:
  # Would an upgrade to v1.35.2 work?
  kubesurge check --to v1.35.2 --config kubesurge.yaml
  # The same report as JSON
  kubesurge check --to v1.35.2 --config kubesurge.yaml -o json

Exit codes of check: 0 every check passed; 1 a check failed or could not be
made (its line says why and the fix); 2 invalid input.

",
        exit_codes_help!()
    ))]
    Check(PlanArgs),

    /// Upgrade the cluster to a version: the control plane in place, one
    /// minor at a time, then the workers by surge, as few times as the skew
    /// policy allows.
    #[command(after_help = concat!(
        "Examples:
  # Every change the upgrade would make, making none
  kubesurge upgrade --to v1.35.2 --config kubesurge.yaml --dry-run
  # Show the plan, ask, then upgrade
  kubesurge upgrade --to v1.35.2 --config kubesurge.yaml
  # Without a terminal (CI, Terraform): no question, the report as JSON
  kubesurge upgrade --to v1.35.2 --config kubesurge.yaml --yes -o json > report.json

",
        exit_codes_help!()
    ))]
    Upgrade(crate::cli::upgrade::UpgradeArgs),

    /// Replace the workers that do not match the desired state (a kubelet
    /// not at the control plane's version, --max-age, --stale-image, --all)
    /// by surge: new nodes first, then drain and terminate the old ones.
    #[command(after_help = concat!(
        "Examples:
  # Which workers are older than 30 days, and what replacing them would do
  kubesurge rotate --max-age 30d --config kubesurge.yaml --dry-run
  # Replace the workers of pool general that run a stale image
  kubesurge rotate --pool general --stale-image --config kubesurge.yaml
  # From a scheduler: no question; exit 5 outside the maintenance window
  kubesurge rotate --max-age 30d --config kubesurge.yaml --yes
  # A scheduled run: JSON logs, and metrics for a textfile collector
  kubesurge rotate --max-age 30d --config kubesurge.yaml --yes --log-format json \\
    --metrics-file /var/lib/node_exporter/textfile/kubesurge.prom

",
        exit_codes_help!()
    ))]
    Rotate(crate::cli::rotate::RotateArgs),

    /// What the run in progress, or the last one, is doing: per node its
    /// phase, its replacement and what blocks it.
    #[command(after_help = concat!(
        "Examples:
  kubesurge status
  kubesurge status -o json
  # Follow the run in progress until it ends
  kubesurge status -w

",
        exit_codes_help!()
    ))]
    Status(crate::cli::status::StatusArgs),

    /// Ask the run holding the lock to stop at its next safe point; with no
    /// run holding it, abandon an unfinished run (and, with --config, give
    /// back the Auto Scaling groups it changed).
    #[command(after_help = concat!(
        "Examples:
  # The running upgrade or rotation finishes its slots in flight and exits 4
  kubesurge abort

  # A run that crashed: abandon it and restore its Auto Scaling groups
  kubesurge abort --config kubesurge.yaml

",
        exit_codes_help!()
    ))]
    Abort(crate::cli::abort::AbortArgs),

    /// Terminate instances kubesurge launched for this cluster that are no
    /// node (a crashed run's leftovers).
    #[command(after_help = concat!(
        "Examples:
  # What would be terminated
  kubesurge gc --config kubesurge.yaml --dry-run
  # Terminate it, without a question
  kubesurge gc --config kubesurge.yaml --yes

",
        exit_codes_help!()
    ))]
    Gc(crate::cli::gc::GcArgs),

    /// Propose a config for an existing cluster: map every worker to its
    /// instance, group them into pools (Auto Scaling group, else launch
    /// template, else labels), find each pool's image rule. Read-only
    /// unless --write or --tag.
    #[command(after_help = concat!(
        "Examples:
  # What kubesurge would make of this cluster, changing nothing
  kubesurge init
  # Write it, then check it
  kubesurge init --write kubesurge.yaml && kubesurge plan --config kubesurge.yaml
  # Tag the mapped instances for kubesurge, after listing every change
  kubesurge init --write kubesurge.yaml --tag

",
        exit_codes_help!()
    ))]
    Init(crate::cli::init::InitArgs),

    /// Start an emulated cluster and cloud in this process and run a real
    /// upgrade on it.
    #[cfg(feature = "sandbox")]
    #[command(after_help = concat!(
        "Examples:
  # Upgrade an emulated cluster, printing each step
  kubesurge sandbox
  # Serve one with six workers until interrupted, for kubectl and kubesurge
  kubesurge sandbox up --workers 6 --dir /tmp/sandbox

",
        exit_codes_help!()
    ))]
    Sandbox(crate::cli::sandbox::SandboxArgs),

    /// Print a shell completion script for kubesurge on stdout.
    #[command(after_help = concat!(
        "Examples:
  # bash, for this shell
  source <(kubesurge completion bash)
  # zsh, for every new shell
  kubesurge completion zsh > \"${fpath[1]}/_kubesurge\"
  # fish
  kubesurge completion fish > ~/.config/fish/completions/kubesurge.fish
  # PowerShell
  kubesurge completion powershell | Out-String | Invoke-Expression

",
        exit_codes_help!()
    ))]
    Completion(crate::cli::completion::CompletionArgs),

    /// Print the JSON Schema of the configuration file or of a document
    /// kubesurge prints (-o json|yaml), for editors and validators.
    #[command(after_help = concat!(
        "Examples:
  # Let an editor validate and complete kubesurge.yaml (VS Code's YAML
  # extension and others read this modeline)
  kubesurge schema RotationConfig > rotation-config.schema.json
  sed -i '1i # yaml-language-server: $schema=rotation-config.schema.json' kubesurge.yaml
  # Check a report a scheduled run wrote
  kubesurge schema RotationReport > report.schema.json
  check-jsonschema --schemafile report.schema.json report.json

",
        exit_codes_help!()
    ))]
    Schema(crate::cli::schema::SchemaArgs),

    /// Show kubesurge's version, the git commit it was built from and how
    /// current its table of Kubernetes releases is.
    #[command(after_help = concat!(
        "Examples:
  kubesurge version
  kubesurge version -o json

",
        exit_codes_help!()
    ))]
    Version(VersionArgs),

    /// Write kubesurge's manual pages (kubesurge.1, kubesurge-plan.1, …)
    /// into a directory.
    #[command(hide = true, after_help = concat!(
        "Examples:
  kubesurge man --dir /usr/local/share/man/man1

",
        exit_codes_help!()
    ))]
    Man(crate::cli::completion::ManArgs),
}

/// `kubesurge version`.
#[derive(Debug, Clone, Args)]
pub struct VersionArgs {
    /// Output format: table, json, yaml or jsonpath=TEMPLATE (kubectl's
    /// JSONPath, over the JSON document)
    #[arg(short, long, value_name = "FORMAT", default_value = "table", value_parser = parse_output_format)]
    pub output: OutputFormat,
}

/// `kubesurge plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Target Kubernetes version, vMAJOR.MINOR.PATCH (v1.34.2; the v is
    /// optional) [default: stay at the current control-plane version]
    #[arg(long, value_name = "VERSION", value_parser = parse_target_version)]
    pub to: Option<KubeVersion>,

    /// Format of the plan on stdout: table, json, yaml or
    /// jsonpath=TEMPLATE (kubectl's JSONPath, over the JSON document)
    #[arg(short, long, value_name = "FORMAT", default_value = "table", value_parser = parse_output_format)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub settings: SettingsFlags,
}

/// A version to upgrade to (`--to`): a release, never a pre-release.
pub(crate) fn parse_target_version(text: &str) -> Result<KubeVersion, String> {
    KubeVersion::parse_target(text).map_err(|error| error.to_string())
}

/// Flags of the commands that change the cluster (`upgrade`, `rotate`).
#[derive(Debug, Clone, Default, Args)]
pub struct MutationFlags {
    /// Show every change the run would make; make none (the maintenance
    /// window does not apply)
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (without a terminal, a change is made
    /// only with --yes)
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Format of the report on stdout: table, json, yaml,
    /// jsonpath=TEMPLATE (kubectl's JSONPath, over the JSON document) or
    /// name (node/NAME per line: the new nodes the run made; with
    /// --dry-run, and for a rotate outside the maintenance window, the
    /// nodes it would replace)
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "table", value_parser = parse_report_format)]
    pub output: ReportFormat,

    /// Also write the report as Prometheus metrics to this file (for a
    /// node-exporter textfile collector or a push gateway); replaced
    /// atomically at the end of every run, deferred ones too
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub settings: SettingsFlags,
}

/// Flags that override fields of the config file. `plan` takes the same
/// ones as the commands that act, so a command line can be checked first.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Settings (override the config file)")]
pub struct SettingsFlags {
    /// Override cluster.name: the name in tags, the lock and events
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,

    /// Override drain.timeout: how long one node's drain may take (30s,
    /// 15m, 2h)
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,

    /// Override drain.onTimeout: what a drain that times out does: fail
    /// (leave the node cordoned, fail the slot), force (delete the pods
    /// left, ignoring PodDisruptionBudgets) or skip (uncordon, keep the
    /// node)
    #[arg(long, value_name = "fail|force|skip")]
    pub on_drain_timeout: Option<String>,

    /// Override drain.unmanagedPods: what the drain does with pods no
    /// controller recreates: fail (refuse to drain) or delete
    #[arg(long, value_name = "fail|delete")]
    pub unmanaged_pods: Option<String>,

    /// Override drain.localStorage: what the drain does with pods whose
    /// PersistentVolume lives on the node (its data goes with the
    /// instance): fail (refuse to drain) or delete
    #[arg(long, value_name = "fail|delete")]
    pub local_storage: Option<String>,

    /// Override join.tokenTTL: how long a new node's bootstrap token is
    /// valid (20m)
    #[arg(long, value_name = "DURATION")]
    pub token_ttl: Option<String>,

    /// Override health.newNodeTimeout: how long a new node may take to
    /// join and become Ready (10m)
    #[arg(long, value_name = "DURATION")]
    pub new_node_timeout: Option<String>,

    /// Override health.settle: how long a new node must stay Ready before
    /// the old one is drained (30s)
    #[arg(long, value_name = "DURATION")]
    pub settle: Option<String>,
}

impl SettingsFlags {
    /// As overrides: validated with the file, problems named by flag.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            cluster_name: self.cluster_name.clone(),
            drain_timeout: self.drain_timeout.clone(),
            drain_on_timeout: self.on_drain_timeout.clone(),
            unmanaged_pods: self.unmanaged_pods.clone(),
            local_storage: self.local_storage.clone(),
            token_ttl: self.token_ttl.clone(),
            new_node_timeout: self.new_node_timeout.clone(),
            settle: self.settle.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kubesurge",
            "plan",
            "--context",
            "prod",
            "-vv",
            "--to",
            "1.34.2",
            "-o",
            "json",
            "--drain-timeout",
            "30m",
        ])
        .unwrap();
        assert_eq!(cli.global.context.as_deref(), Some("prod"));
        assert_eq!(cli.global.verbose, 2);
        let Command::Plan(plan) = cli.command else {
            panic!("plan")
        };
        assert_eq!(plan.to, Some(KubeVersion::new(1, 34, 2)));
        assert_eq!(plan.output, OutputFormat::Document(Encoding::Json));
        assert_eq!(
            plan.settings.overrides().drain_timeout.as_deref(),
            Some("30m")
        );
    }

    #[test]
    fn rotate_and_upgrade_take_the_same_mutation_flags() {
        let argv = ["--dry-run", "-y", "-o", "json", "--settle", "1m"];
        let rotate = Cli::try_parse_from(["kubesurge", "rotate"].into_iter().chain(argv)).unwrap();
        let upgrade = Cli::try_parse_from(
            ["kubesurge", "upgrade", "--to", "1.34.2"]
                .into_iter()
                .chain(argv),
        )
        .unwrap();
        let (Command::Rotate(rotate), Command::Upgrade(upgrade)) =
            (rotate.command, upgrade.command)
        else {
            panic!("rotate and upgrade")
        };
        for flags in [rotate.flags, upgrade.flags] {
            assert!(flags.dry_run && flags.yes);
            assert_eq!(flags.output, ReportFormat::Document(Encoding::Json));
            assert_eq!(flags.settings.settle.as_deref(), Some("1m"));
        }
    }

    #[test]
    fn verbose_and_quiet_exclude_each_other() {
        assert!(Cli::try_parse_from(["kubesurge", "plan", "-v", "-q"]).is_err());
    }
}
