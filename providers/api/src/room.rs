//! Room for a run's surge (`kubesurge check`): what a provider is asked,
//! changing nothing, about the capacity the replacements of a pool will
//! take — free addresses where they launch, a group's size limits.

use crate::{Instance, PoolRef};

/// What a provider checks the room for a pool's surge with
/// ([`crate::CloudProvider::check_room`]).
#[derive(Clone, Debug)]
pub struct RoomProbe {
    pub pool: PoolRef,
    /// Instances the run launches above the pool's size at once (the
    /// pool's `maxSurge` for its size, at least one).
    pub surge: u32,
    /// The instances the run replaces: their replacements launch where
    /// they are (zone, subnet).
    pub replaced: Vec<Instance>,
}

/// One thing looked at, and how it came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomFinding {
    /// What was looked at (`subnet subnet-1 (us-east-1a)`).
    pub subject: String,
    pub outcome: RoomOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomOutcome {
    /// There is room; what was found.
    Enough { message: String },
    /// The run would run out of room: what is short, and what to do.
    Short { message: String, fix: String },
    /// The provider could not tell.
    Unknown { message: String },
}
