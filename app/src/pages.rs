//! The pages and the page chrome. Each page fetches its first state through a
//! server function (so the server renders real numbers), then follows the
//! live link.

use crate::live::{use_live, LinkStatus};
use crate::protocol::{EventType, Topic, TopicState};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What the server plugs in so server functions can read live state. Only
/// the server builds it; the trait keeps the UI crate free of server types.
#[cfg(feature = "ssr")]
pub mod source {
    use crate::protocol::{Topic, TopicState};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    pub trait ViewSource: Send + Sync + 'static {
        /// The topic's current state and its sequence number, or `None` if
        /// it has no data (an unknown mailing).
        fn view(&self, topic: Topic) -> BoxFuture<Option<(u64, TopicState)>>;
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
}

/// A topic's current state, read from the server's live engine; `None` for
/// a mailing with no known event.
#[server(prefix = "/_mp", endpoint = "view")]
pub async fn get_view(topic: String) -> Result<Option<ViewSnapshot>, ServerFnError> {
    let topic: Topic = topic.parse().map_err(ServerFnError::new)?;
    let views = use_context::<source::Views>()
        .ok_or_else(|| ServerFnError::new("live state is not available"))?;
    Ok(views
        .0
        .view(topic)
        .await
        .map(|(seq, state)| ViewSnapshot { seq, state }))
}

#[component]
pub fn Header() -> impl IntoView {
    let live = use_live();
    let label = move || match live.status.get() {
        LinkStatus::Connecting => "connecting…".to_string(),
        LinkStatus::Live => "live".to_string(),
        LinkStatus::Reconnecting { .. } => "reconnecting…".to_string(),
        LinkStatus::Stale { .. } => "stale".to_string(),
    };
    let class = move || match live.status.get() {
        LinkStatus::Live => "link live",
        LinkStatus::Connecting => "link connecting",
        _ => "link down",
    };
    view! {
        <header class="top">
            <a class="brand" href="/">"mailpulse"</a>
            <span class=class data-testid="link-status" role="status">{label}</span>
        </header>
    }
}

#[component]
pub fn Overview() -> impl IntoView {
    let live = use_live();
    live.follow(Topic::Overview);
    let initial = Resource::new(|| (), |_| get_view(Topic::Overview.to_string()));
    view! {
        <h1>"Overview"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match initial.await {
                    Ok(Some(first)) => {
                        let state = Signal::derive(move || {
                            live.state_of(&Topic::Overview).unwrap_or_else(|| first.state.clone())
                        });
                        view! { <CountsTable state/> }.into_any()
                    }
                    Ok(None) => view! { <p class="error" role="alert">"No data yet."</p> }.into_any(),
                    Err(e) => view! {
                        <p class="error" role="alert">{format!("Could not load the overview: {e}")}</p>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn CountsTable(state: Signal<TopicState>) -> impl IntoView {
    let rows = EventType::ALL
        .into_iter()
        .map(|t| {
            let value = move || {
                state.with(|s| match s {
                    TopicState::Overview(o) => o.summary.overall.totals.of_type(t),
                    _ => 0,
                })
            };
            view! {
                <tr>
                    <th scope="row">{t.as_str()}</th>
                    <td class="num" data-testid=format!("count-{}", t.as_str())>{value}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="counts">
            <caption>"Events received, by type"</caption>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            resp.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <h1>"Not found"</h1>
        <p>"There is no such page. " <a href="/">"Back to the overview"</a></p>
    }
}
