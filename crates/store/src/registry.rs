//! [`SqliteRegistry`]: the services and versions deployed on a single node, in `tusk.db`. In a
//! cluster it is the node's copy of the shared registry (`tusk_cluster::JetStreamRegistry`
//! writes what the cluster decided through [`SqliteRegistry::put_record`]).

use crate::{NodeDb, Registry, ServiceRecord, StoreError};
use rusqlite::{params, OptionalExtension};
use tusk_manifest::ServiceSpec;

/// The registry in SQLite: table `services` holds each service's live version, `deployments`
/// every version ever recorded (so numbers keep increasing after a removal).
pub struct SqliteRegistry {
    db: NodeDb,
}

impl SqliteRegistry {
    pub(crate) fn new(db: NodeDb) -> SqliteRegistry {
        SqliteRegistry { db }
    }

    /// Records a version decided elsewhere (a cluster's registry) as the live one, keeping its
    /// number; an older version than the stored one is ignored.
    pub fn put_record(&self, record: &ServiceRecord) -> Result<(), StoreError> {
        let spec_json = serde_json::to_string(&record.spec)?;
        let mut conn = self.db.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO deployments (service, stage, version, package, spec, deployed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![record.spec.service, record.spec.stage, record.version as i64, record.package, spec_json, record.deployed_at_ms],
        )?;
        tx.execute(
            "INSERT INTO services (service, stage, version, package, spec, deployed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(service, stage) DO UPDATE SET version = excluded.version, package = excluded.package,
               spec = excluded.spec, deployed_at_ms = excluded.deployed_at_ms
             WHERE excluded.version >= services.version",
            params![record.spec.service, record.spec.stage, record.version as i64, record.package, spec_json, record.deployed_at_ms],
        )?;
        tx.commit()?;
        Ok(())
    }
}

impl Registry for SqliteRegistry {
    fn put_service(
        &self,
        spec: &ServiceSpec,
        package: &str,
        now_ms: i64,
    ) -> Result<ServiceRecord, StoreError> {
        let spec_json = serde_json::to_string(spec)?;
        let mut conn = self.db.conn();
        let tx = conn.transaction()?;
        let last: Option<i64> = tx
            .query_row(
                "SELECT MAX(version) FROM deployments WHERE service = ?1 AND stage = ?2",
                params![spec.service, spec.stage],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let version = last.unwrap_or(0) + 1;
        for table in ["services", "deployments"] {
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO {table} (service, stage, version, package, spec, deployed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![spec.service, spec.stage, version, package, spec_json, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(ServiceRecord {
            spec: spec.clone(),
            version: version as u64,
            package: package.to_string(),
            deployed_at_ms: now_ms,
        })
    }

    fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let conn = self.db.conn();
        let mut stmt = conn.prepare(
            "SELECT spec, version, package, deployed_at_ms FROM services ORDER BY service, stage",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (spec, version, package, deployed_at_ms) = row?;
            out.push(ServiceRecord {
                spec: serde_json::from_str(&spec)?,
                version: version as u64,
                package,
                deployed_at_ms,
            });
        }
        Ok(out)
    }

    fn remove_service(
        &self,
        service: &str,
        stage: &str,
    ) -> Result<Option<ServiceRecord>, StoreError> {
        let existing = self
            .services()?
            .into_iter()
            .find(|s| s.spec.service == service && s.spec.stage == stage);
        if existing.is_some() {
            self.db.conn().execute(
                "DELETE FROM services WHERE service = ?1 AND stage = ?2",
                params![service, stage],
            )?;
        }
        Ok(existing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tusk_manifest::{FunctionSpec, RuntimeKind};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            service: "app".into(),
            stage: "dev".into(),
            region: "us-east-1".into(),
            package_patterns: vec![],
            functions: vec![FunctionSpec {
                name: "hello".into(),
                handler: "index.php".into(),
                runtime: "php-82".into(),
                kind: RuntimeKind::PhpFunction,
                php_version: Some("8.2".into()),
                memory_size: 1024,
                timeout: 6,
                environment: Default::default(),
                events: vec![],
                reserved_concurrency: None,
                provisioned_concurrency: 0,
                ephemeral_storage_size: 512,
                maximum_retry_attempts: None,
                maximum_event_age: None,
                destinations: Default::default(),
                network: Default::default(),
                volumes: vec![],
            }],
            queues: vec![],
        }
    }

    #[test]
    fn versions_increase_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tusk.db");
        {
            let store = NodeDb::open(&path).unwrap().registry();
            assert_eq!(store.put_service(&spec(), "aa", 1).unwrap().version, 1);
            assert_eq!(store.put_service(&spec(), "bb", 2).unwrap().version, 2);
        }
        let store = NodeDb::open(&path).unwrap().registry();
        let services = store.services().unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].version, 2);
        assert_eq!(services[0].package, "bb");
        let names: Vec<_> = services[0].functions().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["app-dev-hello"]);
        assert!(store.remove_service("app", "dev").unwrap().is_some());
        assert!(store.services().unwrap().is_empty());
        // A redeploy after removal continues the version sequence.
        assert_eq!(store.put_service(&spec(), "cc", 3).unwrap().version, 3);
    }

    #[test]
    fn replicated_records_keep_their_version_and_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeDb::open(&dir.path().join("tusk.db"))
            .unwrap()
            .registry();
        let record = |version, package: &str| ServiceRecord {
            spec: spec(),
            version,
            package: package.into(),
            deployed_at_ms: 1,
        };
        store.put_record(&record(5, "ee")).unwrap();
        store.put_record(&record(4, "dd")).unwrap();
        let services = store.services().unwrap();
        assert_eq!(
            (services[0].version, services[0].package.as_str()),
            (5, "ee")
        );
        assert_eq!(store.put_service(&spec(), "ff", 2).unwrap().version, 6);
    }
}
