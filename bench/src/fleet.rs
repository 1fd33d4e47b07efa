//! Opening many connections at once with a bounded number of handshakes in flight, each
//! connection then handed to a per-connection task of the scenario.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::client::{Conn, Target, source_addr};

/// How a batch of connections is opened.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    /// Server to connect to.
    pub target: Target,
    /// More nodes of the same server (a cluster): connection `i` goes to
    /// `[target, also...][i % n]`.
    pub also: Vec<Target>,
    /// `systemId` the connections join.
    pub system: Arc<str>,
    /// Whether to spread connections over several source addresses (needed near 20k).
    pub spread: bool,
    /// How many loopback source addresses to spread over.
    pub source_addrs: u8,
    /// Handshakes in flight at once: bounded so the server's accept backlog never overflows
    /// (an overflow costs a 1 s SYN retransmit and would measure the kernel, not the server).
    pub inflight: usize,
    /// Deadline for one connection to be open and welcomed.
    pub timeout: Duration,
}

/// What happened while opening a batch.
#[derive(Debug, Default)]
pub struct Opened {
    /// (connection index, client id) of every connection that got its welcome.
    pub ids: Vec<(usize, String)>,
    /// Connections that failed or timed out.
    pub failed: usize,
    /// The first failure, to report why.
    pub first_error: Option<String>,
    /// Time from the first attempt until the last connection was settled.
    pub elapsed: Duration,
    /// Per successful connection: microseconds from its attempt to its welcome.
    pub connect_us: Vec<u32>,
}

enum Event {
    Up(usize, String, Duration),
    Failed(String),
}

/// Opens the connections with indexes `range`; each one that is welcomed runs
/// `task(index, conn)` inside `set`. Returns once every connection is up or has failed.
pub async fn open_many<T, F, Fut>(
    spec: &FleetSpec,
    range: Range<usize>,
    set: &mut JoinSet<Option<T>>,
    task: F,
) -> Result<Opened>
where
    T: Send + 'static,
    F: Fn(usize, Conn) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(spec.inflight.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let total = range.len();
    for i in range {
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .context("connect semaphore closed")?;
        let tx = tx.clone();
        let task = task.clone();
        let system = spec.system.clone();
        let target = match i % (1 + spec.also.len()) {
            0 => spec.target,
            k => spec.also[k - 1],
        };
        let src = source_addr(i, spec.spread, spec.source_addrs);
        let timeout = spec.timeout;
        set.spawn(async move {
            let t = Instant::now();
            // Boxed: the handshake state is large and would otherwise bloat every task.
            let open = Box::pin(Conn::open(target, &system, src));
            let res = tokio::time::timeout(timeout, open).await;
            drop(permit);
            match res {
                Ok(Ok(conn)) => {
                    let _ = tx.send(Event::Up(i, conn.client_id.clone(), t.elapsed()));
                    Some(task(i, conn).await)
                }
                Ok(Err(e)) => {
                    let _ = tx.send(Event::Failed(format!("{e:#}")));
                    None
                }
                Err(_) => {
                    let _ = tx.send(Event::Failed(format!("no welcome within {timeout:?}")));
                    None
                }
            }
        });
    }
    drop(tx);
    let mut out = Opened::default();
    for _ in 0..total {
        match rx.recv().await {
            Some(Event::Up(i, id, took)) => {
                out.ids.push((i, id));
                out.connect_us
                    .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
            Some(Event::Failed(e)) => {
                out.failed += 1;
                out.first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// A per-connection task that only keeps the connection open (answering Engine.IO pings)
/// and counts it in `dropped` if the server closes it.
pub async fn hold(mut conn: Conn, dropped: Arc<std::sync::atomic::AtomicUsize>) {
    loop {
        match conn.recv().await {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
    }
}
