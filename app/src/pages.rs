//! The pages and the page chrome. Each page fetches its first state through a
//! server function (so the server renders real numbers), then follows the
//! live link.

use crate::live::{use_live, LinkStatus};
use crate::protocol::{EventType, OverviewState};
use leptos::prelude::*;

/// What the server plugs in so server functions can read live state. Only
/// the server builds it; the trait keeps the UI crate free of server types.
#[cfg(feature = "ssr")]
pub mod source {
    use crate::protocol::OverviewState;
    use std::sync::Arc;

    pub trait ViewSource: Send + Sync + 'static {
        fn overview(&self) -> OverviewState;
    }

    /// Put into the Leptos context by the server for every request.
    #[derive(Clone)]
    pub struct Views(pub Arc<dyn ViewSource>);
}

/// The overview's current state, read from the server's live engine.
#[server(prefix = "/_mp", endpoint = "overview")]
pub async fn get_overview() -> Result<OverviewState, ServerFnError> {
    let views = use_context::<source::Views>()
        .ok_or_else(|| ServerFnError::new("live state is not available"))?;
    Ok(views.0.overview())
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
    let initial = Resource::new(|| (), |_| get_overview());
    view! {
        <h1>"Overview"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match initial.await {
                    Ok(first) => {
                        let state = Signal::derive(move || {
                            live.overview.get().unwrap_or_else(|| first.clone())
                        });
                        view! { <CountsTable state/> }.into_any()
                    }
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
fn CountsTable(state: Signal<OverviewState>) -> impl IntoView {
    let rows = EventType::ALL
        .into_iter()
        .map(|t| {
            let value = move || state.with(|s| s.counts.get(&t).copied().unwrap_or(0));
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
