//! `kubesurge version`: the release, the commit it was built from, and how
//! current its built-in table of Kubernetes releases is.

use schemars::JsonSchema;
use serde::Serialize;

use super::CommandError;
use super::args::{OutputFormat, VersionArgs};
use super::output::{self, Kind};
use crate::ExitStatus;
use crate::version::{PATCHES_AS_OF, RELEASES};

/// What `version` reports.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: &'static str,
    /// The git commit built from (`unknown` outside a checkout).
    pub commit: &'static str,
    /// The newest Kubernetes minor the built-in release table knows.
    pub newest_known_minor: String,
    /// The month of the newest patch releases the table lists.
    pub release_table_as_of: &'static str,
}

impl VersionInfo {
    pub fn of_this_binary() -> VersionInfo {
        VersionInfo {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("KUBESURGE_GIT_COMMIT"),
            newest_known_minor: RELEASES
                .last()
                .map(|r| format!("v1.{}", r.minor))
                .unwrap_or_default(),
            release_table_as_of: PATCHES_AS_OF,
        }
    }
}

pub fn run(args: VersionArgs) -> Result<ExitStatus, CommandError> {
    let info = VersionInfo::of_this_binary();
    let text = match &args.output {
        OutputFormat::Document(encoding) => output::document(Kind::Version, &info, encoding)?,
        OutputFormat::Table => format!(
            "kubesurge {} (commit {}); knows Kubernetes releases up to {}, patches as of {}\n",
            info.version, info.commit, info.newest_known_minor, info.release_table_as_of
        ),
    };
    output::print(&text)?;
    Ok(ExitStatus::Success)
}
