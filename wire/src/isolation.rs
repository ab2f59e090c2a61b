//! How the machines that run jobs isolate them, beyond what every sandbox has: whether each job
//! gets a cgroup of its own and a disk allowance. The middleware publishes it at start-up
//! (`cola-meta`, key [`crate::names::META_ISOLATION`]) and `GET /api/v1/languages` shows it.

use serde::{Deserialize, Serialize};

/// What a backend gives each job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// A cgroup per job: memory (shared memory and tmpfs pages included), processes and CPU.
    pub cgroup: Provision,
    /// A disk allowance per job (`limits.disk_mb`), apart from the disk of the NATS store.
    pub disk: Provision,
}

/// Whether a guarantee holds, and how (or why not).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provision {
    pub enforced: bool,
    /// How it is enforced, or why it is not.
    pub detail: String,
}

impl Provision {
    pub fn from_result(result: Result<String, String>) -> Self {
        match result {
            Ok(detail) => Self {
                enforced: true,
                detail,
            },
            Err(detail) => Self {
                enforced: false,
                detail,
            },
        }
    }
}
