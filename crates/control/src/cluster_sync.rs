//! Keeps a cluster node serving what the registry says: it watches the `tusk-services` KV
//! bucket and (re)loads every deployment another node makes, fetching its package from the
//! Object Store first. A deploy reaches every node within one watch delivery plus the package
//! download and the new pools' start. [`share_reserved_concurrency`] keeps each node's part
//! of every `reservedConcurrency` in line with the nodes up.

use crate::{ControlError, ControlPlane};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tusk_cluster::{JetStreamRegistry, Peers, RegistryChange};
use tusk_pool::{Dispatcher, Placement};
use tusk_store::{Registry, ServiceRecord};

pub async fn follow(control: Arc<ControlPlane>, store: Arc<JetStreamRegistry>) {
    loop {
        match store.watch().await {
            Ok(changes) => {
                let mut changes = std::pin::pin!(changes);
                while let Some(change) = changes.next().await {
                    match change {
                        Ok(RegistryChange::Put(record)) => {
                            // Its own task: a panic in the NATS client while applying one
                            // change must not end the watch.
                            let (control, store) = (control.clone(), store.clone());
                            if let Err(e) =
                                tokio::spawn(async move { apply(&control, &store, record).await })
                                    .await
                            {
                                tracing::error!(error = %e, "applying a registry change failed");
                            }
                        }
                        Ok(RegistryChange::Removed { service, stage }) => {
                            let local = store.local().clone();
                            let (svc, stg) = (service.clone(), stage.clone());
                            let forget = move || {
                                local.remove_service(&svc, &stg)?;
                                Ok::<(), ControlError>(())
                            };
                            if let Err(e) =
                                control.remove_replicated(&service, &stage, forget).await
                            {
                                tracing::error!(%service, %stage, error = %e, "cannot remove a service the cluster removed");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "registry watch interrupted; watching again");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the registry; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn apply(control: &ControlPlane, store: &JetStreamRegistry, record: ServiceRecord) {
    let (service, version) = (record.spec.service.clone(), record.version);
    if control.live_version(&record.spec.service, &record.spec.stage) >= Some(version) {
        return;
    }
    let path = control.package_path(&record.package);
    let mut tries = 0;
    while tokio::fs::metadata(&path).await.is_err() {
        let fetch = store.fetch_package(&record.package, &path);
        let fetched = match tokio::time::timeout(Duration::from_secs(60), fetch).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        match fetched {
            Ok(()) => break,
            Err(e) if tries < 30 => {
                tries += 1;
                tracing::warn!(%service, version, error = %e, "cannot fetch the package yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::error!(%service, version, error = %e, "cannot fetch the package; this node keeps the old version");
                return;
            }
        }
    }
    let local = store.local().clone();
    let copy = record.clone();
    match tokio::task::spawn_blocking(move || local.put_record(&copy)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(%service, error = %e, "cannot record the version locally"),
        Err(e) => tracing::warn!(%service, error = %e, "cannot record the version locally"),
    }
    if let Err(e) = control.activate_replicated(record).await {
        tracing::error!(%service, version, error = %e, "cannot serve the new version");
    }
}

/// Splits every function's `reservedConcurrency` over the nodes up (see
/// [`tusk_pool::Placement`]) and keeps it split as nodes join or are forgotten. Returns once
/// the first split is in place: this node first listens for the others for one announce
/// period, so its pools never start with a lone node's share. Call it before any pool exists.
pub async fn share_reserved_concurrency(peers: Arc<Peers>, dispatcher: Arc<Dispatcher>) {
    peers.settled().await;
    let mut members = peers.members();
    let first = placement(peers.me(), &members.borrow_and_update());
    dispatcher.set_placement(first);
    tracing::info!(
        index = first.index,
        nodes = first.nodes,
        "reservedConcurrency split over the cluster"
    );
    tokio::spawn(async move {
        while members.changed().await.is_ok() {
            let now = placement(peers.me(), &members.borrow_and_update());
            if now != dispatcher.placement() {
                tracing::info!(
                    index = now.index,
                    nodes = now.nodes,
                    "reservedConcurrency split again"
                );
                dispatcher.set_placement(now);
            }
        }
    });
}

/// This node's place among `members` (sorted URLs, this node's included).
fn placement(me: &str, members: &[String]) -> Placement {
    Placement {
        index: members.iter().position(|m| m == me).unwrap_or(0),
        nodes: members.len().max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_finds_its_place_among_the_sorted_members() {
        let members: Vec<String> = ["http://a:1", "http://b:1", "http://c:1"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            placement("http://b:1", &members),
            Placement { index: 1, nodes: 3 }
        );
        assert_eq!(placement("http://a:1", &members[..1]), Placement::ALONE);
    }
}
