//! Transactional mail (`/transactional`): each mailing's dispatch health
//! (live), and the stuck list — open dispatches older than a threshold,
//! with Optimizely's own state where configured — to hand to a backup
//! channel, also as CSV.

use super::overview::{overview_of, TxPanel};
use super::resource::resource;
use super::topic_page;
use crate::components::erase::EraseView;
use crate::components::format;
use crate::components::markup::Markup;
use crate::protocol::Topic;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StuckRow {
    pub mail_id: String,
    pub mailing_id: String,
    pub recipient_id: String,
    pub accepted_at: String,
    pub age_s: i64,
    #[serde(default)]
    pub optimizely_status: Option<String>,
}

/// Open dispatches older than `older_than_s` (as the REST API lists them).
#[server(prefix = "/_mp", endpoint = "stuck")]
pub async fn get_stuck(older_than_s: i64) -> Result<Vec<StuckRow>, ServerFnError> {
    let v = super::views()?
        .0
        .stuck(older_than_s.clamp(0, 30 * 86_400) * 1000)
        .await
        .map_err(ServerFnError::new)?;
    serde_json::from_value(v).map_err(|e| ServerFnError::new(e.to_string()))
}

const CHOICES: [(i64, &str); 5] = [
    (30, "30 s"),
    (60, "1 min"),
    (120, "2 min"),
    (300, "5 min"),
    (1800, "30 min"),
];

/// The stuck list as markup: a count and the table, "nothing is stuck",
/// or what went wrong.
fn stuck_markup(result: Result<Vec<StuckRow>, ServerFnError>) -> String {
    let mut h = Markup::new();
    let rows = match result {
        Err(e) => {
            let message = format!("Could not load the stuck list: {e}");
            return h
                .el("p", &[("class", "problem"), ("role", "alert")], &message)
                .take();
        }
        Ok(rows) if rows.is_empty() => {
            let attrs = [("class", "muted"), ("data-testid", "stuck-none")];
            return h.el("p", &attrs, "Nothing is stuck.").take();
        }
        Ok(rows) => rows,
    };
    h.el(
        "p",
        &[("data-testid", "stuck-count")],
        &format!("{} stuck", rows.len()),
    )
    .open("table", &[("class", "list wide")])
    .thead(&[
        "Mail id",
        "Mailing",
        "Recipient",
        "Accepted",
        "Waiting",
        "Optimizely says",
    ])
    .open("tbody", &[]);
    for r in rows {
        h.open("tr", &[])
            .td(&r.mail_id)
            .open("td", &[])
            .mailing_link(&r.mailing_id, None)
            .close("td")
            .td(&r.recipient_id)
            .td(&r.accepted_at)
            .num(&format::dur_ms(r.age_s * 1000))
            .td(r.optimizely_status.as_deref().unwrap_or("—"))
            .close("tr");
    }
    h.close("tbody").close("table").take()
}

#[component]
pub fn Transactional() -> impl IntoView {
    let older = RwSignal::new(60i64);
    let stuck = resource(move || older.get(), get_stuck);
    #[cfg(feature = "hydrate")]
    {
        let _ =
            set_interval_with_handle(move || stuck.refetch(), std::time::Duration::from_secs(10));
    }
    let choices = CHOICES
        .into_iter()
        .map(|(s, label)| view! { <option value=s.to_string() selected=move || older.get() == s>{label}</option> })
        .collect_view();
    view! {
        <h1>"Transactional mail"</h1>
        {topic_page(Topic::Overview, "transactional health", |state| {
            let tx = Memo::new(move |_| overview_of(&state.get()).transactional);
            view! { <TxPanel tx/> }.erase()
        })}
        <section class="panel" aria-labelledby="stuck-h">
            <h2 id="stuck-h">"Stuck dispatches"</h2>
            <p class="filters">
                <label>"Accepted by Optimizely, no sent event for more than "
                    <select aria-label="Older than" on:change=move |e| {
                        if let Ok(v) = event_target_value(&e).parse() { older.set(v) }
                    }>{choices}</select>
                </label>
                " · " <a href=move || format!("/api/v1/dispatches/stuck?older_than={}s&format=csv", older.get()) download data-testid="stuck-csv">"Download CSV"</a>
            </p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    view! { <div inner_html=stuck_markup(stuck.await)></div> }
                })}
            </Suspense>
        </section>
    }
}
