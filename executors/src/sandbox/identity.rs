//! The host identity a job's sandbox runs as.
//!
//! An executor running as root never lets user code run as root: each job gets a uid (and the
//! same gid) of its own from a reserved range, derived from the job id. Two executors on one host
//! never hand out the same uid at once: an executor holds the uid by binding the abstract Unix
//! socket `cola-sandbox-uid-<uid>` for as long as the job runs (the kernel releases it when the
//! executor exits, however it exits), and moves on to the next uid when the socket is taken.
//! (Abstract sockets belong to a network namespace: executors that share a host must share one,
//! as local processes do.)
//! An executor that is not root runs sandboxes as its own user.

use std::os::{
    linux::net::SocketAddrExt,
    unix::net::{SocketAddr, UnixDatagram},
};

use cola_wire::JobId;

use crate::error::ExecutorError;

/// Who a job's sandbox runs as on the host.
#[derive(Debug)]
pub enum SandboxUser {
    /// A uid/gid reserved for this job while the value lives.
    Reserved {
        uid: u32,
        gid: u32,
        _claim: UnixDatagram,
    },
    /// The executor's own user (it is not root, so it cannot switch).
    Current,
}

impl SandboxUser {
    /// The identity for `job`: a free uid from `base..base + count` when running as root.
    pub fn for_job(job: &JobId, base: u32, count: u32) -> Result<Self, ExecutorError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(Self::Current);
        }
        Self::reserve(preferred_offset(job, count), base, count)
    }

    /// The first free uid at or after `base + offset` (wrapping within the range).
    fn reserve(offset: u32, base: u32, count: u32) -> Result<Self, ExecutorError> {
        (0..count)
            .map(|i| base + (offset + i) % count)
            .find_map(|uid| {
                claim(uid).map(|socket| Self::Reserved {
                    uid,
                    gid: uid,
                    _claim: socket,
                })
            })
            .ok_or(ExecutorError::NoFreeUid { base, count })
    }

    /// The uid and gid to switch to before starting the sandbox, if any.
    pub fn host_ids(&self) -> Option<(u32, u32)> {
        match self {
            Self::Reserved { uid, gid, .. } => Some((*uid, *gid)),
            Self::Current => None,
        }
    }
}

/// Where in the range a job's uid search starts: a stable hash of its id.
fn preferred_offset(job: &JobId, count: u32) -> u32 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = job
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (hash % u64::from(count)) as u32
}

/// Binds the abstract socket that marks `uid` as taken; `None` if someone holds it.
fn claim(uid: u32) -> Option<UnixDatagram> {
    let name = format!("cola-sandbox-uid-{uid}");
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    UnixDatagram::bind_addr(&addr).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_never_handed_out_twice_at_once() {
        // A range of its own so that concurrent tests do not interfere.
        let base = 3_000_000_000 + std::process::id() % 1_000_000 * 4;
        let a = SandboxUser::reserve(1, base, 3).unwrap();
        let b = SandboxUser::reserve(1, base, 3).unwrap();
        let c = SandboxUser::reserve(1, base, 3).unwrap();
        let ids: Vec<u32> = [&a, &b, &c]
            .iter()
            .map(|u| u.host_ids().unwrap().0)
            .collect();
        assert_eq!(ids, vec![base + 1, base + 2, base]);
        assert!(matches!(
            SandboxUser::reserve(0, base, 3),
            Err(ExecutorError::NoFreeUid { .. })
        ));
        drop(b);
        let again = SandboxUser::reserve(0, base, 3).unwrap();
        assert_eq!(again.host_ids(), Some((base + 2, base + 2)));
    }

    #[test]
    fn the_preferred_uid_depends_only_on_the_job() {
        let job = JobId::new();
        assert_eq!(
            preferred_offset(&job, 50_000),
            preferred_offset(&job, 50_000)
        );
        assert!(preferred_offset(&job, 7) < 7);
    }
}
