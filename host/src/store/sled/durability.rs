//! Group commit for sled: writers register, one flusher task makes everything written so far
//! durable with one `flush`, and wakes every writer it covers; a failed disk write puts the
//! store out of service (sled refuses every write after one); a flush mark beside the database
//! tells a damaged file from a crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::store::StoreError;

/// The durability state shared by the store, its flusher and its intake thread.
pub(super) struct Durability {
    written: AtomicU64,
    kick: Notify,
    flushed: watch::Sender<u64>,
    /// The disk write failure that put storage out of service, if one happened.
    failed: OnceLock<String>,
    /// Tells, at the next start, whether the database lost data that was on disk.
    pub(super) mark: FlushMark,
}
/// How often the flusher records a [`FlushMark`] at most (and at every clean shutdown).
const MARK_EVERY: Duration = Duration::from_secs(1);

/// Detects a damaged database file. sled reads a damaged log record as the torn tail of a
/// crash and silently drops it and everything written after it, so a flipped byte can start
/// the host on an empty or truncated database. Before some flushes a counter is written into
/// the database; once that flush is on disk the same value goes to a file beside it. A
/// database holding a lower counter than the file lost data that had been on disk: it is
/// [`StoreError::CorruptDatabase`], never a silent start. (A crash cannot cause that: the
/// file is written only after the flush covering the counter.)
pub(super) struct FlushMark {
    /// The file beside the database.
    file: PathBuf,
    /// The next counter value.
    next: AtomicU64,
    /// When the last mark was staged.
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl FlushMark {
    /// The database key holding the counter.
    pub(super) const KEY: &'static [u8] = b"plugboard.flush_mark";

    /// Compares the counter in `db` with the file in `dir`.
    pub(super) fn check(db: &sled::Db, dir: &Path) -> Result<FlushMark, StoreError> {
        let stored = db
            .get(Self::KEY)
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let file = dir.join("flush-mark");
        // Missing or unreadable (a database from before marks, an interrupted write): no check.
        let recorded = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if recorded > stored {
            return Err(StoreError::CorruptDatabase {
                dir: dir.to_owned(),
                reason: format!(
                    "it lost data that was on disk: flush mark {stored} in the database, {recorded} recorded in {}",
                    file.display()
                ),
            });
        }
        Ok(FlushMark {
            file,
            next: AtomicU64::new(recorded.max(stored) + 1),
            last: std::sync::Mutex::new(None),
        })
    }

    /// Before a flush: writes the next counter into `db` when one is due (`force`: always);
    /// returns it, for [`FlushMark::commit`] once the flush succeeded.
    pub(super) fn stage(&self, db: &sled::Db, force: bool) -> Option<u64> {
        let mut last = self.last.lock().expect("flush mark lock");
        if !force && last.is_some_and(|t| t.elapsed() < MARK_EVERY) {
            return None;
        }
        let mark = self.next.fetch_add(1, Ordering::SeqCst);
        db.insert(Self::KEY, &mark.to_be_bytes()).ok()?;
        *last = Some(std::time::Instant::now());
        Some(mark)
    }

    /// After the flush covering `mark` is on disk: records it in the file (written aside,
    /// then renamed, so the file is the old mark or the new one).
    pub(super) fn commit(&self, mark: u64) {
        let aside = self.file.with_extension("tmp");
        let written = std::fs::write(&aside, format!("{mark}\n"))
            .and_then(|()| std::fs::rename(&aside, &self.file));
        if let Err(e) = written {
            tracing::warn!(file = %self.file.display(), "cannot record the flush mark: {e}");
        }
    }
}

impl Durability {
    /// The state for a database whose flush mark is `mark`.
    pub(super) fn new(mark: FlushMark) -> Durability {
        Durability {
            written: AtomicU64::new(0),
            kick: Notify::new(),
            flushed: watch::channel(0).0,
            failed: OnceLock::new(),
            mark,
        }
    }

    /// Why storage is out of service, if it is.
    pub(super) fn failure(&self) -> Option<String> {
        self.failed.get().cloned()
    }

    /// Turns a sled error into a [`StoreError`], recording one that puts storage out of
    /// service.
    pub(super) fn error(&self, e: sled::Error) -> StoreError {
        self.record(&e);
        match self.out_of_service() {
            Some(out) => out,
            None => StoreError::Backend(e.to_string()),
        }
    }

    /// Waits until everything written before this call is on disk: one flush serves every
    /// writer waiting meanwhile.
    pub(super) async fn wait(&self) -> Result<(), StoreError> {
        if let Some(e) = self.out_of_service() {
            return Err(e);
        }
        let ticket = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.flushed.subscribe();
        self.kick.notify_one();
        let flushed = tokio::time::timeout(
            FLUSH_TIMEOUT,
            rx.wait_for(|f| *f >= ticket || self.failed.get().is_some()),
        )
        .await
        .map_err(|_| StoreError::FlushTimeout(FLUSH_TIMEOUT))?
        .map_err(|_| StoreError::FlushTimeout(FLUSH_TIMEOUT))?;
        if *flushed < ticket
            && let Some(e) = self.out_of_service()
        {
            return Err(e);
        }
        Ok(())
    }

    /// Records `e` if it puts storage out of service: after an I/O error sled keeps the error
    /// and fails every later write and flush, so the state lasts until the process restarts.
    /// Wakes writers waiting for a flush, which then fail at once.
    pub(super) fn record(&self, e: &sled::Error) {
        if !matches!(
            e,
            sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)
        ) {
            return;
        }
        let reason = match e {
            sled::Error::Io(io) => os_message(io),
            e => e.to_string(),
        };
        if self.failed.set(reason.clone()).is_ok() {
            tracing::error!(
                "storage is out of service: {reason}; nothing more is acknowledged and /healthz answers 503 until plugboard is restarted"
            );
            self.flushed.send_modify(|_| {});
        }
    }

    /// The out-of-service error, if storage is out of service.
    pub(super) fn out_of_service(&self) -> Option<StoreError> {
        self.failed
            .get()
            .map(|reason| StoreError::OutOfService(reason.clone()))
    }
}

/// The OS's words for an I/O error sled reports: sled re-wraps the original error's debug text
/// (`Os { code: 28, kind: StorageFull, message: "No space left on device" }`) in a new error
/// each time it is cloned; this digs out the message.
pub(super) fn os_message(io: &std::io::Error) -> String {
    let text = io.to_string().replace('\\', "");
    let message = text
        .split_once("message: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(message, _)| message.to_owned());
    match message {
        Some(message) => format!("{message} ({})", io.kind()),
        None => text,
    }
}

/// What an error from opening the database in `dir` (or one of its trees) means.
pub(super) fn open_error(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        // sled 0.34 reports its file lock held elsewhere as an `Other` error with this text.
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().starts_with("could not acquire lock") =>
        {
            StoreError::Locked(dir.to_owned())
        }
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => {
            StoreError::CorruptDatabase {
                dir: dir.to_owned(),
                reason: e.to_string(),
            }
        }
        e => StoreError::Backend(e.to_string()),
    }
}

/// How long a writer waits for its flush before giving up (the provider then gets a 5xx and
/// retries; the data is still written and will be flushed).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The group-commit loop: each flush covers every write registered before it started.
pub(super) async fn flusher(db: sled::Db, d: Arc<Durability>) {
    loop {
        d.kick.notified().await;
        if d.failed.get().is_some() {
            // Out of service: every flush would fail; waiting writers fail at once instead.
            d.flushed.send_modify(|_| {});
            continue;
        }
        let target = d.written.load(Ordering::SeqCst);
        if target <= *d.flushed.borrow() {
            continue;
        }
        let mark = d.mark.stage(&db, false);
        match db.flush_async().await {
            Ok(_) => {
                d.flushed.send_replace(target);
                if let Some(mark) = mark {
                    d.mark.commit(mark);
                }
            }
            Err(e) => {
                d.record(&e);
                if d.failed.get().is_none() {
                    tracing::error!("storage flush failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                d.kick.notify_one();
            }
        }
    }
}
