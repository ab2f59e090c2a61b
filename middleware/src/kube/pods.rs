//! The Pod API calls every part of the backend makes (get, delete), with failures in the API
//! server's words.

use ::kube::api::{Api, DeleteParams};
use k8s_openapi::api::core::v1::Pod;

use crate::backend::BackendError;

/// The Pod `name`, or `None` when there is none.
pub(super) async fn get_pod(pods: &Api<Pod>, name: &str) -> Result<Option<Pod>, BackendError> {
    pods.get_opt(name)
        .await
        .map_err(|e| BackendError::kube(format!("get Pod {name}"), e))
}

/// Deletes a Pod (a running one after a 1 s grace); one that is gone already is fine.
pub(super) async fn delete_pod(pods: &Api<Pod>, name: &str) -> Result<(), BackendError> {
    let params = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::background()
    };
    match pods.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(BackendError::kube(format!("delete Pod {name}"), e)),
    }
}
