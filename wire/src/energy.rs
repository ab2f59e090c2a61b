//! Energy telemetry, as it crosses process boundaries: the readings a device publishes about a
//! node's power (`energy.<node>`, or the MQTT topic `energy/<node>` through NATS's MQTT
//! listener), the reading kept per node (KV bucket `cola-energy`), each middleware's presence
//! (KV bucket `cola-nodes`), and when a job may be started later for renewable power (its
//! [`Schedule`]).
//!
//! Every value is checked where it enters: a share is a finite number from 0 to 1, a node name
//! a short token that is also a valid subject token and KV key.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The largest telemetry payload read; anything longer is refused unread.
pub const MAX_TELEMETRY_BYTES: usize = 4096;

/// Why a name or a reading is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnergyError {
    #[error("not a node name (1 to 253 characters from A-Z a-z 0-9 _ -)")]
    NodeName,
    #[error("the payload is larger than {MAX_TELEMETRY_BYTES} bytes")]
    TooLarge,
    #[error("the payload is not a JSON object with a renewable_share: {0}")]
    NotJson(String),
    #[error("{field} must be {range}")]
    OutOfRange {
        field: &'static str,
        range: &'static str,
    },
}

impl EnergyError {
    /// A short, bounded name of the kind of error (a metric label).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::NodeName => "node_name",
            Self::TooLarge => "too_large",
            Self::NotJson(_) => "not_json",
            Self::OutOfRange { .. } => "out_of_range",
        }
    }
}

/// The name of a node (a machine a middleware runs on, or a Kubernetes node): 1 to 253
/// characters from `A-Z a-z 0-9 _ -`, so it is one subject token and a KV key as it is. A
/// Kubernetes node's name may have dots, which a subject token may not: its node name has `_`
/// for each (`_` is never in a Kubernetes name), see [`NodeName::of_kubernetes_node`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    pub fn parse(s: &str) -> Result<Self, EnergyError> {
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
        if (1..=253).contains(&s.len()) && s.chars().all(safe) {
            Ok(Self(s.to_owned()))
        } else {
            Err(EnergyError::NodeName)
        }
    }

    /// The node name of the Kubernetes node `name` (`.` → `_`).
    pub fn of_kubernetes_node(name: &str) -> Result<Self, EnergyError> {
        Self::parse(&name.replace('.', "_"))
    }

    /// The Kubernetes node this names (`_` → `.`).
    pub fn kubernetes_node(&self) -> String {
        self.0.replace('_', ".")
    }

    /// The node name made from a host name: cut at its first dot, characters other than
    /// `A-Z a-z 0-9 _ -` replaced by `-`, at most 253; `None` when nothing is left.
    pub fn from_host(host: &str) -> Option<Self> {
        let short = host.split('.').next().unwrap_or_default();
        let cleaned: String = short
            .chars()
            .map(|c| match c {
                'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => c,
                _ => '-',
            })
            .take(253)
            .collect();
        Self::parse(&cleaned).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for NodeName {
    type Error = EnergyError;
    fn try_from(s: String) -> Result<Self, EnergyError> {
        Self::parse(&s)
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

/// A share of power from renewable sources: a finite number from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Share(f64);

// A share is never NaN, so equality is an equivalence.
impl Eq for Share {}

impl Share {
    pub const ZERO: Share = Share(0.0);

    pub fn new(value: f64) -> Result<Self, EnergyError> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(EnergyError::OutOfRange {
                field: "renewable_share",
                range: "a number from 0 to 1",
            })
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Share {
    type Error = EnergyError;
    fn try_from(value: f64) -> Result<Self, EnergyError> {
        Self::new(value)
    }
}

impl From<Share> for f64 {
    fn from(s: Share) -> f64 {
        s.0
    }
}

/// What a device reports about a node's power: the payload of `energy.<node>`. Fields it does
/// not know are ignored (devices may send more).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Telemetry {
    pub renewable_share: Share,
    #[serde(default)]
    pub solar_w: Option<f64>,
    #[serde(default)]
    pub battery_pct: Option<f64>,
    #[serde(default)]
    pub carbon_g_per_kwh: Option<f64>,
}

impl Telemetry {
    /// The reading in `payload`, checked: a JSON object of at most [`MAX_TELEMETRY_BYTES`] with
    /// `renewable_share` from 0 to 1, and when present `solar_w` and `carbon_g_per_kwh` not
    /// negative, `battery_pct` from 0 to 100.
    pub fn parse(payload: &[u8]) -> Result<Self, EnergyError> {
        if payload.len() > MAX_TELEMETRY_BYTES {
            return Err(EnergyError::TooLarge);
        }
        let telemetry: Self = serde_json::from_slice(payload).map_err(|e| {
            // A share out of range is refused by `Share` while decoding: say so plainly.
            match e.to_string() {
                m if m.contains("renewable_share must be") => EnergyError::OutOfRange {
                    field: "renewable_share",
                    range: "a number from 0 to 1",
                },
                m => EnergyError::NotJson(m),
            }
        })?;
        check(telemetry.solar_w, "solar_w", 0.0, f64::MAX, "a number ≥ 0")?;
        check(
            telemetry.battery_pct,
            "battery_pct",
            0.0,
            100.0,
            "from 0 to 100",
        )?;
        check(
            telemetry.carbon_g_per_kwh,
            "carbon_g_per_kwh",
            0.0,
            f64::MAX,
            "a number ≥ 0",
        )?;
        Ok(telemetry)
    }
}

fn check(
    value: Option<f64>,
    field: &'static str,
    min: f64,
    max: f64,
    range: &'static str,
) -> Result<(), EnergyError> {
    match value {
        Some(v) if !(v.is_finite() && (min..=max).contains(&v)) => {
            Err(EnergyError::OutOfRange { field, range })
        }
        _ => Ok(()),
    }
}

/// The latest reading of one node, as kept in `cola-energy` under the node's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    pub node: NodeName,
    pub renewable_share: Share,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solar_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_g_per_kwh: Option<f64>,
    /// When it was received.
    pub updated_at: DateTime<Utc>,
}

impl EnergyReading {
    pub fn new(node: NodeName, telemetry: Telemetry, updated_at: DateTime<Utc>) -> Self {
        Self {
            node,
            renewable_share: telemetry.renewable_share,
            solar_w: telemetry.solar_w,
            battery_pct: telemetry.battery_pct,
            carbon_g_per_kwh: telemetry.carbon_g_per_kwh,
            updated_at,
        }
    }

    /// Whether it is older than `fresh_for` at `now` (a stale reading counts as none).
    pub fn is_stale(&self, now: DateTime<Utc>, fresh_for: std::time::Duration) -> bool {
        let age = now.signed_duration_since(self.updated_at);
        age.to_std().is_ok_and(|age| age > fresh_for)
    }
}

/// A middleware's presence on its node, as kept in `cola-nodes` (refreshed every few seconds,
/// gone when it stops doing so): how many jobs it runs at once and how many more it could
/// start now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePresence {
    pub node: NodeName,
    pub slots: u32,
    pub free: u32,
    pub updated_at: DateTime<Utc>,
}

/// When a job may start: with `not_after`, the job may wait for renewable power until shortly
/// before that time; it always starts by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The latest time the job may start (RFC 3339).
    pub not_after: DateTime<Utc>,
}

/// Why a queued job is not started yet, when it is held on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// A time-shiftable job waits for a node with renewable power (or its deadline).
    RenewablePower,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_short_safe_tokens() {
        assert!(NodeName::parse("node-a_1").is_ok());
        for bad in ["", "a.b", "a b", "a>", "a*", &"x".repeat(254), "ä"] {
            assert_eq!(NodeName::parse(bad), Err(EnergyError::NodeName), "{bad:?}");
        }
        assert_eq!(
            NodeName::from_host("worker-1.example.org")
                .unwrap()
                .as_str(),
            "worker-1"
        );
        assert_eq!(NodeName::from_host("we ird").unwrap().as_str(), "we-ird");
        assert_eq!(NodeName::from_host(""), None);
        let node = NodeName::of_kubernetes_node("ip-10-0-0-1.ec2.internal").unwrap();
        assert_eq!(node.as_str(), "ip-10-0-0-1_ec2_internal");
        assert_eq!(node.kubernetes_node(), "ip-10-0-0-1.ec2.internal");
    }

    #[test]
    fn telemetry_is_checked_where_it_enters() {
        let t =
            Telemetry::parse(br#"{"renewable_share": 0.75, "solar_w": 1200, "extra": 1}"#).unwrap();
        assert_eq!(t.renewable_share.get(), 0.75);
        assert_eq!(t.solar_w, Some(1200.0));
        assert_eq!(t.battery_pct, None);
        let refused = |payload: &[u8]| Telemetry::parse(payload).unwrap_err();
        assert!(matches!(
            refused(br#"{"renewable_share": 1.5}"#),
            EnergyError::OutOfRange {
                field: "renewable_share",
                ..
            }
        ));
        assert!(matches!(
            refused(br#"{"renewable_share": -0.1}"#),
            EnergyError::OutOfRange { .. }
        ));
        assert!(matches!(
            refused(br#"{"solar_w": 3}"#),
            EnergyError::NotJson(_)
        ));
        assert!(matches!(refused(b"0.5"), EnergyError::NotJson(_)));
        assert!(matches!(
            refused(br#"{"renewable_share": "0.5"}"#),
            EnergyError::NotJson(_)
        ));
        assert!(matches!(
            refused(br#"{"renewable_share": 0.5, "battery_pct": 101}"#),
            EnergyError::OutOfRange {
                field: "battery_pct",
                ..
            }
        ));
        assert!(matches!(
            refused(br#"{"renewable_share": 0.5, "solar_w": -1}"#),
            EnergyError::OutOfRange {
                field: "solar_w",
                ..
            }
        ));
        let long = format!(
            r#"{{"renewable_share": 0.5, "pad": "{}"}}"#,
            "x".repeat(5000)
        );
        assert_eq!(refused(long.as_bytes()), EnergyError::TooLarge);
    }

    #[test]
    fn a_reading_goes_stale_after_its_freshness() {
        let at = Utc::now();
        let reading = EnergyReading::new(
            NodeName::parse("a").unwrap(),
            Telemetry::parse(br#"{"renewable_share": 0.5}"#).unwrap(),
            at,
        );
        let fresh_for = std::time::Duration::from_secs(60);
        assert!(!reading.is_stale(at + chrono::Duration::seconds(60), fresh_for));
        assert!(reading.is_stale(at + chrono::Duration::seconds(61), fresh_for));
        // A reading from a clock a little ahead is fresh, not stale.
        assert!(!reading.is_stale(at - chrono::Duration::seconds(5), fresh_for));
        let json = serde_json::to_value(&reading).unwrap();
        assert_eq!(json["renewable_share"], 0.5);
        assert!(json.get("solar_w").is_none());
        let back: EnergyReading = serde_json::from_value(json).unwrap();
        assert_eq!(back, reading);
    }

    #[test]
    fn a_schedule_names_only_its_deadline() {
        let s: Schedule = serde_json::from_str(r#"{"not_after": "2026-12-07T18:00:00Z"}"#).unwrap();
        assert_eq!(s.not_after.to_rfc3339(), "2026-12-07T18:00:00+00:00");
        assert!(serde_json::from_str::<Schedule>(r#"{"not_after": "tomorrow"}"#).is_err());
        assert!(
            serde_json::from_str::<Schedule>(r#"{"not_after": "2026-12-07T18:00:00Z", "x": 1}"#)
                .is_err()
        );
    }
}
