//! The intake thread: the one writer of webhooks' events and of the event log. Concurrent
//! webhooks (and event appends) are applied in one sled transaction per batch instead of one
//! each, and made durable by one flush per batch.
//!
//! A sled transaction has a high fixed cost (measured with 5 inserts: 117 µs of CPU alone
//! against 36 µs per webhook in batches of 32), so under load the thread takes whatever has
//! arrived while it was busy (committing and flushing the previous batch) and commits it
//! together: classic group commit, with no task or thread hop between the write and its flush.
//! A webhook's answer comes back only after the flush covering it, so the caller may
//! acknowledge the provider at once. A batch that fails is retried one job at a time, so one
//! bad record fails only its own webhook.
//!
//! Being the log's only writer, the thread hands out event ids in commit order: a reader that
//! has seen event `n` has seen every event before it, which is what lets a client resume from
//! its last id.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;

use sled::Transactional;
use sled::transaction::TransactionalTree;

use super::codec::{be_u64, encode};
use super::durability::Durability;
use super::intake::{IngestTx, IntakeTrees, TxResult};
use super::tx_error;
use crate::model::{ConversationTarget, InboundEvent, IngestReport, StoredEvent};
use crate::store::jobs::{self, Done, Job};
use crate::store::{IntakeNotices, NewEvent, StoreError};

/// What the intake thread needs: the trees it writes and the database it flushes.
pub(crate) struct Intake {
    /// The trees.
    pub(crate) trees: IntakeTrees,
    /// The contact directory, read to tell new contacts.
    pub(crate) contacts: sled::Tree,
    /// The database, for the flush after each batch.
    pub(crate) db: sled::Db,
    /// Where a failed disk write is recorded.
    pub(crate) durability: Arc<Durability>,
    /// Where each batch's size and commit time go, once set ([`crate::store::Store::observe`]).
    pub(crate) metrics: Arc<std::sync::OnceLock<crate::metrics::Metrics>>,
}

/// The most jobs one transaction carries (a bound on the transaction's size).
const MAX_BATCH: usize = 256;

/// The handle to the intake thread; dropping it ends the thread once its queue is empty.
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the intake thread.
    pub(crate) fn start(intake: Intake) -> Result<Batcher, StoreError> {
        let next_event = match intake.trees.events.last() {
            Ok(Some((k, _))) => be_u64("events", &k)? + 1,
            Ok(None) => 1,
            Err(e) => return Err(intake.durability.error(e)),
        };
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("plugboard-intake".into())
            .spawn(move || run(&intake, &queue, next_event))
            .map_err(|e| StoreError::Backend(format!("cannot start the intake thread: {e}")))?;
        Ok(Batcher { jobs })
    }

    /// Applies one webhook's events in the next batch, with the events `notices` logs about
    /// them, and returns what they did once they are on disk.
    pub(crate) async fn submit(
        &self,
        channel: &str,
        target: &ConversationTarget,
        events: Vec<InboundEvent>,
        now: u64,
        notices: Arc<dyn IntakeNotices>,
    ) -> Result<IngestReport, StoreError> {
        let (job, answer) = Job::intake(channel, target, events, now, notices);
        self.jobs.send(job).map_err(|_| StoreError::IntakeStopped)?;
        jobs::answered(answer).await
    }

    /// Appends `events` to the log in the next batch; returns them with their ids once on
    /// disk (with everything written before the call: the batch's flush covers it).
    pub(crate) async fn append(
        &self,
        events: Vec<NewEvent>,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (job, answer) = Job::append(events, now);
        self.jobs.send(job).map_err(|_| StoreError::IntakeStopped)?;
        jobs::answered(answer).await
    }
}

fn run(intake: &Intake, queue: &mpsc::Receiver<Job>, mut next_event: u64) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let answers = commit(intake, &jobs, &mut next_event);
        // One flush covers the whole batch (and anything else written before it).
        let flushed = if answers.iter().any(Result::is_ok) {
            intake.db.flush().map(drop)
        } else {
            Ok(())
        };
        if let Some(m) = intake.metrics.get() {
            m.batch(jobs.len(), started.elapsed());
        }
        for (job, answer) in jobs.into_iter().zip(answers) {
            let answer = match (&flushed, answer) {
                (Err(e), Ok(_)) => Err(intake.durability.error(e.clone())),
                (_, answer) => answer,
            };
            job.answer(answer);
        }
    }
}

/// Commits `jobs` in one transaction, or one by one when the batch fails; one answer per job.
/// `next_event` is the next event id, moved past the ids the committed jobs used.
fn commit(intake: &Intake, jobs: &[Job], next_event: &mut u64) -> Vec<Result<Done, StoreError>> {
    let trees: &IntakeTrees = &intake.trees;
    // Read before the transaction: sled deadlocks on a plain read inside one.
    let known = match known_senders(intake, jobs) {
        Ok(known) => known,
        Err(e) => {
            let e = intake.durability.error(e);
            return jobs
                .iter()
                .map(|_| Err(StoreError::Backend(e.to_string())))
                .collect();
        }
    };
    let known = &known;
    let start = *next_event;
    let batch = trees.trees().transaction(|tx| {
        let mut id = start;
        let done = jobs
            .iter()
            .map(|job| apply(known, &trees.zone, tx, job, &mut id))
            .collect::<TxResult<Vec<_>>>()?;
        Ok((done, id))
    });
    match batch {
        Ok((done, id)) => {
            *next_event = id;
            done.into_iter().map(Ok).collect()
        }
        Err(e) if jobs.len() == 1 => vec![Err(tx_error(&intake.durability, e))],
        Err(_) => jobs
            .iter()
            .map(|job| {
                let start = *next_event;
                let one = trees.trees().transaction(|tx| {
                    let mut id = start;
                    let done = apply(known, &trees.zone, tx, job, &mut id)?;
                    Ok((done, id))
                });
                match one {
                    Ok((done, id)) => {
                        *next_event = id;
                        Ok(done)
                    }
                    Err(e) => Err(tx_error(&intake.durability, e)),
                }
            })
            .collect(),
    }
}

/// The senders of `jobs`' messages that the contact directory knows.
fn known_senders(intake: &Intake, jobs: &[Job]) -> sled::Result<HashSet<String>> {
    let mut known = HashSet::new();
    for job in jobs {
        let Job::Intake { events, .. } = job else {
            continue;
        };
        for event in events {
            if let InboundEvent::Message { from, .. } = event
                && !known.contains(from)
                && intake.contacts.contains_key(from.as_bytes())?
            {
                known.insert(from.clone());
            }
        }
    }
    Ok(known)
}

/// One job inside the batch's transaction; `id` is the next event id; `known` the senders the
/// contact directory knows.
fn apply(
    known: &HashSet<String>,
    zone: &jiff::tz::TimeZone,
    tx: &super::intake::IntakeTxTrees,
    job: &Job,
    id: &mut u64,
) -> TxResult<Done> {
    let events = &tx.7;
    match job {
        Job::Intake {
            channel,
            target,
            events: inbound,
            now,
            notices,
            ..
        } => {
            let mut report = IngestTx::new(tx, zone, *now).apply(channel, target, inbound, *now)?;
            let mut logged = Vec::new();
            for message in &report.messages {
                let new_contact = report.created.contains(&message.conversation)
                    && !known.contains(&message.customer);
                for event in notices.notices(channel, message, new_contact) {
                    logged.push(log(events, id, event, *now)?);
                }
            }
            report.events = logged;
            Ok(Done::Intake(report))
        }
        Job::Append {
            events: new, now, ..
        } => Ok(Done::Append(
            new.iter()
                .map(|event| log(events, id, event.clone(), *now))
                .collect::<TxResult<_>>()?,
        )),
    }
}

/// Writes `event` as the log's next entry.
fn log(
    events: &TransactionalTree,
    id: &mut u64,
    event: NewEvent,
    now: u64,
) -> TxResult<StoredEvent> {
    let stored = StoredEvent {
        id: *id,
        kind: event.kind,
        audience: event.audience,
        conversation: event.conversation.map(|c| c.to_string()),
        data: event.data,
        at: now,
    };
    events.insert(&id.to_be_bytes(), encode(&stored))?;
    *id += 1;
    Ok(stored)
}
