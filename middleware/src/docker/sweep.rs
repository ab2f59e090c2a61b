//! The sweep at start-up: containers of this deployment whose jobs are terminal or unknown
//! are removed (their middleware crashed before it could); those of running jobs stay, for
//! their redelivered jobs to adopt.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;
use cola_wire::{JobKey, nats::JobStore};

use super::{DockerBackend, LABEL_JOB_ID, LABEL_SCOPE, LABEL_USER, daemon};
use crate::backend::BackendError;

impl DockerBackend {
    /// Removes the containers labelled as cola's whose jobs are terminal or unknown (their
    /// middleware crashed before it could); containers of running jobs stay, for their
    /// redelivered jobs to adopt. Returns how many were removed.
    pub async fn sweep(&self, jobs: &JobStore) -> Result<usize, BackendError> {
        let scope = self.labels()?.remove(LABEL_SCOPE).unwrap_or_default();
        let filters = HashMap::from([("label", vec![format!("{LABEL_SCOPE}={scope}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| daemon("list cola's containers", e))?;
        let mut removed = 0;
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let Some(name) = container
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
            else {
                continue;
            };
            let key = labels
                .get(LABEL_USER)
                .zip(labels.get(LABEL_JOB_ID))
                .and_then(|(user, id)| JobKey::parse(&format!("{user}.{id}")));
            let orphan = match key {
                // Not a job's container (e.g. a --versions probe): never needed later.
                None => true,
                Some(key) => match jobs.get(&key).await {
                    Ok(Some((record, _))) => record.status.is_terminal(),
                    Ok(None) => true,
                    Err(e) => {
                        tracing::warn!(container = %name, error = %e, "cannot read the job of a container; leaving it");
                        false
                    }
                },
            };
            if orphan {
                self.remove(&name).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed containers of ended or unknown jobs");
        }
        Ok(removed)
    }
}
