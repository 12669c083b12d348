//! Keeps a cluster node serving what the registry says: it watches the `tusk-services` KV
//! bucket and (re)loads every deployment another node makes, fetching its package from the
//! Object Store first. A deploy reaches every node within one watch delivery plus the package
//! download and the new pools' start.

use crate::{AppState, GatewayError};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tusk_cluster::{ClusterStore, RegistryChange};
use tusk_store::{ServiceRecord, Store};

pub async fn follow(state: Arc<AppState>, store: Arc<ClusterStore>) {
    loop {
        match store.watch().await {
            Ok(changes) => {
                let mut changes = std::pin::pin!(changes);
                while let Some(change) = changes.next().await {
                    match change {
                        Ok(RegistryChange::Put(record)) => {
                            // Its own task: a panic in the NATS client while applying one
                            // change must not end the watch.
                            let (state, store) = (state.clone(), store.clone());
                            if let Err(e) =
                                tokio::spawn(async move { apply(&state, &store, record).await })
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
                                Ok::<(), GatewayError>(())
                            };
                            if let Err(e) = state
                                .control
                                .remove_replicated(&service, &stage, forget)
                                .await
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

async fn apply(state: &AppState, store: &ClusterStore, record: ServiceRecord) {
    let (service, version) = (record.spec.service.clone(), record.version);
    if state
        .control
        .live_version(&record.spec.service, &record.spec.stage)
        >= Some(version)
    {
        return;
    }
    let path = state.control.package_path(&record.package);
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
    if let Err(e) = state.control.activate_replicated(record).await {
        tracing::error!(%service, version, error = %e, "cannot serve the new version");
    }
}
