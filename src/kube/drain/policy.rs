//! What a drain does with what it cannot evict in time or cannot evict
//! safely: the user's choices (`drain.onTimeout`, `drain.unmanagedPods`).

/// `drain.onTimeout`: what happens to a node whose drain ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDrainTimeout {
    /// Leave it cordoned and fail the slot, naming the blocking pods and PDBs.
    Fail,
    /// Delete the remaining pods, ignoring PDBs (logged loudly, reported).
    Force,
    /// Uncordon it and leave it in place.
    Skip,
}

/// `drain.unmanagedPods`: pods without a controller would not come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmanagedPods {
    /// Refuse to drain a node that runs one.
    Fail,
    /// Evict them anyway.
    Delete,
}

/// `drain.localStorage`: pods whose PersistentVolumes live on the node
/// itself (local volumes, hostPath volumes, volumes pinned to the node by
/// `kubernetes.io/hostname`) lose that data with the instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocalStorage {
    /// Refuse to drain a node that runs one, before cordoning.
    #[default]
    Fail,
    /// Evict them anyway; the report says their local data is lost.
    Delete,
}
