//! Which other nodes are up, and where they listen: each node announces its URL on core NATS
//! (`tusk.nodes`) every [`ANNOUNCE_EVERY`]; a node not heard from for [`FORGET_AFTER`] is
//! dropped. Used to forward synchronous calls a node has no free instance for, and to split
//! each function's `reservedConcurrency` over the nodes up ([`Peers::members`]).

use crate::Cluster;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const SUBJECT: &str = "tusk.nodes";
/// A node stopping says so (payload `leave URL`), so the others stop forwarding to it and take
/// back its share at once instead of after [`FORGET_AFTER`].
const LEAVE: &str = "leave ";
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
pub const FORGET_AFTER: Duration = Duration::from_secs(7);
/// How often forgotten nodes are noticed when nothing else asks ([`Peers::members`]).
const PRUNE_EVERY: Duration = Duration::from_secs(1);

pub struct Peers {
    me: String,
    seen: Mutex<HashMap<String, Instant>>,
    turn: AtomicUsize,
    members: watch::Sender<Vec<String>>,
    started: Instant,
    client: async_nats::Client,
    leaving: AtomicBool,
}

impl Peers {
    /// The other nodes heard from lately, in an order that rotates from call to call so
    /// forwarded work spreads over them.
    pub fn list(&self) -> Vec<String> {
        let mut urls = self.others();
        if !urls.is_empty() {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed) % urls.len();
            urls.rotate_left(turn);
        }
        urls
    }

    /// This node's own URL, as announced.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The URLs of every node up, this one included, sorted; changes when a node is first
    /// heard or forgotten (noticed within [`PRUNE_EVERY`]).
    pub fn members(&self) -> watch::Receiver<Vec<String>> {
        self.members.subscribe()
    }

    /// Returns once this node has had time to hear every other node announce itself
    /// (one announce period after it started listening).
    pub async fn settled(&self) {
        let at = self.started + ANNOUNCE_EVERY + Duration::from_millis(500);
        tokio::time::sleep_until(at.into()).await;
    }

    /// The other nodes heard from lately, sorted; forgets the silent ones and publishes the
    /// membership when it changed.
    fn others(&self) -> Vec<String> {
        let now = Instant::now();
        let mut urls: Vec<String> = match self.seen.lock() {
            Ok(mut seen) => {
                seen.retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
                seen.keys().cloned().collect()
            }
            Err(_) => return Vec::new(),
        };
        urls.sort();
        let mut all = urls.clone();
        all.push(self.me.clone());
        all.sort();
        self.members.send_if_modified(|members| {
            let changed = *members != all;
            if changed {
                tracing::info!(nodes = ?all, "cluster membership changed");
                *members = all;
            }
            changed
        });
        urls
    }

    /// This node is stopping: stop announcing it and tell the others to forget it now.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
        let message = format!("{LEAVE}{}", self.me);
        if let Err(e) = self.client.publish(SUBJECT, message.into()).await {
            tracing::debug!(error = %e, "cannot tell the other nodes this one is leaving");
        }
        let _ = self.client.flush().await;
    }

    fn forget(&self, url: &str) {
        let gone = match self.seen.lock() {
            Ok(mut seen) => seen.remove(url).is_some(),
            Err(_) => false,
        };
        if gone {
            tracing::info!(node = url, "a node is leaving the cluster");
            self.others();
        }
    }

    fn heard(&self, url: String) {
        if url == self.me {
            return;
        }
        if let Some(leaving) = url.strip_prefix(LEAVE) {
            self.forget(leaving);
            return;
        }
        let new = match self.seen.lock() {
            Ok(mut seen) => seen.insert(url, Instant::now()).is_none(),
            Err(_) => false,
        };
        if new {
            self.others();
        }
    }
}

impl Cluster {
    /// Starts announcing `my_url` and listening for the other nodes.
    pub fn start_peers(self: &Arc<Self>, my_url: String) -> Arc<Peers> {
        let peers = Arc::new(Peers {
            members: watch::Sender::new(vec![my_url.clone()]),
            me: my_url,
            seen: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
            started: Instant::now(),
            client: self.client.clone(),
            leaving: AtomicBool::new(false),
        });
        // `list()` forgets silent nodes only when asked: notice them without a caller too.
        let pruned = Arc::downgrade(&peers);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tick.tick().await;
                match pruned.upgrade() {
                    Some(peers) => {
                        peers.others();
                    }
                    None => return,
                }
            }
        });
        let (client, me, announcer) = (
            self.client.clone(),
            peers.me.clone(),
            Arc::downgrade(&peers),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
            loop {
                tick.tick().await;
                match announcer.upgrade() {
                    Some(p) if !p.leaving.load(Ordering::Acquire) => {}
                    _ => return,
                }
                if let Err(e) = client.publish(SUBJECT, me.clone().into()).await {
                    tracing::debug!(error = %e, "cannot announce this node");
                }
            }
        });
        let (client, listener) = (self.client.clone(), peers.clone());
        tokio::spawn(async move {
            loop {
                match client.subscribe(SUBJECT).await {
                    Ok(mut sub) => {
                        while let Some(message) = sub.next().await {
                            if let Ok(url) = std::str::from_utf8(&message.payload) {
                                listener.heard(url.to_string());
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot listen for other nodes"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        peers
    }
}
