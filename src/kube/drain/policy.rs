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
