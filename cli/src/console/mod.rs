//! The console `payhook dev` serves at `/`: the pipeline at a glance — a
//! live event log, each event's detail, object timelines, failures with their
//! redrive and retry buttons, counters with a throughput chart, and a picker
//! that sends `payhook trigger`'s events.
//!
//! The page is static files compiled in ([`assets`]); it reads and acts
//! through the same JSON API as any client, behind the same guard (loopback
//! `Host`, JSON-only same-origin POSTs), plus the few views of [`api`].

pub mod api;
pub mod assets;
pub mod deliveries;

use axum::Router;
use axum::routing::{get, post};

use crate::api::AppState;

/// The console's page, files and API routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/console/{file}", get(assets::file))
        .route("/api/console/overview", get(api::overview))
        .route("/api/console/events/{provider}/{event_id}", get(api::event))
        .route("/api/console/objects/{kind}/{id}", get(api::object))
        .route("/api/catalogue", get(api::catalogue))
        .route("/api/trigger", post(api::trigger))
}

#[cfg(test)]
mod tests;
