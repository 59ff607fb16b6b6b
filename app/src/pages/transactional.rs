//! Transactional mail (`/transactional`): each mailing's dispatch health
//! (live), and the stuck list — open dispatches older than a threshold,
//! with Optimizely's own state where configured — to hand to a backup
//! channel, also as CSV.

use super::overview::{overview_of, TxPanel};
use super::resource::resource;
use super::{topic_page, Problem};
use crate::components::erase::EraseView;
use crate::components::format;
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
            view! { <TxPanel tx/> }
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
                    match stuck.await {
                        Ok(rows) if rows.is_empty() => view! { <p class="muted" data-testid="stuck-none">"Nothing is stuck."</p> }.erase(),
                        Ok(rows) => {
                            let n = rows.len();
                            let body = rows.into_iter().map(|r| view! {
                                <tr>
                                    <td>{r.mail_id}</td>
                                    <td><a href=format!("/mailings/{}", r.mailing_id)>{r.mailing_id.clone()}</a></td>
                                    <td>{r.recipient_id}</td>
                                    <td>{r.accepted_at}</td>
                                    <td class="num">{format::dur_ms(r.age_s * 1000)}</td>
                                    <td>{r.optimizely_status.unwrap_or_else(|| "—".into())}</td>
                                </tr>
                            }).collect_view();
                            view! {
                                <p data-testid="stuck-count">{format!("{n} stuck")}</p>
                                <table class="list wide">
                                    <thead><tr>
                                        <th scope="col">"Mail id"</th><th scope="col">"Mailing"</th><th scope="col">"Recipient"</th>
                                        <th scope="col">"Accepted"</th><th scope="col">"Waiting"</th><th scope="col">"Optimizely says"</th>
                                    </tr></thead>
                                    <tbody>{body}</tbody>
                                </table>
                            }.erase()
                        }
                        Err(e) => view! { <Problem message=format!("Could not load the stuck list: {e}")/> }.erase(),
                    }
                })}
            </Suspense>
        </section>
    }
}
