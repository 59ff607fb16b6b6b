//! Alerts (`/alerts`): active alerts with acknowledge and silence, active
//! silences, recent (resolved) alerts, and the rules — viewable and
//! editable. Changes go through the REST API with the API token saved on
//! this browser, if the server needs one.

use super::resource::{resource, PageResource};
use super::Problem;
use crate::components::erase::EraseView;
use crate::components::{format, AttentionToggle};
use crate::fetch;
use crate::protocol::{AlertState, AlertView, Severity};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SilenceView {
    pub id: i64,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertsPage {
    pub active: Vec<AlertView>,
    pub recent: Vec<AlertView>,
    pub silences: Vec<SilenceView>,
}

/// The alerts, silences and rules (as the REST API lists them).
#[server(prefix = "/_mp", endpoint = "alerts")]
pub async fn get_alerts() -> Result<(AlertsPage, Vec<Value>), ServerFnError> {
    let v = super::views()?
        .0
        .alerts()
        .await
        .map_err(ServerFnError::new)?;
    let page: AlertsPage = serde_json::from_value(v["alerts"].clone())
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let rules = v["rules"].as_array().cloned().unwrap_or_default();
    Ok((page, rules))
}

#[component]
pub fn Alerts() -> impl IntoView {
    let data = resource(|| (), |_| get_alerts());
    // Refresh every 5 s in the browser: alerts move on their own.
    #[cfg(feature = "hydrate")]
    {
        let _ = set_interval_with_handle(move || data.refetch(), std::time::Duration::from_secs(5));
    }
    let message = RwSignal::new(None::<String>);
    view! {
        <div class="page-head">
            <h1>"Alerts"</h1>
            <AttentionToggle/>
        </div>
        <TokenSettings/>
        {move || message.get().map(|m| view! { <p class="problem" role="alert">{m}</p> })}
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok((page, rules)) => view! { <AlertsBody page rules data message/> }.erase(),
                    Err(e) => view! { <Problem message=format!("Could not load alerts: {e}")/> }.erase(),
                }
            })}
        </Suspense>
    }
}

type Data = PageResource<Result<(AlertsPage, Vec<Value>), ServerFnError>>;

/// Runs a write and refreshes; an error shows in `message`.
fn act(
    data: Data,
    message: RwSignal<Option<String>>,
    method: &'static str,
    url: String,
    body: Value,
) {
    leptos::task::spawn_local(async move {
        match fetch::send(method, &url, body).await {
            Ok(_) => {
                message.set(None);
                data.refetch();
            }
            Err(e) => message.set(Some(e)),
        }
    });
}

#[component]
fn AlertsBody(
    page: AlertsPage,
    rules: Vec<Value>,
    data: Data,
    message: RwSignal<Option<String>>,
) -> impl IntoView {
    let active = page
        .active
        .iter()
        .map(|a| view! { <ActiveAlert a=a.clone() data message/> })
        .collect_view();
    let silences = page
        .silences
        .iter()
        .map(|s| {
            let id = s.id;
            view! {
                <tr>
                    <td>{s.rule.clone().unwrap_or_else(|| "any rule".into())}</td>
                    <td>{s.scope.clone().unwrap_or_else(|| "any scope".into())}</td>
                    <td>{format::date_time(s.ends_at)}</td>
                    <td>{format!("{}: {}", s.created_by, s.comment)}</td>
                    <td><button on:click=move |_| act(data, message, "DELETE", format!("/api/v1/silences/{id}"), Value::Null)>"End"</button></td>
                </tr>
            }
        })
        .collect_view();
    let recent = page
        .recent
        .iter()
        .take(50)
        .map(|a| {
            view! {
                <tr>
                    <td>{a.resolved_at.map(format::date_time).unwrap_or_default()}</td>
                    <td>{a.rule.clone()}</td>
                    <td>{a.summary.clone()}</td>
                    <td>{a.resolved_at.zip(a.firing_at).map(|(r, f)| format::dur_ms(r - f)).unwrap_or_default()}</td>
                </tr>
            }
        })
        .collect_view();
    let rule_rows = rules
        .iter()
        .map(|r| view! { <RuleRow rule=r.clone() data message/> })
        .collect_view();
    let empty = page.active.is_empty();
    view! {
        <section class="panel" aria-labelledby="active-h">
            <h2 id="active-h">"Active"</h2>
            {empty.then(|| view! { <p class="muted" data-testid="no-active">"No alert is pending or firing."</p> })}
            <ul class="alerts">{active}</ul>
        </section>
        <section class="panel" aria-labelledby="sil-h">
            <h2 id="sil-h">"Silences"</h2>
            <table class="list wide">
                <thead><tr><th scope="col">"Rule"</th><th scope="col">"Scope"</th><th scope="col">"Until"</th><th scope="col">"Why"</th><th scope="col"></th></tr></thead>
                <tbody>{silences}</tbody>
            </table>
            <NewSilence rules=rules.clone() data message/>
        </section>
        <section class="panel" aria-labelledby="rules-h">
            <h2 id="rules-h">"Rules"</h2>
            <p class="muted">"Built-in rules and those from the configuration file can be changed here; a change is stored and overrides them. See docs/alerts.md for every metric and scope."</p>
            <table class="list wide rules">
                <thead><tr>
                    <th scope="col">"Rule"</th><th scope="col">"Condition"</th><th scope="col">"Scope"</th>
                    <th scope="col">"For"</th><th scope="col">"Severity"</th><th scope="col">"Origin"</th><th scope="col"></th>
                </tr></thead>
                <tbody>{rule_rows}</tbody>
            </table>
            <NewRule data message/>
        </section>
        <section class="panel" aria-labelledby="recent-h">
            <h2 id="recent-h">"Recently resolved"</h2>
            <table class="list wide">
                <thead><tr><th scope="col">"Resolved"</th><th scope="col">"Rule"</th><th scope="col">"What"</th><th scope="col">"Lasted"</th></tr></thead>
                <tbody>{recent}</tbody>
            </table>
        </section>
    }
}

#[component]
fn ActiveAlert(a: AlertView, data: Data, message: RwSignal<Option<String>>) -> impl IntoView {
    let by = RwSignal::new(String::new());
    let comment = RwSignal::new(String::new());
    let id = a.id;
    let cls = match (a.state, a.severity) {
        (AlertState::Firing, Severity::Critical) => "alert critical",
        (AlertState::Firing, _) => "alert warning",
        _ => "alert pending",
    };
    let firing = a.state == AlertState::Firing;
    let (rule, scope) = (a.rule.clone(), a.scope.clone());
    let silence = move |_| {
        act(
            data,
            message,
            "POST",
            "/api/v1/silences".into(),
            json!({"rule": rule, "scope": scope, "duration": "1h",
                   "created_by": if by.get_untracked().is_empty() { "dashboard".into() } else { by.get_untracked() },
                   "comment": comment.get_untracked()}),
        )
    };
    view! {
        <li class=cls data-testid=format!("alert-{id}")>
            <div>
                <strong>{format!("{:?}", a.state).to_lowercase()}</strong>" "
                {a.summary.clone()}
                " " <a href=format!("/api/v1/alerts/{id}/chart.png") target="_blank">"chart"</a>
            </div>
            {a.muted.clone().map(|m| view! { <div class="muted">{m}</div> })}
            {a.acked.clone().map(|k| view! { <div class="muted">{format!("Acknowledged by {} at {}: {}", k.by, format::clock(k.at), k.comment)}</div> })}
            {(firing && a.acked.is_none()).then(|| view! {
                <form class="inline" on:submit=move |ev| {
                    ev.prevent_default();
                    act(data, message, "POST", format!("/api/v1/alerts/{id}/ack"),
                        json!({"by": by.get_untracked(), "comment": comment.get_untracked()}));
                }>
                    <input required placeholder="your name" aria-label="Your name" prop:value=move || by.get() on:input=move |e| by.set(event_target_value(&e))/>
                    <input placeholder="comment" aria-label="Comment" prop:value=move || comment.get() on:input=move |e| comment.set(event_target_value(&e))/>
                    <button type="submit">"Acknowledge"</button>
                    <button type="button" on:click=silence>"Silence 1 h"</button>
                </form>
            })}
        </li>
    }
}

#[component]
fn NewSilence(rules: Vec<Value>, data: Data, message: RwSignal<Option<String>>) -> impl IntoView {
    let rule = RwSignal::new(String::new());
    let scope = RwSignal::new(String::new());
    let duration = RwSignal::new("1h".to_string());
    let by = RwSignal::new(String::new());
    let comment = RwSignal::new(String::new());
    let options = rules
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .map(|n| view! { <option value=n.clone()>{n.clone()}</option> })
        .collect_view();
    view! {
        <form class="inline" on:submit=move |ev| {
            ev.prevent_default();
            let opt = |s: String| if s.is_empty() { Value::Null } else { Value::String(s) };
            act(data, message, "POST", "/api/v1/silences".into(), json!({
                "rule": opt(rule.get_untracked()), "scope": opt(scope.get_untracked()),
                "duration": duration.get_untracked(), "created_by": by.get_untracked(), "comment": comment.get_untracked()}));
        }>
            <select aria-label="Rule" on:change=move |e| rule.set(event_target_value(&e))>
                <option value="">"any rule"</option>
                {options}
            </select>
            <input placeholder="scope, e.g. mailing:9001" aria-label="Scope" on:input=move |e| scope.set(event_target_value(&e))/>
            <select aria-label="Duration" on:change=move |e| duration.set(event_target_value(&e))>
                <option value="1h">"1 hour"</option>
                <option value="4h">"4 hours"</option>
                <option value="1d">"1 day"</option>
                <option value="30m">"30 minutes"</option>
            </select>
            <input required placeholder="your name" aria-label="Your name" on:input=move |e| by.set(event_target_value(&e))/>
            <input placeholder="why" aria-label="Why" on:input=move |e| comment.set(event_target_value(&e))/>
            <button type="submit">"Add silence"</button>
        </form>
    }
}

fn condition(r: &Value) -> String {
    match r["kind"].as_str().unwrap_or("threshold") {
        "silence" => format!("silent (at least {})", r["after"].as_str().unwrap_or("30s")),
        "feed_dead" => format!("no webhook for {}", r["after"].as_str().unwrap_or("10m")),
        _ => {
            let (op, v) = match (r["above"].as_f64(), r["below"].as_f64()) {
                (Some(a), _) => (">", a),
                (_, Some(b)) => ("<", b),
                _ => ("?", 0.0),
            };
            format!(
                "{} over {} {op} {v}{}",
                r["metric"].as_str().unwrap_or("?"),
                r["window"].as_str().unwrap_or("5m"),
                r["min_sent"]
                    .as_u64()
                    .map_or(String::new(), |m| format!(" (after {m} sends)"))
            )
        }
    }
}

#[component]
fn RuleRow(rule: Value, data: Data, message: RwSignal<Option<String>>) -> impl IntoView {
    let editing = RwSignal::new(false);
    let text = RwSignal::new(String::new());
    let name = rule["name"].as_str().unwrap_or_default().to_string();
    let enabled = rule["enabled"].as_bool().unwrap_or(true);
    let mut def = rule.clone();
    if let Some(o) = def.as_object_mut() {
        o.remove("origin");
    }
    let pretty = serde_json::to_string_pretty(&def).unwrap_or_default();
    let toggle = {
        let mut d = def.clone();
        let url = format!("/api/v1/alert-rules/{name}");
        move |_| {
            d["enabled"] = Value::Bool(!enabled);
            act(data, message, "PUT", url.clone(), d.clone());
        }
    };
    let save = {
        let url = format!("/api/v1/alert-rules/{name}");
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            match serde_json::from_str::<Value>(&text.get_untracked()) {
                Ok(v) => act(data, message, "PUT", url.clone(), v),
                Err(e) => message.set(Some(format!("not valid JSON: {e}"))),
            }
        }
    };
    view! {
        <tr class=if enabled { "" } else { "disabled" }>
            <th scope="row">{name.clone()}<div class="muted small">{rule["description"].as_str().unwrap_or_default().to_string()}</div></th>
            <td>{condition(&rule)}</td>
            <td>{rule["scope"].as_str().unwrap_or("overall").to_string()}</td>
            <td>{rule["for"].as_str().unwrap_or("—").to_string()}</td>
            <td>{rule["severity"].as_str().unwrap_or("warning").to_string()}</td>
            <td>{rule["origin"].as_str().unwrap_or_default().to_string()}</td>
            <td>
                <button on:click=toggle>{if enabled { "Disable" } else { "Enable" }}</button>
                <button on:click={
                    let pretty = pretty.clone();
                    move |_| { text.set(pretty.clone()); editing.update(|e| *e = !*e); }
                }>"Edit"</button>
            </td>
        </tr>
        {move || editing.get().then(|| view! {
            <tr><td colspan="7">
                <form on:submit=save.clone()>
                    <textarea rows="12" class="code" aria-label="Rule definition (JSON)"
                        prop:value=move || text.get() on:input=move |e| text.set(event_target_value(&e))></textarea>
                    <button type="submit">"Save rule"</button>
                </form>
            </td></tr>
        })}
    }
}

#[component]
fn NewRule(data: Data, message: RwSignal<Option<String>>) -> impl IntoView {
    let template = serde_json::to_string_pretty(&json!({
        "name": "campaign-unsubscribes",
        "metric": "unsubscribe_rate",
        "scope": "each:campaign",
        "window": "1h",
        "above": 0.01,
        "for": "5m",
        "min_sent": 1000,
        "severity": "warning"
    }))
    .unwrap_or_default();
    let text = RwSignal::new(template);
    view! {
        <details>
            <summary>"Add a rule"</summary>
            <form on:submit=move |ev| {
                ev.prevent_default();
                match serde_json::from_str::<Value>(&text.get_untracked()) {
                    Ok(v) => {
                        let name = v["name"].as_str().unwrap_or_default().to_string();
                        act(data, message, "PUT", format!("/api/v1/alert-rules/{name}"), v);
                    }
                    Err(e) => message.set(Some(format!("not valid JSON: {e}"))),
                }
            }>
                <textarea rows="11" class="code" aria-label="New rule (JSON)"
                    prop:value=move || text.get() on:input=move |e| text.set(event_target_value(&e))></textarea>
                <button type="submit">"Add rule"</button>
            </form>
        </details>
    }
}

/// Where the user keeps the API token that write requests need.
#[component]
pub fn TokenSettings() -> impl IntoView {
    let token = RwSignal::new(String::new());
    let saved = RwSignal::new(false);
    view! {
        <details class="settings">
            <summary>"API token for changes"</summary>
            <p class="muted">"When mailpulse is configured with an API token, acknowledging, silencing and editing need it. It is kept in this browser only."</p>
            <form class="inline" on:submit=move |ev| {
                ev.prevent_default();
                fetch::store_token(&token.get_untracked());
                saved.set(true);
            }>
                <input type="password" aria-label="API token" placeholder="token" on:input=move |e| token.set(event_target_value(&e))/>
                <button type="submit">"Save"</button>
                {move || saved.get().then(|| view! { <span class="muted">"saved"</span> })}
            </form>
        </details>
    }
}
