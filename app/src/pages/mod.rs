//! The pages, their shared chrome (header, alert banner) and how each gets
//! its first state: a server function the server answers from the live
//! engine (so the first paint already has the numbers), then the live link.

pub mod alerts;
pub mod data;
pub mod mailing;
pub mod mailings;
pub mod overview;
pub mod resource;
pub mod transactional;
pub mod wall;

use crate::components::erase::EraseView;
use crate::components::{AlertBanner, LinkBadge};
use crate::live::use_live;
use crate::protocol::{AlertView, RawEvent, Topic, TopicState};
use leptos::prelude::*;
use leptos_router::hooks::use_location;
use resource::resource;
use serde::{Deserialize, Serialize};

/// What the server plugs in so server functions can read live state. Only
/// the server builds it; the trait keeps the UI crate free of server types.
#[cfg(feature = "ssr")]
pub mod source {
    use crate::protocol::{RawEvent, Topic, TopicState};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    pub trait ViewSource: Send + Sync + 'static {
        /// The topic's current state and its sequence number, or `None` if
        /// it has no data (an unknown mailing).
        fn view(&self, topic: Topic) -> BoxFuture<Option<(u64, TopicState)>>;
        /// The newest stored events of a mailing, addresses masked.
        fn latest_events(
            &self,
            mailing: String,
            limit: usize,
        ) -> BoxFuture<Result<Vec<RawEvent>, String>>;
        /// `{"alerts": {active, recent, silences}, "rules": [...]}` as the
        /// REST API gives them.
        fn alerts(&self) -> BoxFuture<Result<serde_json::Value, String>>;
        /// The stuck list (as `GET /api/v1/dispatches/stuck` gives it).
        fn stuck(&self, older_than_ms: i64) -> BoxFuture<Result<serde_json::Value, String>>;
    }

    /// Put into the Leptos context by the server for every request.
    #[derive(Clone)]
    pub struct Views(pub Arc<dyn ViewSource>);
}

/// A topic's state as a page first renders it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewSnapshot {
    pub seq: u64,
    pub state: TopicState,
    /// For a mailing: its newest raw events (addresses masked), so that the
    /// page renders them with its first paint from the same request.
    #[serde(default)]
    pub events: Vec<RawEvent>,
}

#[cfg(feature = "ssr")]
fn views() -> Result<source::Views, ServerFnError> {
    use_context::<source::Views>().ok_or_else(|| ServerFnError::new("live state is not available"))
}

/// A topic's current state, read from the server's live engine, with the
/// newest `events` raw events of a mailing topic; `None` for a mailing
/// with no known event.
#[server(prefix = "/_mp", endpoint = "view")]
pub async fn get_view(topic: String, events: usize) -> Result<Option<ViewSnapshot>, ServerFnError> {
    let topic: Topic = topic.parse().map_err(ServerFnError::new)?;
    let views = views()?.0;
    let Some((seq, state)) = views.view(topic.clone()).await else {
        return Ok(None);
    };
    let events = match topic {
        Topic::Mailing(id) if events > 0 => get_events(id, events).await?,
        _ => vec![],
    };
    Ok(Some(ViewSnapshot { seq, state, events }))
}

/// The newest events of a mailing (addresses masked).
#[server(prefix = "/_mp", endpoint = "events")]
pub async fn get_events(mailing: String, limit: usize) -> Result<Vec<RawEvent>, ServerFnError> {
    views()?
        .0
        .latest_events(mailing, limit.min(200))
        .await
        .map_err(ServerFnError::new)
}

/// Follows `topic` and gives its state: the server-rendered one first, then
/// whatever the live link holds.
pub fn live_state(topic: Topic, first: TopicState) -> Signal<TopicState> {
    let live = use_live();
    Signal::derive(move || live.state_of(&topic).unwrap_or_else(|| first.clone()))
}

/// A page that shows one topic: its state is loaded on the server (so the
/// first paint has the numbers), then followed live; `body` renders it.
/// `what` names the data in the error message. `body` is a plain function
/// returning an erased view so that this function, its resource and its
/// `Suspense` are compiled once for all pages, not once per page.
pub fn topic_page(
    topic: Topic,
    what: &'static str,
    body: fn(Signal<TopicState>) -> AnyView,
) -> impl IntoView {
    use_live().follow(topic.clone());
    let initial = resource(
        {
            let topic = topic.clone();
            move || topic.to_string()
        },
        |topic| get_view(topic, 0),
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || {
                let topic = topic.clone();
                Suspend::new(async move {
                    match initial.await {
                        Ok(Some(first)) => body(live_state(topic, first.state)),
                        Ok(None) => view! { <Problem message="No data yet."/> }.erase(),
                        Err(e) => view! { <Problem message=format!("Could not load {what}: {e}")/> }
                            .erase(),
                    }
                })
            }}
        </Suspense>
    }
}

/// The alerts of any topic's state (every topic carries them).
pub fn alerts_of(s: &TopicState) -> Vec<AlertView> {
    match s {
        TopicState::Overview(o) => o.alerts.clone(),
        TopicState::Mailings(m) => m.alerts.clone(),
        TopicState::Mailing(m) => m.alerts.clone(),
        TopicState::Wall(w) => w.alerts.clone(),
    }
}

/// The header: navigation, link status, and the alert banner below.
#[component]
pub fn Header() -> impl IntoView {
    let live = use_live();
    let location = use_location();
    let alerts = Signal::derive(move || {
        live.state
            .with(|s| s.as_ref().map(|(_, s)| alerts_of(s)).unwrap_or_default())
    });
    let nav = move |href: &'static str, label: &'static str| {
        let current = move || {
            let p = location.pathname.get();
            let here = if href == "/" {
                p == "/"
            } else {
                p.starts_with(href)
            };
            here.then_some("page")
        };
        view! { <a href=href aria-current=current>{label}</a> }
    };
    view! {
        <header class="top">
            <a class="brand" href="/">"mailpulse"</a>
            <nav aria-label="Pages">
                {nav("/", "Overview")}
                {nav("/mailings", "Mailings")}
                {nav("/transactional", "Transactional")}
                {nav("/alerts", "Alerts")}
                {nav("/wall", "Wall")}
            </nav>
            <LinkBadge/>
        </header>
        <AlertBanner alerts/>
    }
}

/// The "not found" page, with a 404 status on the server.
#[component]
pub fn NotFound() -> impl IntoView {
    not_found_status();
    view! {
        <h1>"Not found"</h1>
        <p>"There is no such page. " <a href="/">"Back to the overview"</a></p>
    }
}

/// Sets the response status to 404 (server render only).
pub fn not_found_status() {
    #[cfg(feature = "ssr")]
    {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            resp.set_status(http::StatusCode::NOT_FOUND);
        }
    }
}

/// An error shown in place of a page's content.
#[component]
pub fn Problem(#[prop(into)] message: String) -> impl IntoView {
    view! { <p class="problem" role="alert">{message}</p> }
}
