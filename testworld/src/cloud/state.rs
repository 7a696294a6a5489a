//! The cloud's bookkeeping: zones, subnets, images and instances, with the
//! decisions the API makes on them (launch idempotency per slot tag,
//! ownership checks on terminate, tag/state filters, paging). Pure data:
//! no I/O, and the clock only arrives through arguments.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use kubesurge_provider::{InstanceState, tags};
use sha2::{Digest, Sha256};
use thiserror::Error;

use kubesurge_sim::api::{self, ImageView, InstanceView, VERSION_TAG};
use kubesurge_sim::provider_id::provider_id;

/// Instances per page of `DescribeInstances`, as the largest page EC2
/// answers for tag-filtered describes in practice: big enough to be cheap,
/// small enough that real clusters span several pages.
pub const PAGE_SIZE: usize = 50;

/// Minors the default image catalogue covers, and the patches of each.
pub const DEFAULT_IMAGE_MINORS: std::ops::RangeInclusive<u64> = 28..=37;
pub const DEFAULT_IMAGE_PATCHES: std::ops::RangeInclusive<u64> = 0..=30;

/// One availability zone and its single subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// `zone-a`.
    pub name: String,
    /// `subnet-zone-a`.
    pub subnet: String,
    /// Second octet of the zone's private addresses (`10.<octet>.…`).
    pub octet: u8,
    next_host: u32,
}

/// A bootable image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: String,
    pub name: String,
    pub created: Timestamp,
    pub tags: BTreeMap<String, String>,
}

impl ImageRecord {
    /// The Kubernetes version the image's kubelet and kubeadm are at.
    pub fn kubernetes_version(&self) -> Option<&str> {
        self.tags.get(VERSION_TAG).map(String::as_str)
    }

    pub fn view(&self) -> ImageView {
        ImageView {
            image_id: self.id.clone(),
            name: self.name.clone(),
            creation_date: self.created,
            tags: self.tags.clone(),
        }
    }
}

/// One instance, in every state including terminated (terminated instances
/// stay visible to describes, as on EC2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Launch order; pages are cut along it.
    pub seq: u64,
    pub id: String,
    pub state: InstanceState,
    pub zone: String,
    pub subnet: String,
    pub image_id: String,
    pub private_ip: String,
    pub provider_id: String,
    pub launched_at: Timestamp,
    pub tags: BTreeMap<String, String>,
    pub user_data: String,
}

impl InstanceRecord {
    pub fn view(&self) -> InstanceView {
        InstanceView {
            instance_id: self.id.clone(),
            state: self.state,
            zone: self.zone.clone(),
            subnet_id: self.subnet.clone(),
            image_id: self.image_id.clone(),
            private_ip_address: self.private_ip.clone(),
            provider_id: self.provider_id.clone(),
            launch_time: self.launched_at,
            tags: self.tags.clone(),
        }
    }
}

/// What a launch asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    pub image_id: String,
    pub zone: String,
    pub subnet: Option<String>,
    pub user_data: String,
    pub tags: BTreeMap<String, String>,
}

/// The answer to a launch: a new instance, or the one already holding the
/// slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launched {
    New(InstanceRecord),
    Existing(InstanceRecord),
}

impl Launched {
    pub fn record(&self) -> &InstanceRecord {
        match self {
            Launched::New(r) | Launched::Existing(r) => r,
        }
    }
}

/// Which instances a describe selects. Empty fields select everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    pub instance_ids: Vec<String>,
    /// Every pair must be present with exactly this value.
    pub tags: BTreeMap<String, String>,
    pub states: Vec<InstanceState>,
    pub private_ip: Option<String>,
}

impl InstanceFilter {
    pub fn matches(&self, r: &InstanceRecord) -> bool {
        (self.instance_ids.is_empty() || self.instance_ids.contains(&r.id))
            && self.tags.iter().all(|(k, v)| r.tags.get(k) == Some(v))
            && (self.states.is_empty() || self.states.contains(&r.state))
            && self
                .private_ip
                .as_ref()
                .is_none_or(|ip| *ip == r.private_ip)
    }
}

/// A request the cloud refuses. Each has the wire code the API answers.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CloudError {
    #[error("the availability zone {0:?} does not exist")]
    UnknownZone(String),
    #[error("the subnet {subnet:?} does not exist in zone {zone:?}")]
    UnknownSubnet { subnet: String, zone: String },
    #[error("the image id {0:?} does not exist")]
    UnknownImage(String),
    #[error("the instance id {0:?} does not exist")]
    UnknownInstance(String),
    #[error("instance {id} is not tagged {key}={value}; refusing to terminate it")]
    NotOwned {
        id: String,
        key: String,
        value: String,
    },
    #[error("invalid pagination token {0:?}")]
    BadToken(String),
    /// The slot's launch is bound to an instance that is gone.
    #[error(
        "the launch for slot {slot:?} was made before as instance {instance}, now terminated; \
         the slot's key cannot launch again"
    )]
    SlotKeySpent { slot: String, instance: String },
    /// A machine's filesystem could not be made or changed.
    #[error("machine filesystem: {0}")]
    NodeRoot(String),
}

impl CloudError {
    /// The error code on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            CloudError::UnknownZone(_) | CloudError::UnknownSubnet { .. } => {
                api::code::INVALID_PARAMETER
            }
            CloudError::BadToken(_) => api::code::INVALID_PARAMETER,
            CloudError::SlotKeySpent { .. } => api::code::IDEMPOTENT_PARAMETER_MISMATCH,
            CloudError::UnknownImage(_) => api::code::IMAGE_NOT_FOUND,
            CloudError::UnknownInstance(_) => api::code::INSTANCE_NOT_FOUND,
            CloudError::NotOwned { .. } => api::code::INCORRECT_OWNER,
            CloudError::NodeRoot(_) => api::code::INTERNAL,
        }
    }

    /// The HTTP status on the wire.
    pub fn http_status(&self) -> u16 {
        match self {
            CloudError::UnknownInstance(_) => 404,
            CloudError::NodeRoot(_) => 500,
            _ => 400,
        }
    }
}

/// Everything the cloud knows.
#[derive(Debug)]
pub struct CloudState {
    zones: Vec<Zone>,
    images: Vec<ImageRecord>,
    instances: BTreeMap<u64, InstanceRecord>,
    by_id: HashMap<String, u64>,
    next_seq: u64,
}

/// `zone-a`, `zone-b`, … for the `index`-th zone (0-based).
pub fn zone_name(index: usize) -> String {
    let letter = (b'a' + (index % 26) as u8) as char;
    if index < 26 {
        format!("zone-{letter}")
    } else {
        format!("zone-{letter}{}", index / 26)
    }
}

/// The image name of a version (`kubesurge-sim-node-v1.35.3`).
pub fn image_name(version: &str) -> String {
    format!("kubesurge-sim-node-{version}")
}

/// A stable `ami-…` id (17 hex digits) from the image name and a serial,
/// so a world started twice has the same catalogue.
fn image_id(name: &str, serial: usize) -> String {
    let digest = Sha256::digest(format!("{name}#{serial}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("ami-{}", &hex[..17])
}

/// A random `i-…` id with 17 hex digits.
fn new_instance_id() -> String {
    let hex: String = (0..17)
        .map(|_| char::from_digit(rand::random_range(0..16u32), 16).unwrap_or('0'))
        .collect();
    format!("i-{hex}")
}

/// When the default catalogue's image for `v1.<minor>.<patch>` was made:
/// increasing with the version (a minor every 120 days, a patch every 3).
fn default_image_date(minor: u64, patch: u64) -> Timestamp {
    let base: Timestamp = "2023-08-15T00:00:00Z"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let days = (minor.saturating_sub(28) * 120 + patch * 3) as i64;
    base + SignedDuration::from_hours(days * 24)
}

impl CloudState {
    /// A cloud with `zones` zones and the default image catalogue.
    pub fn new(zones: usize) -> CloudState {
        let mut state = CloudState {
            zones: (0..zones.max(1))
                .map(|i| Zone {
                    name: zone_name(i),
                    subnet: format!("subnet-{}", zone_name(i)),
                    octet: (i + 1).min(255) as u8,
                    next_host: 0,
                })
                .collect(),
            images: Vec::new(),
            instances: BTreeMap::new(),
            by_id: HashMap::new(),
            next_seq: 1,
        };
        for minor in DEFAULT_IMAGE_MINORS {
            for patch in DEFAULT_IMAGE_PATCHES {
                let version = format!("v1.{minor}.{patch}");
                state.add_image(&version, default_image_date(minor, patch));
            }
        }
        state
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    pub fn images(&self) -> &[ImageRecord] {
        &self.images
    }

    /// Deregister every image of `version` (EC2 `DeregisterImage`: a
    /// deregistered AMI no longer appears in DescribeImages,
    /// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/deregister-ami.html).
    /// Returns how many there were.
    pub fn remove_images(&mut self, version: &str) -> usize {
        let before = self.images.len();
        self.images
            .retain(|i| i.kubernetes_version() != Some(version));
        before - self.images.len()
    }

    /// Add an image for `version` made at `created` (a refreshed image of
    /// the same version is another image with a later date). Returns its id.
    pub fn add_image(&mut self, version: &str, created: Timestamp) -> String {
        let name = image_name(version);
        let serial = self.images.iter().filter(|i| i.name == name).count();
        let id = image_id(&name, serial);
        self.images.push(ImageRecord {
            id: id.clone(),
            name,
            created,
            tags: BTreeMap::from([(VERSION_TAG.to_string(), version.to_string())]),
        });
        id
    }

    pub fn image(&self, id: &str) -> Option<&ImageRecord> {
        self.images.iter().find(|i| i.id == id)
    }

    /// Images carrying every tag of `tags` (and one of `ids` if given).
    pub fn find_images(
        &self,
        tags: &BTreeMap<String, String>,
        ids: &[String],
    ) -> Vec<&ImageRecord> {
        self.images
            .iter()
            .filter(|i| ids.is_empty() || ids.contains(&i.id))
            .filter(|i| tags.iter().all(|(k, v)| i.tags.get(k) == Some(v)))
            .collect()
    }

    pub fn instance(&self, id: &str) -> Option<&InstanceRecord> {
        self.by_id.get(id).and_then(|seq| self.instances.get(seq))
    }

    fn instance_mut(&mut self, id: &str) -> Option<&mut InstanceRecord> {
        let seq = *self.by_id.get(id)?;
        self.instances.get_mut(&seq)
    }

    /// Give an instance another private address.
    pub fn set_private_ip(&mut self, id: &str, address: &str) -> Result<(), CloudError> {
        let record = self
            .instance_mut(id)
            .ok_or_else(|| CloudError::UnknownInstance(id.to_string()))?;
        record.private_ip = address.to_string();
        Ok(())
    }

    /// Replace an instance's tags (`CreateTags`/`DeleteTags`).
    pub fn set_tags(&mut self, id: &str, tags: BTreeMap<String, String>) -> Result<(), CloudError> {
        let record = self
            .instance_mut(id)
            .ok_or_else(|| CloudError::UnknownInstance(id.to_string()))?;
        record.tags = tags;
        Ok(())
    }

    /// Every instance in launch order.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceRecord> {
        self.instances.values()
    }

    /// The non-terminated instance already launched for this slot of this
    /// cluster (slot values are only unique within a cluster).
    pub fn instance_for_slot(&self, cluster: Option<&str>, slot: &str) -> Option<&InstanceRecord> {
        fn tag<'a>(r: &'a InstanceRecord, key: &str) -> Option<&'a str> {
            r.tags.get(key).map(String::as_str)
        }
        self.instances.values().find(|r| {
            r.state != InstanceState::Terminated
                && tag(r, tags::SLOT) == Some(slot)
                && tag(r, tags::CLUSTER) == cluster
        })
    }

    /// Check a launch without performing it: the zone, subnet and image
    /// must exist. Returns the instance already holding the slot, if any.
    ///
    /// A slot key is bound for good to the first instance launched with it,
    /// as EC2 binds a `ClientToken` "for at least 24 hours after the
    /// termination of the instance"
    /// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Run_Instance_Idempotency.html):
    /// once that instance is terminated, the key launches nothing again.
    pub fn check_launch(&self, spec: &LaunchSpec) -> Result<Option<&InstanceRecord>, CloudError> {
        if let Some(slot) = spec.tags.get(tags::SLOT) {
            let cluster = spec.tags.get(tags::CLUSTER).map(String::as_str);
            if let Some(existing) = self.instance_for_slot(cluster, slot) {
                return Ok(Some(existing));
            }
            if let Some(gone) = self.instances.values().find(|r| {
                r.tags.get(tags::SLOT) == Some(slot)
                    && r.tags.get(tags::CLUSTER).map(String::as_str) == cluster
            }) {
                return Err(CloudError::SlotKeySpent {
                    slot: slot.clone(),
                    instance: gone.id.clone(),
                });
            }
        }
        let zone = self
            .zones
            .iter()
            .find(|z| z.name == spec.zone)
            .ok_or_else(|| CloudError::UnknownZone(spec.zone.clone()))?;
        if let Some(subnet) = &spec.subnet
            && *subnet != zone.subnet
        {
            return Err(CloudError::UnknownSubnet {
                subnet: subnet.clone(),
                zone: spec.zone.clone(),
            });
        }
        if self.image(&spec.image_id).is_none() {
            return Err(CloudError::UnknownImage(spec.image_id.clone()));
        }
        Ok(None)
    }

    /// Launch (idempotent on the `kubesurge.io/slot` tag).
    pub fn launch(&mut self, spec: LaunchSpec, now: Timestamp) -> Result<Launched, CloudError> {
        if let Some(existing) = self.check_launch(&spec)? {
            return Ok(Launched::Existing(existing.clone()));
        }
        let zone = self
            .zones
            .iter_mut()
            .find(|z| z.name == spec.zone)
            .ok_or_else(|| CloudError::UnknownZone(spec.zone.clone()))?;
        let host = zone.next_host;
        zone.next_host += 1;
        // 10.<zone>.<n>.<m>, skipping .0-.3 of each /24 as clouds reserve them.
        let private_ip = format!("10.{}.{}.{}", zone.octet, host / 250, 4 + host % 250);
        let (zone_name, subnet) = (zone.name.clone(), zone.subnet.clone());
        let mut id = new_instance_id();
        while self.by_id.contains_key(&id) {
            id = new_instance_id();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let record = InstanceRecord {
            seq,
            provider_id: provider_id(&zone_name, &id),
            id: id.clone(),
            state: InstanceState::Pending,
            zone: zone_name,
            subnet,
            image_id: spec.image_id,
            private_ip,
            launched_at: now,
            tags: spec.tags,
            user_data: spec.user_data,
        };
        self.by_id.insert(id, seq);
        self.instances.insert(seq, record.clone());
        Ok(Launched::New(record))
    }

    /// Move a pending instance to running. False when it is not pending
    /// (terminated while booting).
    pub fn mark_running(&mut self, id: &str) -> bool {
        match self.instance_mut(id) {
            Some(r) if r.state == InstanceState::Pending => {
                r.state = InstanceState::Running;
                true
            }
            _ => false,
        }
    }

    /// Ask for termination, refusing instances that lack any of `required`
    /// tags. Returns the state before the call: a call on an instance
    /// already going away changes nothing.
    pub fn terminate(
        &mut self,
        id: &str,
        required: &BTreeMap<String, String>,
    ) -> Result<InstanceState, CloudError> {
        let record = self
            .instance_mut(id)
            .ok_or_else(|| CloudError::UnknownInstance(id.to_string()))?;
        if let Some((key, value)) = required
            .iter()
            .find(|(k, v)| record.tags.get(*k) != Some(*v))
        {
            return Err(CloudError::NotOwned {
                id: id.to_string(),
                key: key.clone(),
                value: value.clone(),
            });
        }
        let before = record.state;
        if !before.is_going_away() {
            record.state = InstanceState::ShuttingDown;
        }
        Ok(before)
    }

    /// Finish a termination. True when the instance was shutting down.
    pub fn mark_terminated(&mut self, id: &str) -> bool {
        match self.instance_mut(id) {
            Some(r) if r.state == InstanceState::ShuttingDown => {
                r.state = InstanceState::Terminated;
                true
            }
            _ => false,
        }
    }

    /// One page of the instances matching `filter`, after the instance with
    /// sequence `after`; the token of the next page when more match.
    pub fn describe(
        &self,
        filter: &InstanceFilter,
        after: u64,
        max: usize,
    ) -> (Vec<&InstanceRecord>, Option<u64>) {
        // Named ids come back in one page: EC2 refuses `MaxResults` with
        // `InstanceIds` ("You cannot specify this parameter and the instance
        // IDs parameter in the same request",
        // https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html).
        let max = if filter.instance_ids.is_empty() {
            max.clamp(1, PAGE_SIZE)
        } else {
            usize::MAX
        };
        let mut page = Vec::new();
        let mut matching = self
            .instances
            .range(after + 1..)
            .map(|(_, r)| r)
            .filter(|r| filter.matches(r));
        for r in matching.by_ref() {
            page.push(r);
            if page.len() == max {
                break;
            }
        }
        let more = matching.next().is_some();
        let next = if more {
            page.last().map(|r| r.seq)
        } else {
            None
        };
        (page, next)
    }
}

/// The wire form of a page token.
pub fn encode_token(seq: u64) -> String {
    format!("after-{seq}")
}

pub fn decode_token(token: &str) -> Result<u64, CloudError> {
    token
        .strip_prefix("after-")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CloudError::BadToken(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(zone: &str, slot: Option<&str>, image: &str) -> LaunchSpec {
        let mut tags = BTreeMap::from([(tags::CLUSTER.to_string(), "c1".to_string())]);
        if let Some(slot) = slot {
            tags.insert(tags::SLOT.to_string(), slot.to_string());
        }
        LaunchSpec {
            image_id: image.to_string(),
            zone: zone.to_string(),
            subnet: None,
            user_data: String::new(),
            tags,
        }
    }

    fn image_for(state: &CloudState, version: &str) -> String {
        let tags = BTreeMap::from([(VERSION_TAG.to_string(), version.to_string())]);
        state.find_images(&tags, &[])[0].id.clone()
    }

    #[test]
    fn default_catalogue_has_every_patch_with_dates_rising_with_version() {
        let state = CloudState::new(3);
        assert_eq!(state.images().len(), 10 * 31);
        let date = |v: &str| {
            let tags = BTreeMap::from([(VERSION_TAG.to_string(), v.to_string())]);
            state.find_images(&tags, &[])[0].created
        };
        assert!(date("v1.28.30") < date("v1.29.0"));
        assert!(date("v1.35.2") < date("v1.35.3"));
        let img = state.image(&image_for(&state, "v1.35.3")).unwrap();
        assert_eq!(img.name, "kubesurge-sim-node-v1.35.3");
        assert!(img.id.starts_with("ami-") && img.id.len() == 4 + 17);
        assert_eq!(state.zones()[1].name, "zone-b");
        assert_eq!(state.zones()[1].subnet, "subnet-zone-b");
    }

    #[test]
    fn launch_is_idempotent_on_the_slot_tag_and_the_key_spent_once_terminated() {
        let mut state = CloudState::new(2);
        let image = image_for(&state, "v1.34.0");
        let now = Timestamp::now();
        let first = state
            .launch(spec("zone-b", Some("r.n1.0"), &image), now)
            .unwrap();
        let Launched::New(first) = first else {
            panic!("first launch must be new")
        };
        assert!(first.id.starts_with("i-") && first.id.len() == 19);
        assert_eq!(first.provider_id, format!("sim:///zone-b/{}", first.id));
        assert!(first.private_ip.starts_with("10.2."));
        let again = state
            .launch(spec("zone-b", Some("r.n1.0"), &image), now)
            .unwrap();
        assert_eq!(again, Launched::Existing(first.clone()));
        state.terminate(&first.id, &BTreeMap::new()).unwrap();
        state.mark_terminated(&first.id);
        // As EC2 keeps a ClientToken bound after its instance is gone.
        assert_eq!(
            state.launch(spec("zone-b", Some("r.n1.0"), &image), now),
            Err(CloudError::SlotKeySpent {
                slot: "r.n1.0".into(),
                instance: first.id.clone(),
            })
        );
        let next = state
            .launch(spec("zone-b", Some("r.n1.1"), &image), now)
            .unwrap();
        assert!(matches!(next, Launched::New(r) if r.id != first.id));
    }

    #[test]
    fn launch_checks_zone_subnet_and_image() {
        let mut state = CloudState::new(1);
        let image = image_for(&state, "v1.34.0");
        let now = Timestamp::now();
        assert_eq!(
            state.launch(spec("zone-q", None, &image), now),
            Err(CloudError::UnknownZone("zone-q".into()))
        );
        assert!(matches!(
            state.launch(spec("zone-a", None, "ami-nope"), now),
            Err(CloudError::UnknownImage(_))
        ));
        let mut wrong_subnet = spec("zone-a", None, &image);
        wrong_subnet.subnet = Some("subnet-zone-b".into());
        assert!(matches!(
            state.launch(wrong_subnet, now),
            Err(CloudError::UnknownSubnet { .. })
        ));
    }

    #[test]
    fn terminate_refuses_instances_of_other_owners() {
        let mut state = CloudState::new(1);
        let image = image_for(&state, "v1.34.0");
        let r = state
            .launch(spec("zone-a", None, &image), Timestamp::now())
            .unwrap();
        let id = r.record().id.clone();
        let other = BTreeMap::from([(tags::CLUSTER.to_string(), "c2".to_string())]);
        assert!(matches!(
            state.terminate(&id, &other),
            Err(CloudError::NotOwned { .. })
        ));
        assert_eq!(state.instance(&id).unwrap().state, InstanceState::Pending);
        let mine = BTreeMap::from([(tags::CLUSTER.to_string(), "c1".to_string())]);
        assert_eq!(state.terminate(&id, &mine), Ok(InstanceState::Pending));
        assert_eq!(state.terminate(&id, &mine), Ok(InstanceState::ShuttingDown));
        assert!(state.mark_terminated(&id));
        assert_eq!(state.terminate(&id, &mine), Ok(InstanceState::Terminated));
    }

    #[test]
    fn describe_pages_in_launch_order_and_filters() {
        let mut state = CloudState::new(1);
        let image = image_for(&state, "v1.34.0");
        for i in 0..120 {
            let mut s = spec("zone-a", None, &image);
            s.tags.insert(
                "pool".into(),
                if i % 2 == 0 { "even" } else { "odd" }.into(),
            );
            state.launch(s, Timestamp::now()).unwrap();
        }
        let filter = InstanceFilter {
            tags: BTreeMap::from([("pool".to_string(), "even".to_string())]),
            ..Default::default()
        };
        let (p1, t1) = state.describe(&filter, 0, 1000);
        assert_eq!(p1.len(), PAGE_SIZE);
        let (p2, t2) = state.describe(&filter, t1.unwrap(), 1000);
        assert_eq!(p2.len(), 10);
        assert_eq!(t2, None);
        assert!(p1.iter().chain(&p2).all(|r| r.tags["pool"] == "even"));
        assert!(p1.last().unwrap().seq < p2[0].seq);
        // An exact page leaves no token behind.
        let (_, t) = state.describe(&filter, 0, 60);
        assert!(t.is_some());
        assert_eq!(decode_token(&encode_token(7)), Ok(7));
        assert!(decode_token("garbage").is_err());
    }
}
