//! What a backend's intake batcher is given: one webhook's events, or events to log (none: a
//! wait for the next durable batch), each with where its answer goes. Both backends batch these (sled in one transaction and flush,
//! PostgreSQL in one transaction), and answer each job once its batch is durable.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::model::{ConversationTarget, InboundEvent, IngestReport, StoredEvent};
use crate::store::{IntakeNotices, NewEvent, StoreError};

/// One webhook's events, or events to log, waiting for the next batch.
pub(crate) enum Job {
    /// [`crate::store::Store::intake_with`]'s arguments.
    Intake {
        channel: String,
        target: ConversationTarget,
        events: Vec<InboundEvent>,
        now: u64,
        notices: Arc<dyn IntakeNotices>,
        reply: oneshot::Sender<Result<IngestReport, StoreError>>,
    },
    /// Events to log in order, as [`crate::store::Store::append_event`] logs one; none is a
    /// wait for the batch that makes everything written before it durable.
    Append {
        events: Vec<NewEvent>,
        now: u64,
        reply: oneshot::Sender<Result<Vec<StoredEvent>, StoreError>>,
    },
}

/// What one job did.
pub(crate) enum Done {
    /// The intake's report.
    Intake(IngestReport),
    /// The events as logged.
    Append(Vec<StoredEvent>),
}

impl Job {
    /// An intake job (its events scrubbed, [`crate::store::rules::scrub_events`]) and the
    /// receiver of its answer.
    pub(crate) fn intake(
        channel: &str,
        target: &ConversationTarget,
        events: Vec<InboundEvent>,
        now: u64,
        notices: Arc<dyn IntakeNotices>,
    ) -> (Job, oneshot::Receiver<Result<IngestReport, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job::Intake {
            channel: channel.to_owned(),
            target: target.clone(),
            events: crate::store::rules::scrub_events(events),
            now,
            notices,
            reply,
        };
        (job, answer)
    }

    /// An append job and the receiver of its answer.
    pub(crate) fn append(
        events: Vec<NewEvent>,
        now: u64,
    ) -> (Job, oneshot::Receiver<Result<Vec<StoredEvent>, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Job::Append { events, now, reply }, answer)
    }

    /// Sends `outcome` to whoever waits for this job (nobody, if they gave up).
    pub(crate) fn answer(self, outcome: Result<Done, StoreError>) {
        match (self, outcome) {
            (Job::Intake { reply, .. }, Ok(Done::Intake(report))) => {
                let _ = reply.send(Ok(report));
            }
            (Job::Append { reply, .. }, Ok(Done::Append(events))) => {
                let _ = reply.send(Ok(events));
            }
            (Job::Intake { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (Job::Append { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (Job::Intake { reply, .. }, Ok(Done::Append(_))) => {
                let _ = reply.send(Err(StoreError::Backend(
                    "intake answered as an append".into(),
                )));
            }
            (Job::Append { reply, .. }, Ok(Done::Intake(_))) => {
                let _ = reply.send(Err(StoreError::Backend(
                    "an append answered as intake".into(),
                )));
            }
        }
    }
}

/// Waits for a job's answer: the batcher ending without one means it stopped.
pub(crate) async fn answered<T>(
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    answer.await.map_err(|_| StoreError::IntakeStopped)?
}
