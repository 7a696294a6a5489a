//! The cluster-wide parts: header, `cluster`, `controlPlane`, `drain`,
//! `join`, `health`, `window`.

use std::collections::BTreeSet;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use kubesurge_provider::config::{FieldPath, field, show};

use super::{API_VERSION, KIND, Mode, Walk};
use crate::duration::HumanDuration;
use crate::exec::{DEFAULT_SSH_PORT, SshSettings};
use crate::kube::drain::{LocalStorage, OnDrainTimeout, UnmanagedPods};
use crate::settings::model::*;
use crate::settings::names::check_dns_label;
use crate::window::Window;

pub(super) const CLUSTER_FIELDS: &[&str] = &["name"];
pub(super) const CONTROL_PLANE_FIELDS: &[&str] = &["exec", "ssh", "node", "gateTimeout"];
pub(super) const SSH_FIELDS: &[&str] = &["user", "identityFile", "knownHosts", "port"];
pub(super) const DRAIN_FIELDS: &[&str] = &["timeout", "onTimeout", "unmanagedPods", "localStorage"];
pub(super) const JOIN_FIELDS: &[&str] = &["tokenTTL"];
/// The longest `join.tokenTTL`: kubeadm's default token lifetime (24h,
/// `kubeadm token create --ttl`).
const MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
pub(super) const HEALTH_FIELDS: &[&str] = &["newNodeTimeout", "settle"];
pub(super) const WINDOW_FIELDS: &[&str] = &["days", "start", "end", "timeZone"];
/// `controlPlane.exec`.
pub(super) const EXEC_METHODS: &[&str] = &["ssm", "ssh", "local", "sim"];
/// `drain.onTimeout`.
pub(super) const ON_TIMEOUT_CHOICES: &[&str] = &["fail", "force", "skip"];
/// `drain.unmanagedPods` and `drain.localStorage`.
pub(super) const FAIL_OR_DELETE: &[&str] = &["fail", "delete"];

impl Walk<'_> {
    pub(super) fn header(&mut self, root: &FieldPath, map: &Map<String, Value>) {
        let expected_api = format!("expected {API_VERSION}");
        if let Some(value) = self.required(root, map, "apiVersion", &expected_api)
            && value.as_str() != Some(API_VERSION)
        {
            self.error(
                &root.key("apiVersion"),
                format!("{} is not supported ({expected_api})", show(value)),
            );
        }
        let expected_kind = format!("expected {KIND}");
        if let Some(value) = self.required(root, map, "kind", &expected_kind)
            && value.as_str() != Some(KIND)
        {
            self.error(
                &root.key("kind"),
                format!(
                    "{} is not a kind this file can be ({expected_kind})",
                    show(value)
                ),
            );
        }
    }

    /// `Some(None)`: valid and not set.
    pub(super) fn cluster(
        &mut self,
        root: &FieldPath,
        map: &Map<String, Value>,
        mode: Mode,
    ) -> Option<Option<String>> {
        let path = root.key("cluster");
        let Some(value) = field(map, "cluster") else {
            if mode == Mode::File {
                self.error(
                    &path.key("name"),
                    "required (the cluster's name, a DNS label used in tags, the lock and events)",
                );
                return None;
            }
            return Some(None);
        };
        let cluster = self.mapping(&path, value, CLUSTER_FIELDS)?;
        let name = self.required_string(
            &path,
            cluster,
            "name",
            "the cluster's name, a DNS label used in tags, the lock and events",
        )?;
        match check_dns_label(name) {
            Ok(()) => Some(Some(name.to_string())),
            Err(message) => {
                self.error(&path.key("name"), message);
                None
            }
        }
    }

    pub(super) fn control_plane(
        &mut self,
        root: &FieldPath,
        map: &Map<String, Value>,
    ) -> Option<ControlPlane> {
        let path = root.key("controlPlane");
        let Some(section) = field(map, "controlPlane") else {
            return Some(ControlPlane::default());
        };
        let section = self.mapping(&path, section, CONTROL_PLANE_FIELDS)?;
        let exec = match field(section, "exec") {
            None => Some(None),
            Some(value) => self
                .choice(&path.key("exec"), value, EXEC_METHODS)
                .map(|choice| {
                    Some(match choice {
                        "ssm" => ExecMethod::Ssm,
                        "ssh" => ExecMethod::Ssh,
                        "sim" => ExecMethod::Sim,
                        _ => ExecMethod::Local,
                    })
                }),
        };
        let ssh = self.ssh(&path, section);
        let node = match field(section, "node") {
            None => Some(None),
            Some(value) => self
                .string(&path.key("node"), value)
                .map(|s| Some(s.to_string())),
        };
        let gate_timeout = self.optional_duration(
            &path,
            Some(section),
            "gateTimeout",
            ControlPlane::default().gate_timeout,
        );
        Some(ControlPlane {
            exec: exec?,
            ssh: ssh?,
            node: node?,
            gate_timeout: gate_timeout?,
        })
    }

    fn ssh(&mut self, parent: &FieldPath, map: &Map<String, Value>) -> Option<SshSettings> {
        let path = parent.key("ssh");
        let Some(value) = field(map, "ssh") else {
            return Some(SshSettings::default());
        };
        let ssh = self.mapping(&path, value, SSH_FIELDS)?;
        let mut ok = true;
        let mut text = |walk: &mut Walk<'_>, key: &str| match field(ssh, key) {
            None => None,
            Some(value) => {
                let s = walk.string(&path.key(key), value).map(str::to_string);
                ok &= s.is_some();
                s
            }
        };
        let user = text(self, "user");
        let identity_file = text(self, "identityFile");
        let known_hosts = text(self, "knownHosts");
        let port = match field(ssh, "port") {
            None => Some(DEFAULT_SSH_PORT),
            Some(value) => match value.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(port) if port > 0 => Some(port),
                _ => {
                    self.error(
                        &path.key("port"),
                        format!("{} is not a TCP port (expected 1-65535)", show(value)),
                    );
                    None
                }
            },
        };
        if let Some(user) = &user
            && user.contains(|c: char| c.is_whitespace() || c == '@')
        {
            self.error(
                &path.key("user"),
                format!("{user:?} is not a user name (no spaces or '@')"),
            );
            ok = false;
        }
        (ok && port.is_some()).then(|| SshSettings {
            user,
            identity_file,
            known_hosts,
            port: port.unwrap_or(DEFAULT_SSH_PORT),
        })
    }

    pub(super) fn drain(&mut self, root: &FieldPath, map: &Map<String, Value>) -> Option<Drain> {
        let path = root.key("drain");
        let section = match field(map, "drain") {
            None => None,
            Some(value) => Some(self.mapping(&path, value, DRAIN_FIELDS)?),
        };
        let defaults = Drain::default();
        let timeout = self.optional_duration(&path, section, "timeout", defaults.timeout);
        let on_timeout = match section.and_then(|s| field(s, "onTimeout")) {
            None => Some(defaults.on_timeout),
            Some(value) => self
                .choice(&path.key("onTimeout"), value, ON_TIMEOUT_CHOICES)
                .map(|choice| match choice {
                    "fail" => OnDrainTimeout::Fail,
                    "force" => OnDrainTimeout::Force,
                    _ => OnDrainTimeout::Skip,
                }),
        };
        let unmanaged_pods = match section.and_then(|s| field(s, "unmanagedPods")) {
            None => Some(defaults.unmanaged_pods),
            Some(value) => self
                .choice(&path.key("unmanagedPods"), value, FAIL_OR_DELETE)
                .map(|choice| match choice {
                    "fail" => UnmanagedPods::Fail,
                    _ => UnmanagedPods::Delete,
                }),
        };
        let local_storage = match section.and_then(|s| field(s, "localStorage")) {
            None => Some(defaults.local_storage),
            Some(value) => self
                .choice(&path.key("localStorage"), value, FAIL_OR_DELETE)
                .map(|choice| match choice {
                    "fail" => LocalStorage::Fail,
                    _ => LocalStorage::Delete,
                }),
        };
        Some(Drain {
            timeout: timeout?,
            on_timeout: on_timeout?,
            unmanaged_pods: unmanaged_pods?,
            local_storage: local_storage?,
        })
    }

    pub(super) fn health(&mut self, root: &FieldPath, map: &Map<String, Value>) -> Option<Health> {
        let path = root.key("health");
        let section = match field(map, "health") {
            None => None,
            Some(value) => Some(self.mapping(&path, value, HEALTH_FIELDS)?),
        };
        let defaults = Health::default();
        let new_node_timeout =
            self.optional_duration(&path, section, "newNodeTimeout", defaults.new_node_timeout);
        // Any settle down to zero: the join itself already proves the new
        // node (Ready at the target version, no taint beyond the pool's,
        // its zone label, its kube-system DaemonSet pods Ready: design §8
        // step 2); settle only adds a time the node must stay so.
        let settle = self.optional_delay(&path, section, "settle", defaults.settle);
        Some(Health {
            new_node_timeout: new_node_timeout?,
            settle: settle?,
        })
    }

    /// `health` is needed: the token must outlive the wait for the join.
    pub(super) fn join(
        &mut self,
        root: &FieldPath,
        map: &Map<String, Value>,
        health: Option<&Health>,
    ) -> Option<Join> {
        let path = root.key("join");
        let section = match field(map, "join") {
            None => None,
            Some(value) => Some(self.mapping(&path, value, JOIN_FIELDS)?),
        };
        let token_ttl =
            self.optional_duration(&path, section, "tokenTTL", Join::default().token_ttl)?;
        if let Some(health) = health
            && token_ttl <= health.new_node_timeout
        {
            let set = section.and_then(|s| field(s, "tokenTTL")).is_some();
            self.error(
                &path.key("tokenTTL"),
                format!(
                    "{}{} must be longer than health.newNodeTimeout ({}): a node still joining \
                     when its bootstrap token expires is refused",
                    HumanDuration(token_ttl),
                    if set { "" } else { " (the default)" },
                    HumanDuration(health.new_node_timeout),
                ),
            );
            return None;
        }
        if token_ttl > MAX_TOKEN_TTL {
            self.error(
                &path.key("tokenTTL"),
                format!(
                    "{} is longer than {}, kubeadm's own token lifetime: a bootstrap token gets an \
                     automatically approved node certificate for any node name, so it lives no \
                     longer than a join needs (set health.newNodeTimeout and tokenTTL a little above it)",
                    HumanDuration(token_ttl),
                    HumanDuration(MAX_TOKEN_TTL),
                ),
            );
            return None;
        }
        Some(Join { token_ttl })
    }

    /// `Some(None)`: valid and not set.
    pub(super) fn window(
        &mut self,
        root: &FieldPath,
        map: &Map<String, Value>,
    ) -> Option<Option<Window>> {
        let path = root.key("window");
        let Some(value) = field(map, "window") else {
            return Some(None);
        };
        let window = self.mapping(&path, value, WINDOW_FIELDS)?;

        let days = self
            .required(&path, window, "days", "a list of days such as [Sat, Sun]")
            .and_then(|value| self.days(&path.key("days"), value));
        let start = self
            .required(&path, window, "start", "a time of day, \"HH:MM\"")
            .and_then(|value| self.time_of_day(&path.key("start"), value));
        let end = self
            .required(&path, window, "end", "a time of day, \"HH:MM\"")
            .and_then(|value| self.time_of_day(&path.key("end"), value));
        if let (Some(start), Some(end)) = (start, end)
            && start == end
        {
            self.error(
                &path.key("end"),
                "equals start: the window would be empty (an end before start closes it the next day)",
            );
        }
        let time_zone = self
            .required_string(
                &path,
                window,
                "timeZone",
                "an IANA time zone such as Europe/Berlin or UTC",
            )
            .and_then(|name| match TimeZone::get(name) {
                Ok(zone) => Some((zone, name.to_string())),
                Err(_) => {
                    self.error(
                        &path.key("timeZone"),
                        format!(
                            "{name:?} is not a time zone in the IANA database \
                             (such as Europe/Berlin, America/New_York or UTC)"
                        ),
                    );
                    None
                }
            });
        if start.is_some_and(|s| Some(s) == end) {
            return None;
        }
        let (time_zone, time_zone_name) = time_zone?;
        Some(Some(Window {
            days: days?,
            start: start?,
            end: end?,
            time_zone,
            time_zone_name,
        }))
    }

    fn days(&mut self, path: &FieldPath, value: &Value) -> Option<Vec<Weekday>> {
        let names = self.string_list(path, value)?;
        if names.is_empty() {
            self.error(path, "must not be empty (such as [Sat, Sun])");
            return None;
        }
        let mut days = BTreeSet::new();
        let mut ok = true;
        for (i, name) in names.iter().enumerate() {
            match parse_weekday(name) {
                Some(day) if !days.insert(day.to_monday_zero_offset()) => {
                    self.error(&path.index(i), format!("{name:?} is listed twice"));
                    ok = false;
                }
                Some(_) => {}
                None => {
                    self.error(
                        &path.index(i),
                        format!(
                            "{name:?} is not a day (expected Mon, Tue, Wed, Thu, Fri, Sat or Sun)"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| {
            days.into_iter()
                .filter_map(|offset| Weekday::from_monday_zero_offset(offset).ok())
                .collect()
        })
    }

    fn time_of_day(&mut self, path: &FieldPath, value: &Value) -> Option<Time> {
        let parsed = value.as_str().and_then(parse_hh_mm);
        if parsed.is_none() {
            self.error(
                path,
                format!(
                    "{} is not a time of day (expected \"HH:MM\", 00:00 to 23:59)",
                    show(value)
                ),
            );
        }
        parsed
    }
}

/// `Mon`…`Sun`, also full names, any case.
/// The days of `window.days`: short and long names, any case.
pub(super) const DAYS: [(&str, &str, Weekday); 7] = [
    ("mon", "monday", Weekday::Monday),
    ("tue", "tuesday", Weekday::Tuesday),
    ("wed", "wednesday", Weekday::Wednesday),
    ("thu", "thursday", Weekday::Thursday),
    ("fri", "friday", Weekday::Friday),
    ("sat", "saturday", Weekday::Saturday),
    ("sun", "sunday", Weekday::Sunday),
];

fn parse_weekday(name: &str) -> Option<Weekday> {
    let lower = name.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|(short, long, _)| lower == *short || lower == *long)
        .map(|(_, _, day)| *day)
}

/// `HH:MM`, 24-hour.
fn parse_hh_mm(text: &str) -> Option<Time> {
    let (hours, minutes) = text.trim().split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return None;
    }
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    Time::new(hours, minutes, 0, 0).ok()
}
