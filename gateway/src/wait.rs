//! `?wait=N`: holding an answer until the job ends, fed by the process-wide job watch.

use std::time::Duration;

use cola_wire::{JobId, JobKey, JobRecord, nats::JobStore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    GatewayError,
    events::{JobEvent, UserEvents},
};

/// Parses the `wait` query parameter: seconds, 0 to `max`, fractions allowed.
pub fn parse_wait(raw: Option<&str>, max: Duration) -> Result<Duration, GatewayError> {
    let Some(raw) = raw else {
        return Ok(Duration::ZERO);
    };
    let out_of_range = || {
        GatewayError::invalid_field(
            "wait",
            format!(
                "wait must be a number of seconds from 0 to {}",
                max.as_secs_f64()
            ),
        )
    };
    let seconds: f64 = raw.trim().parse().map_err(|_| out_of_range())?;
    if !seconds.is_finite() || seconds < 0.0 || seconds > max.as_secs_f64() {
        return Err(out_of_range());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A job's record as last seen, with the revision it was read at.
pub struct Seen {
    pub record: JobRecord,
    pub revision: u64,
}

/// Follows the job `id` (under `key`) from `seen` until it is terminal, `deadline` passes or the
/// gateway shuts down, and returns its latest record. `events` must have been subscribed
/// before `seen` was read, so that no change in between is missed. A listener to one job hears
/// only its end, so a wait that elapses first reads the record again.
pub async fn until_terminal(
    mut events: UserEvents,
    jobs: &JobStore,
    key: &JobKey,
    id: JobId,
    mut seen: Seen,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<JobRecord, GatewayError> {
    while !seen.record.status.is_terminal() {
        let event = tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            () = shutdown.cancelled() => break,
            event = events.next() => event,
        };
        match event {
            JobEvent::Updated {
                id: changed,
                revision,
                record,
            } if changed == id && revision > seen.revision => {
                seen = Seen {
                    record: JobRecord::clone(&record),
                    revision,
                };
            }
            JobEvent::Removed { id: removed, .. } if removed == id => break,
            JobEvent::Resync => match jobs.get(key).await? {
                Some((record, revision)) if revision >= seen.revision => {
                    seen = Seen { record, revision };
                }
                Some(_) => {}
                None => break,
            },
            _ => {}
        }
    }
    // (If NATS does not answer now, the record as last seen is the answer.)
    if !seen.record.status.is_terminal()
        && let Ok(Some((record, revision))) = jobs.get(key).await
        && revision > seen.revision
    {
        seen = Seen { record, revision };
    }
    Ok(seen.record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_seconds_within_the_maximum() {
        let max = Duration::from_secs(60);
        assert_eq!(parse_wait(None, max).unwrap(), Duration::ZERO);
        assert_eq!(parse_wait(Some("0"), max).unwrap(), Duration::ZERO);
        assert_eq!(
            parse_wait(Some("1.5"), max).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_wait(Some("60"), max).unwrap(), max);
        for bad in ["61", "-1", "", "soon", "NaN", "inf", "1e9"] {
            assert!(
                matches!(parse_wait(Some(bad), max), Err(GatewayError::Invalid { field: Some(ref f), .. }) if f == "wait"),
                "{bad:?}"
            );
        }
    }
}
