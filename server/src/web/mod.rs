//! The HTTP surface: the router that puts every route behind one place
//! (where an auth extractor can later go), health endpoints, the REST API,
//! `/metrics`, the websocket and the Leptos pages rendered on the server.

pub mod alerts;
pub mod api;
pub mod assets;
pub mod telemetry;
pub mod transactional;
pub mod ws;

use crate::store::spans;
use crate::{ingest, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use mailpulse_app::pages::source::{BoxFuture, ViewSource, Views};
use mailpulse_app::protocol::{RawEvent, Topic, TopicState};
use mailpulse_app::{shell, App};
use std::sync::{Arc, OnceLock};
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// The app's routes, listed once per process. Listing them renders the app
/// with resource loads switched off by a process-wide flag (leptos issue
/// #4773), so a page that another server of the same process renders
/// meanwhile can wait forever for a resource that never loads: about one
/// run in fifty of the skeleton tests hung so, while the tests beside it
/// started their servers.
/// Listed once, before the first server exists, no render can overlap it.
fn routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Builds the whole application router; serving it is the caller's job, so
/// tests can drive it directly.
pub fn router(state: AppState) -> Router {
    let routes = routes();
    let views = Views(Arc::new(LiveViews(state.clone())));
    let context = move || provide_context(views.clone());
    let sfn_context = context.clone();

    let api = Router::new()
        .route("/summary", get(api::summary))
        .route("/mailings", get(api::mailings))
        .route("/mailings/{id}", get(api::mailing).put(api::update_mailing))
        .route("/mailings/{id}/series", get(api::mailing_series))
        .route("/series", get(api::series))
        .route("/events", get(api::events))
        .route("/dispatches", post(transactional::post_dispatches))
        .route("/dispatches/stuck", get(transactional::stuck))
        .route("/transactional", get(transactional::health))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}/ack", post(alerts::ack))
        .route("/alerts/{id}/chart.png", get(alerts::chart))
        .route("/silences", post(alerts::silence))
        .route("/silences/{id}", axum::routing::delete(alerts::unsilence))
        .route("/alert-rules", get(alerts::rules))
        .route(
            "/alert-rules/{name}",
            axum::routing::put(alerts::put_rule).delete(alerts::delete_rule),
        )
        .route("/openapi.json", get(api::openapi))
        .fallback(|| async {
            crate::error::ApiError::NotFound(
                "no such API endpoint; see /api/v1/openapi.json".into(),
            )
        });

    // The webhook front door is the hot path: it answers small JSON
    // receipts (nothing to compress) and logs its own failures; the health
    // probes are polled often (a 503 from /readyz while rebuilding is the
    // answer, not an incident). So they are merged after the layers below
    // and skip them.
    let unlogged = Router::new()
        .route("/webhooks/optimizely", post(ingest::post_default))
        .route("/webhooks/optimizely/{source}", post(ingest::post_source))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));

    let assets = assets::Assets::new(state.config.site_root.join("pkg"));
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/pkg/{file}",
            get(move |file, headers| assets.clone().serve(file, headers)),
        )
        .route("/ws", get(ws::upgrade))
        .route("/metrics", get(telemetry::scrape))
        .route(
            "/_mp/{*fn_name}",
            post(move |req: axum::extract::Request| {
                leptos_axum::handle_server_fns_with_context(sfn_context.clone(), req)
            }),
        )
        .leptos_routes_with_context(&state, routes, context, {
            let options = state.leptos.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        // gzip what is worth it for clients that ask (the bundle under
        // /pkg comes gzipped already, see `assets`); answers under 1 KB
        // stay plain.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(1024))),
        )
        // 5xx answers are expected moments (503 while starting or when the
        // store is busy) that the handlers explain themselves; at ERROR
        // they would page whoever watches the logs.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .merge(unlogged)
        .with_state(state)
}

/// The live engine as the UI's server functions see it.
struct LiveViews(AppState);

impl ViewSource for LiveViews {
    fn view(&self, topic: Topic) -> BoxFuture<Option<(u64, TopicState)>> {
        let live = self.0.live.clone();
        Box::pin(async move { live.view(topic).await.map(|p| (p.seq, p.state.clone())) })
    }

    fn latest_events(
        &self,
        mailing: String,
        limit: usize,
    ) -> BoxFuture<Result<Vec<RawEvent>, String>> {
        let store = self.0.store.clone();
        Box::pin(async move {
            store
                .read(move |c| {
                    let mut s = c.prepare_cached(
                        "SELECT id, type, event_time, received_at, recipient_id, address, link, \
                         bounce_category, bounce_reason FROM events \
                         WHERE id BETWEEN ?1 AND ?2 AND mailing_id = ?3 ORDER BY id DESC LIMIT ?4",
                    )?;
                    let mut out = Vec::new();
                    spans::newest_first(c, &mailing, None, |lo, hi| {
                        let left = (limit - out.len()) as i64;
                        let rows = s.query_map(
                            r2d2_sqlite::rusqlite::params![lo, hi, mailing, left],
                            |r| {
                                Ok(RawEvent {
                                    id: r.get(0)?,
                                    event_type: r.get(1)?,
                                    event_time: r.get(2)?,
                                    received_at: r.get(3)?,
                                    recipient: r.get(4)?,
                                    address: r
                                        .get::<_, Option<String>>(5)?
                                        .map(|a| api::mask_address(&a)),
                                    link: r.get(6)?,
                                    bounce: r.get(7)?,
                                    reason: r.get(8)?,
                                })
                            },
                        )?;
                        for row in rows {
                            out.push(row?);
                        }
                        Ok(out.len() < limit)
                    })?;
                    Ok(out)
                })
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn alerts(&self) -> BoxFuture<Result<serde_json::Value, String>> {
        let live = self.0.live.clone();
        Box::pin(async move {
            let alerts = live.alerts().await.ok_or("the live engine is not ready")?;
            let rules = live.rules().await;
            Ok(serde_json::json!({ "alerts": alerts, "rules": rules }))
        })
    }

    fn stuck(&self, older_than_ms: i64) -> BoxFuture<Result<serde_json::Value, String>> {
        let state = self.0.clone();
        Box::pin(async move {
            let list = transactional::stuck_list(&state, older_than_ms, None, 1000)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::to_value(list).map_err(|e| e.to_string())
        })
    }
}

/// Alive: the process answers.
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready: the store is open and the live state is rebuilt, so events can
/// be accepted and pages show true numbers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "starting"})),
        )
    }
}
