//! Names on the wire, exactly as DESIGN.md lists them.

use crate::{JobId, Language, UserId};

/// The JetStream stream that holds submitted jobs (work-queue retention).
pub const STREAM: &str = "COLA";
/// Every job subject starts with this prefix followed by a dot, the language, a dot and the
/// user.
pub const SUBJECT_PREFIX: &str = "cola";
/// The subjects the stream captures.
pub const STREAM_SUBJECTS: &str = "cola.>";
/// The durable pull consumer shared by every middleware replica.
pub const CONSUMER: &str = "middleware";
/// KV bucket with one record per job, key `<user>.<job-id>`.
pub const JOBS_BUCKET: &str = "cola-jobs";
/// Object store with the output (and large input) zips.
pub const OUTPUTS_BUCKET: &str = "cola-outputs";
/// KV bucket with what each user stored per day (key `<user>.<day>`): the storage quota.
pub const USAGE_BUCKET: &str = "cola-usage";
/// KV bucket with browser sessions.
pub const SESSIONS_BUCKET: &str = "cola-sessions";
/// KV bucket with API tokens, key = hex SHA-256 of the token (the token itself is never stored).
pub const TOKENS_BUCKET: &str = "cola-tokens";
/// KV bucket with facts the services publish about themselves (e.g. toolchain versions).
pub const META_BUCKET: &str = "cola-meta";
/// Key in [`META_BUCKET`] holding the JSON map language → toolchain version.
pub const META_LANGUAGE_VERSIONS: &str = "languages";
/// The `cola-meta` key of how jobs are isolated ([`crate::Isolation`], JSON).
pub const META_ISOLATION: &str = "isolation";
/// Header that makes JetStream drop a duplicate publish of the same job.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Header of a job message: the revision at which the gateway created the job's record (a
/// `JobRecord::queued` of the message). A consumer that starts from it changes the record by
/// compare-and-set without reading it first; if anybody wrote in between, the write fails and
/// it reads the record as usual.
pub const RECORD_REVISION_HEADER: &str = "Cola-Record-Revision";
/// Header of a job message: the id of the request that submitted it ([`crate::RequestId`]).
pub const REQUEST_ID_HEADER: &str = "Cola-Request-Id";

/// `cola.<language>.<user>`: the subject a job of this language and user is published on. A
/// user's own subjects let the stream count (and bound) each user's unfinished jobs.
pub fn job_subject(language: &Language, user: &UserId) -> String {
    format!("{SUBJECT_PREFIX}.{}.{}", language.as_str(), user.as_str())
}

/// `cola.*.<user>`: every job subject of one user.
pub fn user_job_subjects(user: &UserId) -> String {
    format!("{SUBJECT_PREFIX}.*.{}", user.as_str())
}

/// The language a job subject names (`cola.<language>.<user>`, or `cola.<language>` as
/// before per-user subjects).
pub fn language_of_subject(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    Some(rest.split_once('.').map_or(rest, |(language, _)| language))
}

/// `<user>.<job-id>`: a job's key in [`JOBS_BUCKET`], made from its owner and id or parsed
/// back from a key read from the bucket; either way both parts are valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobKey {
    key: String,
    user: UserId,
    id: JobId,
}

impl JobKey {
    /// The key of `user`'s job `id`.
    pub fn new(user: &UserId, id: &JobId) -> Self {
        Self {
            key: format!("{}.{}", user.as_str(), id),
            user: user.clone(),
            id: *id,
        }
    }

    /// The job key `key` names, if it is one (a valid user, a dot, a job id).
    pub fn parse(key: &str) -> Option<Self> {
        let (user, id) = key.split_once('.')?;
        let (user, id) = (UserId::parse(user).ok()?, id.parse().ok()?);
        Some(Self::new(&user, &id))
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The job's owner.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }
}

impl AsRef<str> for JobKey {
    fn as_ref(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

/// `<user>.>`: every key of one user's jobs, for a KV watch.
pub fn user_keys(user: &UserId) -> String {
    format!("{}.>", user.as_str())
}

/// `<user>/<job-id>-output.zip`: the output zip's object name.
pub fn output_object(user: &UserId, id: &JobId) -> String {
    format!("{}/{}-output.zip", user.as_str(), id)
}

/// Core NATS subjects a pre-started executor Pod waits on for its one job (outside
/// [`STREAM_SUBJECTS`]: never captured by the job stream).
pub const WARM_SUBJECTS: &str = "cola-warm.>";

/// `cola-warm.<pod>`: the subject the pre-started executor Pod `pod` waits on; the middleware
/// hands it a job message as a request there, and the executor answers once it took it.
pub fn warm_subject(pod: &str) -> String {
    format!("cola-warm.{pod}")
}

/// Core NATS subjects devices publish energy telemetry on, one per node (`energy.<node>`, the
/// MQTT topic `energy/<node>` through NATS's MQTT listener); outside [`STREAM_SUBJECTS`].
pub const ENERGY_SUBJECTS: &str = "energy.*";

/// `energy.<node>`: where the telemetry of `node` arrives.
pub fn energy_subject(node: &crate::energy::NodeName) -> String {
    format!("energy.{node}")
}

/// The node a telemetry subject names (`energy.<node>`), unchecked.
pub fn node_of_energy_subject(subject: &str) -> Option<&str> {
    subject.strip_prefix("energy.")
}

/// Queue group of the middlewares that take telemetry in: each reading is kept once.
pub const ENERGY_INTAKE_GROUP: &str = "cola-energy-intake";
/// KV bucket with each node's latest energy reading, key the node name, with a TTL.
pub const ENERGY_BUCKET: &str = "cola-energy";
/// KV bucket with each middleware's presence on its node, key the node name, with a short TTL.
pub const NODES_BUCKET: &str = "cola-nodes";
/// The stream that keeps the readings of the last day (for the `/energy` chart).
pub const ENERGY_HISTORY_STREAM: &str = "COLA_ENERGY";

/// `cola-energy-history.<node>`: where the readings of `node` are kept for the chart.
pub fn energy_history_subject(node: &crate::energy::NodeName) -> String {
    format!("cola-energy-history.{node}")
}

/// Every subject of [`ENERGY_HISTORY_STREAM`].
pub const ENERGY_HISTORY_SUBJECTS: &str = "cola-energy-history.*";

/// `<user>/<job-id>-input.zip`: where inputs too large for one message are kept.
pub fn input_object(user: &UserId, id: &JobId) -> String {
    format!("{}/{}-input.zip", user.as_str(), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_design() {
        let user = UserId::parse("alice").unwrap();
        let id: JobId = "0190b3c4-5d6e-7f80-9a0b-1c2d3e4f5a6b".parse().unwrap();
        let lang = Language::parse("c").unwrap();
        assert_eq!(job_subject(&lang, &user), "cola.c.alice");
        assert_eq!(user_job_subjects(&user), "cola.*.alice");
        assert_eq!(language_of_subject("cola.c.ada"), Some("c"));
        assert_eq!(language_of_subject("cola.numeric"), Some("numeric"));
        assert_eq!(language_of_subject("other.c"), None);
        let key = JobKey::new(&user, &id);
        assert_eq!(key.as_str(), "alice.0190b3c4-5d6e-7f80-9a0b-1c2d3e4f5a6b");
        assert_eq!(
            output_object(&user, &id),
            "alice/0190b3c4-5d6e-7f80-9a0b-1c2d3e4f5a6b-output.zip"
        );
        let back = JobKey::parse(key.as_str()).unwrap();
        assert_eq!((back.user(), back.id()), (&user, id));
        assert_eq!(back, key);
        for bad in [
            "alice.not-a-uuid",
            "alice",
            "Not A User.0190b3c4-5d6e-7f80-9a0b-1c2d3e4f5a6b",
        ] {
            assert_eq!(JobKey::parse(bad), None, "{bad}");
        }
    }
}
