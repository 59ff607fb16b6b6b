//! Alerts (`/alerts`): active alerts with acknowledge and silence, active
//! silences, recent (resolved) alerts, and the rules — viewable and
//! editable. Changes go through the REST API with the API token saved on
//! this browser, if the server needs one.
//!
//! Rules arrive summarised by the server (condition as text, definition as
//! JSON text), so the browser never holds a JSON tree; the tables are
//! markup with one delegated click handler each (see `components::markup`).

use super::resource::{resource, PageResource};
use super::Problem;
use crate::components::erase::EraseView;
use crate::components::markup::{clicked, Markup};
use crate::components::{format, set_from, value_of, AttentionToggle};
use crate::fetch;
use crate::protocol::{AlertState, AlertView, Severity};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

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

/// A rule as the page shows it, prepared on the server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleSummary {
    pub name: String,
    pub description: String,
    /// "bounce_rate over 5m > 0.05 (after 100 sends)", "no webhook for 10m".
    pub condition: String,
    pub scope: String,
    pub for_: String,
    pub severity: String,
    /// Built in, configuration file, or set through the API.
    pub origin: String,
    pub enabled: bool,
    /// The definition (without `origin`) as pretty JSON, for the editor.
    pub definition: String,
    /// The definition with `enabled` flipped, for the enable/disable button.
    pub toggled: String,
}

#[cfg(feature = "ssr")]
impl RuleSummary {
    /// Summarises one rule of `GET /api/v1/alert-rules`.
    pub fn of(rule: &serde_json::Value) -> RuleSummary {
        let text = |k: &str, default: &str| rule[k].as_str().unwrap_or(default).to_string();
        let enabled = rule["enabled"].as_bool().unwrap_or(true);
        let mut def = rule.clone();
        if let Some(o) = def.as_object_mut() {
            o.remove("origin");
        }
        let definition = serde_json::to_string_pretty(&def).unwrap_or_default();
        def["enabled"] = serde_json::Value::Bool(!enabled);
        RuleSummary {
            name: text("name", ""),
            description: text("description", ""),
            condition: condition(rule),
            scope: text("scope", "overall"),
            for_: text("for", "—"),
            severity: text("severity", "warning"),
            origin: text("origin", ""),
            enabled,
            definition,
            toggled: def.to_string(),
        }
    }
}

#[cfg(feature = "ssr")]
fn condition(r: &serde_json::Value) -> String {
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

/// The alerts, silences and rules (as the REST API lists them).
#[server(prefix = "/_mp", endpoint = "alerts")]
pub async fn get_alerts() -> Result<(AlertsPage, Vec<RuleSummary>), ServerFnError> {
    let v = super::views()?
        .0
        .alerts()
        .await
        .map_err(ServerFnError::new)?;
    let page: AlertsPage = serde_json::from_value(v["alerts"].clone())
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let rules = v["rules"]
        .as_array()
        .map(|rules| rules.iter().map(RuleSummary::of).collect())
        .unwrap_or_default();
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

type Data = PageResource<Result<(AlertsPage, Vec<RuleSummary>), ServerFnError>>;

/// Runs a write (`body` is JSON text) and refreshes; an error shows in
/// `message`.
fn act(
    data: Data,
    message: RwSignal<Option<String>>,
    method: &'static str,
    url: String,
    body: String,
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

/// `POST /api/v1/alerts/{id}/ack`.
#[derive(Serialize)]
struct Ack {
    by: String,
    comment: String,
}

/// `POST /api/v1/silences`.
#[derive(Serialize)]
struct NewSilenceBody {
    rule: Option<String>,
    scope: Option<String>,
    duration: String,
    created_by: String,
    comment: String,
}

fn json<B: Serialize>(body: &B) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn silences_markup(silences: &[SilenceView]) -> String {
    let mut h = Markup::new();
    for s in silences {
        let id = s.id.to_string();
        h.open("tr", &[])
            .td(s.rule.as_deref().unwrap_or("any rule"))
            .td(s.scope.as_deref().unwrap_or("any scope"))
            .td(&format::date_time(s.ends_at))
            .td(&format!("{}: {}", s.created_by, s.comment))
            .open("td", &[])
            .data_button("data-end-silence", &id, "End")
            .close("td")
            .close("tr");
    }
    h.take()
}

fn rules_markup(rules: &[RuleSummary]) -> String {
    let mut h = Markup::new();
    for (i, r) in rules.iter().enumerate() {
        let i = i.to_string();
        h.open("tr", &[("class", if r.enabled { "" } else { "disabled" })])
            .open("th", &[("scope", "row")])
            .text(&r.name)
            .el("div", &[("class", "muted small")], &r.description)
            .close("th")
            .td(&r.condition)
            .td(&r.scope)
            .td(&r.for_)
            .td(&r.severity)
            .td(&r.origin)
            .open("td", &[])
            .data_button(
                "data-toggle-rule",
                &i,
                if r.enabled { "Disable" } else { "Enable" },
            )
            .text(" ")
            .data_button("data-edit-rule", &i, "Edit")
            .close("td")
            .close("tr");
    }
    h.take()
}

fn recent_markup(recent: &[AlertView]) -> String {
    let mut h = Markup::new();
    for a in recent.iter().take(50) {
        let lasted = a
            .resolved_at
            .zip(a.firing_at)
            .map(|(r, f)| format::dur_ms(r - f));
        h.open("tr", &[])
            .td(&a.resolved_at.map(format::date_time).unwrap_or_default())
            .td(&a.rule)
            .td(&a.summary)
            .td(&lasted.unwrap_or_default())
            .close("tr");
    }
    h.take()
}

#[component]
fn AlertsBody(
    page: AlertsPage,
    rules: Vec<RuleSummary>,
    data: Data,
    message: RwSignal<Option<String>>,
) -> impl IntoView {
    let active = page
        .active
        .iter()
        .map(|a| view! { <ActiveAlert a=a.clone() data message/> })
        .collect_view();
    let end_silence = move |ev: leptos::ev::MouseEvent| {
        if let Some(id) = clicked(&ev, "data-end-silence") {
            act(
                data,
                message,
                "DELETE",
                format!("/api/v1/silences/{id}"),
                "null".into(),
            );
        }
    };
    // The rule being edited (its index), and the editor's text.
    let editing = RwSignal::new(None::<usize>);
    let text = RwSignal::new(String::new());
    let rules = StoredValue::new(rules);
    let rule_click = move |ev: leptos::ev::MouseEvent| {
        let index = |attr| clicked(&ev, attr).and_then(|i| i.parse::<usize>().ok());
        if let Some(i) = index("data-toggle-rule") {
            if let Some(r) = rules.with_value(|rs| rs.get(i).cloned()) {
                act(data, message, "PUT", rule_url(&r.name), r.toggled);
            }
        } else if let Some(i) = index("data-edit-rule") {
            if let Some(def) = rules.with_value(|rs| rs.get(i).map(|r| r.definition.clone())) {
                text.set(def);
                editing.update(|e| *e = if *e == Some(i) { None } else { Some(i) });
            }
        }
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = editing
            .get_untracked()
            .and_then(|i| rules.with_value(|rs| rs.get(i).map(|r| r.name.clone())));
        if let Some(name) = name {
            act(data, message, "PUT", rule_url(&name), text.get_untracked());
        }
    };
    let editor = move || {
        let i = editing.get()?;
        let name = rules.with_value(|rs| rs.get(i).map(|r| r.name.clone()))?;
        Some(view! {
            <form on:submit=save>
                <h3>{format!("Rule {name}")}</h3>
                <textarea rows="12" class="code" aria-label="Rule definition (JSON)"
                    prop:value=value_of(text) on:input=set_from(text)></textarea>
                <button type="submit">"Save rule"</button>
                " " <button type="button" on:click=move |_| editing.set(None)>"Cancel"</button>
            </form>
        })
    };
    let names: Vec<String> = rules.with_value(|rs| rs.iter().map(|r| r.name.clone()).collect());
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
                <tbody on:click=end_silence inner_html=silences_markup(&page.silences)></tbody>
            </table>
            <NewSilence names data message/>
        </section>
        <section class="panel" aria-labelledby="rules-h">
            <h2 id="rules-h">"Rules"</h2>
            <p class="muted">"Built-in rules and those from the configuration file can be changed here; a change is stored and overrides them. See docs/alerts.md for every metric and scope."</p>
            <table class="list wide rules">
                <thead><tr>
                    <th scope="col">"Rule"</th><th scope="col">"Condition"</th><th scope="col">"Scope"</th>
                    <th scope="col">"For"</th><th scope="col">"Severity"</th><th scope="col">"Origin"</th><th scope="col"></th>
                </tr></thead>
                <tbody on:click=rule_click inner_html=rules.with_value(|rs| rules_markup(rs))></tbody>
            </table>
            {editor}
            <NewRule data message/>
        </section>
        <section class="panel" aria-labelledby="recent-h">
            <h2 id="recent-h">"Recently resolved"</h2>
            <table class="list wide">
                <thead><tr><th scope="col">"Resolved"</th><th scope="col">"Rule"</th><th scope="col">"What"</th><th scope="col">"Lasted"</th></tr></thead>
                <tbody inner_html=recent_markup(&page.recent)></tbody>
            </table>
        </section>
    }
}

fn rule_url(name: &str) -> String {
    format!(
        "/api/v1/alert-rules/{}",
        crate::components::markup::urlencode(name)
    )
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
        let by = by.get_untracked();
        let body = NewSilenceBody {
            rule: Some(rule.clone()),
            scope: Some(scope.clone()),
            duration: "1h".into(),
            created_by: if by.is_empty() {
                "dashboard".into()
            } else {
                by
            },
            comment: comment.get_untracked(),
        };
        act(
            data,
            message,
            "POST",
            "/api/v1/silences".into(),
            json(&body),
        );
    };
    let mut notes = Markup::new();
    if let Some(m) = &a.muted {
        notes.el("div", &[("class", "muted")], m);
    }
    if let Some(k) = &a.acked {
        let text = format!(
            "Acknowledged by {} at {}: {}",
            k.by,
            format::clock(k.at),
            k.comment
        );
        notes.el("div", &[("class", "muted")], &text);
    }
    view! {
        <li class=cls data-testid=format!("alert-{id}")>
            <div>
                <strong>{format!("{:?}", a.state).to_lowercase()}</strong>" "
                {a.summary.clone()}
                " " <a href=format!("/api/v1/alerts/{id}/chart.png") target="_blank">"chart"</a>
            </div>
            <div inner_html=notes.take()></div>
            {(firing && a.acked.is_none()).then(|| view! {
                <form class="inline" on:submit=move |ev| {
                    ev.prevent_default();
                    let body = Ack { by: by.get_untracked(), comment: comment.get_untracked() };
                    act(data, message, "POST", format!("/api/v1/alerts/{id}/ack"), json(&body));
                }>
                    <input required placeholder="your name" aria-label="Your name" on:input=set_from(by)/>
                    <input placeholder="comment" aria-label="Comment" on:input=set_from(comment)/>
                    <button type="submit">"Acknowledge"</button>
                    <button type="button" on:click=silence>"Silence 1 h"</button>
                </form>
            })}
        </li>
    }
}

#[component]
fn NewSilence(names: Vec<String>, data: Data, message: RwSignal<Option<String>>) -> impl IntoView {
    let rule = RwSignal::new(String::new());
    let scope = RwSignal::new(String::new());
    let duration = RwSignal::new("1h".to_string());
    let by = RwSignal::new(String::new());
    let comment = RwSignal::new(String::new());
    let mut options = Markup::new();
    options.el("option", &[("value", "")], "any rule");
    for n in &names {
        options.el("option", &[("value", n)], n);
    }
    view! {
        <form class="inline" on:submit=move |ev| {
            ev.prevent_default();
            let body = NewSilenceBody {
                rule: some(rule.get_untracked()),
                scope: some(scope.get_untracked()),
                duration: duration.get_untracked(),
                created_by: by.get_untracked(),
                comment: comment.get_untracked(),
            };
            act(data, message, "POST", "/api/v1/silences".into(), json(&body));
        }>
            <select aria-label="Rule" on:change=set_from(rule) inner_html=options.take()></select>
            <input placeholder="scope, e.g. mailing:9001" aria-label="Scope" on:input=set_from(scope)/>
            <select aria-label="Duration" on:change=set_from(duration)>
                <option value="1h">"1 hour"</option>
                <option value="4h">"4 hours"</option>
                <option value="1d">"1 day"</option>
                <option value="30m">"30 minutes"</option>
            </select>
            <input required placeholder="your name" aria-label="Your name" on:input=set_from(by)/>
            <input placeholder="why" aria-label="Why" on:input=set_from(comment)/>
            <button type="submit">"Add silence"</button>
        </form>
    }
}

/// Only the rule's name is read in the browser, for the URL; the server
/// checks the rest and says what is wrong.
#[derive(Deserialize)]
struct Named {
    name: String,
}

const NEW_RULE: &str = r#"{
  "name": "campaign-unsubscribes",
  "metric": "unsubscribe_rate",
  "scope": "each:campaign",
  "window": "1h",
  "above": 0.01,
  "for": "5m",
  "min_sent": 1000,
  "severity": "warning"
}"#;

#[component]
fn NewRule(data: Data, message: RwSignal<Option<String>>) -> impl IntoView {
    let text = RwSignal::new(NEW_RULE.to_string());
    view! {
        <details>
            <summary>"Add a rule"</summary>
            <form on:submit=move |ev| {
                ev.prevent_default();
                let text = text.get_untracked();
                match serde_json::from_str::<Named>(&text) {
                    Ok(r) => act(data, message, "PUT", rule_url(&r.name), text),
                    Err(e) => message.set(Some(format!("not a rule with a name: {e}"))),
                }
            }>
                <textarea rows="11" class="code" aria-label="New rule (JSON)"
                    prop:value=value_of(text) on:input=set_from(text)></textarea>
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
                <input type="password" aria-label="API token" placeholder="token" on:input=set_from(token)/>
                <button type="submit">"Save"</button>
                {move || saved.get().then(|| view! { <span class="muted">"saved"</span> })}
            </form>
        </details>
    }
}
