//! Which other nodes are up, and where they listen: each node announces its URL on core NATS
//! (`tusk.nodes`) every [`ANNOUNCE_EVERY`]; a node not heard from for [`FORGET_AFTER`] is
//! dropped. Used to forward synchronous calls a node has no free instance for.

use crate::Cluster;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUBJECT: &str = "tusk.nodes";
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
pub const FORGET_AFTER: Duration = Duration::from_secs(7);

pub struct Peers {
    me: String,
    seen: Mutex<HashMap<String, Instant>>,
    turn: AtomicUsize,
}

impl Peers {
    /// The other nodes heard from lately, in an order that rotates from call to call so
    /// forwarded work spreads over them.
    pub fn list(&self) -> Vec<String> {
        let now = Instant::now();
        let mut urls: Vec<String> = match self.seen.lock() {
            Ok(mut seen) => {
                seen.retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
                seen.keys().cloned().collect()
            }
            Err(_) => Vec::new(),
        };
        urls.sort();
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

    fn heard(&self, url: String) {
        if url != self.me {
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(url, Instant::now());
            }
        }
    }
}

impl Cluster {
    /// Starts announcing `my_url` and listening for the other nodes.
    pub fn start_peers(self: &Arc<Self>, my_url: String) -> Arc<Peers> {
        let peers = Arc::new(Peers {
            me: my_url,
            seen: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
        });
        let (client, me) = (self.client.clone(), peers.me.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
            loop {
                tick.tick().await;
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
