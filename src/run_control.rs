//! What starts and stops a run from outside its own work: the maintenance
//! window (design §10), the run lock's signals (abort, takeover; §5 step 2)
//! and `kubesurge abort`.

use jiff::Timestamp;
use kube::Client;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kube::lock::{self, LockError, RunLock};
use crate::rotation::{RecordError, RecordStore, RunState, StopReason};
use crate::window::Window;
use crate::window::{self, Position, WindowError};

/// Whether a mutating command may start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowGate {
    /// It may. With a window, this occurrence closes at `closes_at` (the
    /// run stops starting work then) and the next one opens at
    /// `reopens_at`, which a run stopped at the close reports.
    Open {
        closes_at: Option<Timestamp>,
        reopens_at: Option<Timestamp>,
    },
    /// Outside the window: nothing may change until `opens_at`. `sentence`
    /// says so, naming the window and the opening.
    Closed {
        sentence: String,
        opens_at: Timestamp,
    },
}

/// Decide from the configured window (if any) whether a mutating command
/// may start at `now`. Pure.
pub fn window_gate(window: Option<&Window>, now: Timestamp) -> Result<WindowGate, WindowError> {
    let Some(w) = window else {
        return Ok(WindowGate::Open {
            closes_at: None,
            reopens_at: None,
        });
    };
    Ok(match window::position(w, now)? {
        Position::Inside { ends_at } => WindowGate::Open {
            closes_at: Some(ends_at),
            reopens_at: Some(next_opening(w, ends_at)?),
        },
        outside @ Position::Outside { opens_at } => WindowGate::Closed {
            sentence: outside.sentence(w, now),
            opens_at,
        },
    })
}

/// The first opening of `window` at or after `at`: `at` itself when it is
/// inside an occurrence (back-to-back occurrences).
fn next_opening(window: &Window, at: Timestamp) -> Result<Timestamp, WindowError> {
    Ok(match window::position(window, at)? {
        Position::Inside { .. } => at,
        Position::Outside { opens_at } => opens_at,
    })
}

/// Stop requests for a run: the first of `kubesurge abort` (or the lock
/// taken over) and the window's end. The watchers end when this is
/// dropped.
pub struct StopRequests {
    receiver: watch::Receiver<Option<StopReason>>,
    watchers: Vec<JoinHandle<()>>,
}

impl StopRequests {
    /// Watch `lock`'s signals and, if given, the window's end.
    pub fn watch(lock: &RunLock, window_end: Option<Timestamp>) -> StopRequests {
        let (tx, receiver) = watch::channel(None);
        let mut watchers = vec![
            tokio::spawn(stop_on_lock_signal(lock.state(), tx.clone())),
            tokio::spawn(stop_on_process_signal(tx.clone())),
        ];
        if let Some(end) = window_end {
            watchers.push(tokio::spawn(stop_at_window_end(end, tx)));
        }
        StopRequests { receiver, watchers }
    }

    /// The requests, for the engine: `None` until a stop is requested.
    pub fn receiver(&self) -> watch::Receiver<Option<StopReason>> {
        self.receiver.clone()
    }
}

impl Drop for StopRequests {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
    }
}

/// Record `reason` unless a stop was requested already: the first reason
/// is the one the run reports.
fn request(tx: &watch::Sender<Option<StopReason>>, reason: StopReason) {
    tx.send_if_modified(|current| {
        let first = current.is_none();
        if first {
            *current = Some(reason);
        }
        first
    });
}

async fn stop_on_lock_signal(
    mut state: watch::Receiver<lock::LockState>,
    tx: watch::Sender<Option<StopReason>>,
) {
    while state.changed().await.is_ok() {
        let signal = *state.borrow();
        if signal.lost {
            tracing::error!(
                "this run can no longer prove it holds the run lock; stopping (a rerun resumes)"
            );
        } else if signal.abort_requested {
            tracing::warn!("abort requested; finishing the slots in flight, starting no new one");
        } else {
            continue;
        }
        request(&tx, StopReason::Abort);
        return;
    }
}

/// SIGTERM (a CronJob's pod evicted or deleted, Terraform cancelled,
/// systemd stopping) or SIGINT (Ctrl-C): stop at once. Overrides any stop
/// asked before, which would wait for the slots in flight: the process has
/// seconds before it is killed (a pod's grace period is 30 s by default),
/// and what it leaves a rerun continues. Once listened for, the signals
/// no longer end the process by themselves (tokio keeps its handler for
/// the process's life); the command ends on its own right after.
async fn stop_on_process_signal(tx: watch::Sender<Option<StopReason>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; they end the process at once");
        return;
    };
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::warn!(
        "{signal} received: stopping now; the slots in flight stop where they are and a rerun \
         of the same command continues them"
    );
    tx.send_replace(Some(StopReason::Interrupted { signal }));
}

async fn stop_at_window_end(end: Timestamp, tx: watch::Sender<Option<StopReason>>) {
    let wait = Timestamp::now().duration_until(end);
    tokio::time::sleep(std::time::Duration::try_from(wait).unwrap_or_default()).await;
    tracing::warn!(
        "the maintenance window ends; finishing the slots in flight, starting no new one"
    );
    request(&tx, StopReason::WindowEnd);
}

/// What `kubesurge abort` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortOutcome {
    /// The run holding the lock (`holder`) was asked to stop at its next
    /// safe point.
    Requested { holder: String },
    /// No run held the lock; the unfinished run `id` was abandoned so that
    /// another command may start.
    Abandoned { id: String, command: String },
    /// No run in progress and none unfinished.
    Nothing,
}

/// Why `kubesurge abort` could not do its work.
#[derive(Debug, Error)]
pub enum AbortError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Ask the run holding the lock to stop; with no run holding it, abandon
/// an unfinished run.
pub async fn abort(client: &Client) -> Result<AbortOutcome, AbortError> {
    match lock::request_abort(client.clone()).await {
        Ok(request) => {
            return Ok(AbortOutcome::Requested {
                holder: request.holder,
            });
        }
        Err(LockError::NotHeld) => {}
        Err(e) => return Err(e.into()),
    }
    let records = RecordStore::new(client.clone());
    match records.load().await? {
        Some(mut record) if record.state.is_unfinished() => {
            record.state = RunState::Abandoned;
            record.message = Some("abandoned by kubesurge abort".into());
            records.save(&record).await?;
            Ok(AbortOutcome::Abandoned {
                id: record.id,
                command: record.command,
            })
        }
        _ => Ok(AbortOutcome::Nothing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_window_is_always_open() {
        assert_eq!(
            window_gate(None, Timestamp::now()).unwrap(),
            WindowGate::Open {
                closes_at: None,
                reopens_at: None
            }
        );
    }

    /// Every day 02:00–06:00 UTC.
    fn nightly() -> Window {
        Window {
            days: vec![
                jiff::civil::Weekday::Monday,
                jiff::civil::Weekday::Tuesday,
                jiff::civil::Weekday::Wednesday,
                jiff::civil::Weekday::Thursday,
                jiff::civil::Weekday::Friday,
                jiff::civil::Weekday::Saturday,
                jiff::civil::Weekday::Sunday,
            ],
            start: jiff::civil::time(2, 0, 0, 0),
            end: jiff::civil::time(6, 0, 0, 0),
            time_zone: jiff::tz::TimeZone::UTC,
            time_zone_name: "UTC".into(),
        }
    }

    #[test]
    fn inside_the_window_it_is_open_until_its_end_and_names_the_next_opening() {
        let now: Timestamp = "2026-03-04T03:00:00Z".parse().unwrap();
        assert_eq!(
            window_gate(Some(&nightly()), now).unwrap(),
            WindowGate::Open {
                closes_at: Some("2026-03-04T06:00:00Z".parse().unwrap()),
                reopens_at: Some("2026-03-05T02:00:00Z".parse().unwrap()),
            }
        );
    }

    #[test]
    fn outside_the_window_it_is_closed_naming_the_opening() {
        let now: Timestamp = "2026-03-04T07:00:00Z".parse().unwrap();
        let WindowGate::Closed { sentence, opens_at } = window_gate(Some(&nightly()), now).unwrap()
        else {
            panic!("closed at 07:00")
        };
        assert_eq!(
            opens_at,
            "2026-03-05T02:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(
            sentence.starts_with("outside the maintenance window"),
            "{sentence}"
        );
        assert!(
            sentence.contains("it opens at 2026-03-05T02:00:00"),
            "{sentence}"
        );
    }

    #[test]
    fn back_to_back_occurrences_reopen_as_they_close() {
        let mut always = nightly();
        always.end = always.start;
        let now: Timestamp = "2026-03-04T03:00:00Z".parse().unwrap();
        assert_eq!(
            window_gate(Some(&always), now).unwrap(),
            WindowGate::Open {
                closes_at: Some("2026-03-05T02:00:00Z".parse().unwrap()),
                reopens_at: Some("2026-03-05T02:00:00Z".parse().unwrap()),
            }
        );
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let (tx, rx) = watch::channel(None);
        request(&tx, StopReason::WindowEnd);
        request(&tx, StopReason::Abort);
        assert_eq!(*rx.borrow(), Some(StopReason::WindowEnd));
    }

    #[tokio::test]
    async fn a_past_window_end_stops_at_once() {
        let (tx, rx) = watch::channel(None);
        stop_at_window_end(Timestamp::now() - jiff::SignedDuration::from_secs(1), tx).await;
        assert_eq!(*rx.borrow(), Some(StopReason::WindowEnd));
    }
}
