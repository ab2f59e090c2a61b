//! `GET /api/v1/energy`: every node's latest energy reading (from the `cola-energy` bucket the
//! middlewares keep), and the chart of the last hours the `/energy` page draws (from the
//! `COLA_ENERGY` history). Readings are about machines, not people: any signed-in user sees
//! them all.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use cola_wire::energy::EnergyReading;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    GatewayError,
    auth::Authenticated,
    openapi::{InternalError, ServiceUnavailable, Unauthorized},
    state::AppState,
};

/// Every node's latest reading.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnergyList {
    /// By node name.
    pub nodes: Vec<NodeEnergy>,
}

/// One node's latest reading.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NodeEnergy {
    pub node: String,
    /// The share of the node's power from renewable sources, 0 to 1.
    pub renewable_share: f64,
    #[schema(required = true)]
    pub solar_w: Option<f64>,
    #[schema(required = true)]
    pub battery_pct: Option<f64>,
    #[schema(required = true)]
    pub carbon_g_per_kwh: Option<f64>,
    /// When the reading came.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
    /// Whether it is too old to count: placement then treats the node as on grid power.
    pub stale: bool,
}

impl NodeEnergy {
    fn new(reading: EnergyReading, now: DateTime<Utc>, fresh_for: std::time::Duration) -> Self {
        Self {
            stale: reading.is_stale(now, fresh_for),
            node: reading.node.to_string(),
            renewable_share: reading.renewable_share.get(),
            solar_w: reading.solar_w,
            battery_pct: reading.battery_pct,
            carbon_g_per_kwh: reading.carbon_g_per_kwh,
            updated_at: reading.updated_at,
        }
    }
}

/// `GET /api/v1/energy`.
#[utoipa::path(
    get,
    path = "/api/v1/energy",
    tag = "energy",
    operation_id = "list_energy",
    summary = "Every node's latest energy reading",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The nodes' latest readings, by node name.", body = EnergyList),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
) -> Result<Json<EnergyList>, GatewayError> {
    Ok(Json(EnergyList {
        nodes: latest(&app).await?,
    }))
}

/// Every node's latest reading, by node name.
pub async fn latest(app: &AppState) -> Result<Vec<NodeEnergy>, GatewayError> {
    let readings = app
        .energy
        .readings()
        .await
        .map_err(|e| GatewayError::backend("read the energy readings", e))?;
    let now = cola_wire::job::now();
    Ok(readings
        .into_iter()
        .map(|r| NodeEnergy::new(r, now, app.config.energy_fresh_for))
        .collect())
}

/// How far back the chart goes.
pub const CHART_HOURS: i64 = 6;
/// The most readings the chart reads.
const CHART_READINGS: usize = 20_000;

/// The chart of every node's renewable share over the last [`CHART_HOURS`], as SVG shapes.
pub struct Chart {
    pub width: u32,
    pub height: u32,
    /// One line per node.
    pub series: Vec<Series>,
    /// Labels of the time axis: x and text.
    pub hours: Vec<(f64, String)>,
    /// Labels of the share axis: y and text.
    pub shares: Vec<(f64, String)>,
    /// The plot area: left, top, right, bottom.
    pub area: (f64, f64, f64, f64),
}

/// One node's line.
pub struct Series {
    pub node: String,
    pub colour: &'static str,
    /// `x,y x,y …` for a polyline.
    pub points: String,
    /// How many readings it has.
    pub readings: usize,
}

/// Colours of the lines, in turn (distinguishable, and readable on light and dark).
const COLOURS: [&str; 8] = [
    "#1b7837", "#2166ac", "#b2182b", "#e08214", "#762a83", "#35978f", "#8c510a", "#4d4d4d",
];

/// Reads the history and draws the chart ending `now`.
pub async fn chart(app: &AppState, now: DateTime<Utc>) -> Result<Chart, GatewayError> {
    let since = now - chrono::Duration::hours(CHART_HOURS);
    let history = app
        .energy
        .history(since, CHART_READINGS)
        .await
        .map_err(|e| GatewayError::backend("read the energy history", e))?;
    Ok(draw(&history, since, now))
}

/// The chart of `readings` between `since` and `now`.
pub fn draw(readings: &[EnergyReading], since: DateTime<Utc>, now: DateTime<Utc>) -> Chart {
    let (width, height) = (720u32, 280u32);
    let area = (
        48.0,
        12.0,
        f64::from(width) - 12.0,
        f64::from(height) - 32.0,
    );
    let span = (now - since).num_milliseconds().max(1) as f64;
    let x = |at: DateTime<Utc>| {
        let part = ((at - since).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
        area.0 + part * (area.2 - area.0)
    };
    let y = |share: f64| area.3 - share * (area.3 - area.1);
    let mut nodes: Vec<&str> = readings.iter().map(|r| r.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let series = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let mut mine: Vec<&EnergyReading> = readings
                .iter()
                .filter(|r| r.node.as_str() == *node)
                .collect();
            mine.sort_by_key(|r| r.updated_at);
            let points = mine
                .iter()
                .map(|r| format!("{:.1},{:.1}", x(r.updated_at), y(r.renewable_share.get())))
                .collect::<Vec<_>>()
                .join(" ");
            Series {
                node: (*node).to_owned(),
                colour: COLOURS[i % COLOURS.len()],
                points,
                readings: mine.len(),
            }
        })
        .collect();
    let hours = (0..=CHART_HOURS)
        .map(|h| {
            let at = since + chrono::Duration::hours(h);
            (x(at), at.format("%H:%M").to_string())
        })
        .collect();
    let shares = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|s| (y(*s), format!("{:.0}%", s * 100.0)))
        .collect();
    Chart {
        width,
        height,
        series,
        hours,
        shares,
        area,
    }
}

#[cfg(test)]
mod tests {
    use cola_wire::energy::{NodeName, Telemetry};

    use super::*;

    fn reading(node: &str, share: f64, at: DateTime<Utc>) -> EnergyReading {
        let payload = format!(r#"{{"renewable_share": {share}}}"#);
        EnergyReading::new(
            NodeName::parse(node).unwrap(),
            Telemetry::parse(payload.as_bytes()).unwrap(),
            at,
        )
    }

    #[test]
    fn the_chart_draws_one_line_per_node_inside_its_area() {
        let now = Utc::now();
        let since = now - chrono::Duration::hours(CHART_HOURS);
        let readings = [
            reading("b", 0.0, since),
            reading("a", 1.0, now),
            reading("a", 0.0, since),
            reading("b", 0.5, now - chrono::Duration::hours(3)),
        ];
        let chart = draw(&readings, since, now);
        let names: Vec<_> = chart.series.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let (left, top, right, bottom) = chart.area;
        // a: from the bottom left (0% six hours ago) to the top right (100% now).
        assert_eq!(
            chart.series[0].points,
            format!("{left:.1},{bottom:.1} {right:.1},{top:.1}")
        );
        assert_eq!(chart.series[1].readings, 2);
        assert_ne!(chart.series[0].colour, chart.series[1].colour);
        assert_eq!(chart.hours.len(), CHART_HOURS as usize + 1);
        assert_eq!(chart.shares.first().unwrap().1, "0%");
    }

    #[test]
    fn a_reading_is_stale_once_older_than_it_counts() {
        let now = Utc::now();
        let fresh_for = std::time::Duration::from_secs(300);
        let old = NodeEnergy::new(
            reading("a", 0.5, now - chrono::Duration::minutes(6)),
            now,
            fresh_for,
        );
        assert!(old.stale);
        let new = NodeEnergy::new(
            reading("a", 0.5, now - chrono::Duration::minutes(4)),
            now,
            fresh_for,
        );
        assert!(!new.stale);
        assert_eq!(new.renewable_share, 0.5);
    }
}
