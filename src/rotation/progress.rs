//! What the engine tells the user while it works. The CLI implements it
//! (a live view on a TTY, plain lines otherwise); tests record it.

use super::slot::Phase;

/// Receives the run's progress.
pub trait Progress: Send + Sync {
    /// The run starts working on `total` slots.
    fn start(&self, _run_id: &str, _total: usize) {}
    /// A slot entered a phase; `detail` says more (new node, instance).
    fn phase(&self, pool: &str, node: &str, phase: Phase, detail: &str);
    /// A slot waits on something outside it (a PDB, a join).
    fn blocked(&self, pool: &str, node: &str, reason: &str);
    /// A message for the run as a whole.
    fn note(&self, message: &str);
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str, _: &str, _: Phase, _: &str) {}
    fn blocked(&self, _: &str, _: &str, _: &str) {}
    fn note(&self, _: &str) {}
}
