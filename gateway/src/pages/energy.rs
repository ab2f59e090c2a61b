//! `/energy`: every node's latest energy reading and a chart of the last hours (inline SVG,
//! drawn on the server: no script, CSP unchanged).

use askama::Template;
use axum::{
    extract::State,
    response::{Html, IntoResponse, Response},
};

use crate::{
    energy::{self, CHART_HOURS, Chart, NodeEnergy},
    pages::{Chrome, PageError, SignedIn, view},
    state::AppState,
};

/// One node's row.
pub struct NodeRow {
    pub node: String,
    pub share: String,
    pub solar: String,
    pub battery: String,
    pub carbon: String,
    pub updated: String,
    pub stale: bool,
}

impl From<NodeEnergy> for NodeRow {
    fn from(n: NodeEnergy) -> Self {
        let or_dash = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("—".into(), f);
        Self {
            share: format!("{:.0}%", n.renewable_share * 100.0),
            solar: or_dash(n.solar_w, &|w| format!("{w:.0} W")),
            battery: or_dash(n.battery_pct, &|p| format!("{p:.0}%")),
            carbon: or_dash(n.carbon_g_per_kwh, &|c| format!("{c:.0} g/kWh")),
            updated: view::when(&n.updated_at),
            stale: n.stale,
            node: n.node,
        }
    }
}

#[derive(Template)]
#[template(path = "energy.html")]
pub struct EnergyPage {
    pub chrome: Chrome,
    pub nodes: Vec<NodeRow>,
    pub chart: Chart,
    pub hours: i64,
}

/// `GET /energy`.
pub async fn page(State(app): State<AppState>, signed: SignedIn) -> Result<Response, PageError> {
    let nodes = energy::latest(&app).await?;
    let chart = energy::chart(&app, cola_wire::job::now()).await?;
    let page = EnergyPage {
        chrome: Chrome::for_user(&signed),
        nodes: nodes.into_iter().map(NodeRow::from).collect(),
        chart,
        hours: CHART_HOURS,
    };
    Ok(Html(page.render()?).into_response())
}
