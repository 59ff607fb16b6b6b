//! The overview (`/`): tiles, live charts of the last hour (or history from
//! the rollups), transactional health, active alerts, mailings sending now.

use super::data::{self, Range};
use super::topic_page;
use crate::components::chart::{Chart, Line, Unit};
use crate::components::{class_badge, format, Sparkline, Tile};
use crate::protocol::{
    AlertState, EventType, Health, OverviewState, Topic, TopicState, TransactionalHealth, Window,
};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

pub fn overview_of(s: &TopicState) -> OverviewState {
    match s {
        TopicState::Overview(o) => o.clone(),
        _ => OverviewState::default(),
    }
}

/// The range from `?range=`, live 1 h by default.
pub fn use_range() -> Memo<Range> {
    let q = use_query_map();
    Memo::new(move |_| {
        q.with(|q| q.get("range").and_then(|r| Range::parse(&r)))
            .unwrap_or(Range::H1)
    })
}

#[component]
pub fn RangePicker(range: Memo<Range>) -> impl IntoView {
    let links = Range::ALL
        .into_iter()
        .map(|r| {
            let current = move || (range.get() == r).then_some("true");
            view! {
                <a href=format!("?range={}", r.key()) aria-current=current>{r.label()}</a>
            }
        })
        .collect_view();
    view! { <nav class="range" aria-label="Time range">{links}</nav> }
}

/// Loads history lines (REST, browser only) for non-live ranges.
fn history(
    scope: Signal<String>,
    range: Memo<Range>,
    metrics: &'static [data::HistoryMetric],
) -> RwSignal<Option<Vec<Line>>> {
    let lines = RwSignal::new(None::<Vec<Line>>);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let r = range.get();
        let scope = scope.get();
        lines.set(None);
        if r.live() {
            return;
        }
        leptos::task::spawn_local(async move {
            let now = js_sys::Date::now() as i64;
            let mut out = Vec::new();
            for m in metrics {
                let url = format!(
                    "/api/v1/series?scope={}&metric={}&from={}&to={now}&step={}",
                    js_sys::encode_uri_component(&scope),
                    m.metric,
                    now - r.ms(),
                    r.step()
                );
                match crate::fetch::get::<data::History>(&url).await {
                    Ok(h) => out.push(data::history_line(&h, m.label, m.color, m.per_minute)),
                    Err(e) => leptos::logging::warn!("history: {e}"),
                }
            }
            lines.set(Some(out));
        });
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (scope, range, metrics);
    lines
}

/// A chart's lines: from the live state for live ranges (`live` gets the
/// span in ms), from the rollups (fetched by [`history`]) otherwise.
pub fn chart_lines(
    scope: Signal<String>,
    range: Memo<Range>,
    metrics: &'static [data::HistoryMetric],
    live: impl Fn(i64) -> Vec<Line> + Send + Sync + 'static,
) -> Signal<Vec<Line>> {
    let fetched = history(scope, range, metrics);
    Signal::derive(move || {
        let r = range.get();
        if r.live() {
            live(r.ms())
        } else {
            fetched.get().unwrap_or_default()
        }
    })
}

#[component]
pub fn Overview() -> impl IntoView {
    topic_page(
        Topic::Overview,
        "the overview",
        |state| view! { <OverviewBody state/> },
    )
}

#[component]
fn OverviewBody(state: Signal<TopicState>) -> impl IntoView {
    let o = Memo::new(move |_| overview_of(&state.get()));
    let range = use_range();
    let window = Memo::new(move |_| match range.get() {
        Range::M15 => Window::M15,
        Range::H1 => Window::H1,
        _ => Window::H24,
    });
    let stats = move || o.with(|o| o.summary.overall.window(window.get()));
    let rates = move || stats().counters.rates();
    let win_label = move || format!("last {}", window.get().label());
    let tx = Memo::new(move |_| o.with(|o| o.transactional.clone()));
    let lag = move || o.with(|o| o.summary.overall.window(Window::M5).lag);

    let sends_value = Signal::derive(move || {
        format::per_min(stats().counters.sent as f64 * 60.0 / window.get().secs() as f64)
    });
    let span = Signal::derive(move || {
        let now = o.with(|o| o.now);
        (now - range.get().ms().min(3_600_000), now)
    });
    let scope = Signal::derive(|| "overall".to_string());
    let hist_span = Signal::derive(move || {
        let now = o.with(|o| o.now);
        (now - range.get().ms(), now)
    });
    let chart_span = Signal::derive(move || {
        if range.get().live() {
            span.get()
        } else {
            hist_span.get()
        }
    });
    let sends_lines = chart_lines(scope, range, data::SEND_HISTORY, move |span| {
        o.with(|o| data::sends(&o.series, span, o.now))
    });
    let rate_lines = chart_lines(scope, range, data::RATE_HISTORY, move |span| {
        o.with(|o| data::rates(&o.series, span, o.now))
    });
    let delay_lines = Signal::derive(move || {
        o.with(|o| data::delay(&o.series, 3_600_000.min(range.get().ms()), o.now))
    });

    view! {
        <div class="page-head">
            <h1>"Overview"</h1>
            <RangePicker range/>
        </div>
        <section class="tiles" aria-label="Key figures">
            <Tile label="Sends / min" id="tile-sends" value=sends_value note=Signal::derive(win_label)/>
            <Tile label="Hard bounces" id="tile-hard-bounce"
                value=Signal::derive(move || format::pct(rates().hard_bounce))
                note=Signal::derive(move || format!("{} of {}", format::count(stats().counters.hard_bounces), format::count(stats().counters.sent)))/>
            <Tile label="Soft bounces" id="tile-soft-bounce"
                value=Signal::derive(move || format::pct(rates().soft_bounce))
                note=Signal::derive(move || format!("{} of {}", format::count(stats().counters.soft_bounces), format::count(stats().counters.sent)))/>
            <Tile label="Open rate" id="tile-open-rate"
                value=Signal::derive(move || format::pct(rates().open))
                note=Signal::derive(move || format!("{} unique · {} opens", format::count(stats().counters.unique_opens), format::count(stats().counters.opens)))/>
            <Tile label="Click rate" id="tile-click-rate"
                value=Signal::derive(move || format::pct(rates().click))
                note=Signal::derive(move || format!("{} unique · {} clicks", format::count(stats().counters.unique_clicks), format::count(stats().counters.clicks)))/>
            <Tile label="Unsubscribes" id="tile-unsubscribe"
                value=Signal::derive(move || format::pct(rates().unsubscribe))
                note=Signal::derive(move || format!("{} · {}", format::count(stats().counters.unsubscribes), win_label()))/>
            <Tile label="Complaints" id="tile-complaint"
                value=Signal::derive(move || format::pct(rates().complaint))
                note=Signal::derive(move || format!("{} · {}", format::count(stats().counters.complaints), win_label()))/>
            <Tile label="Dispatch delay p95" id="tile-delay"
                value=Signal::derive(move || tx.with(|t| t.delay.map_or("—".into(), |d| format::dur_ms(d.p95 as i64))))
                note=Signal::derive(|| "transactional, last 5 min".to_string())
                health=Signal::derive(move || tx.with(|t| t.status))/>
            <Tile label="Queue depth" id="tile-queue"
                value=Signal::derive(move || tx.with(|t| format::count(t.queue_depth)))
                note=Signal::derive(move || tx.with(|t| t.oldest_queued_ms.map_or("nothing waiting".into(), |a| format!("oldest {}", format::dur_ms(a)))))
                health=Signal::derive(move || tx.with(|t| t.status))/>
            <Tile label="Webhook lag p95" id="tile-lag"
                value=Signal::derive(move || lag().map_or("—".into(), |l| format::dur_ms(l.p95 as i64)))
                note=Signal::derive(move || o.with(|o| format!("{:.1} events/s arriving", o.feed.events_per_sec)))/>
        </section>
        <section class="charts" aria-label="Charts">
            <Chart title="Sends per minute" id="chart-sends" lines=sends_lines unit=Unit::PerMin span=chart_span/>
            <Chart title="Rates (rolling 5 min)" id="chart-rates" lines=rate_lines unit=Unit::Ratio span=chart_span/>
            <Chart title="Transactional dispatch delay (live, last hour at most)" id="chart-delay"
                lines=delay_lines unit=Unit::Millis span=span/>
        </section>
        <div class="columns">
            <TxPanel tx/>
            <AlertList alerts=Signal::derive(move || o.with(|o| o.alerts.clone()))/>
        </div>
        <SendingNow o/>
        <TypeTable o/>
    }
}

fn health_label(h: Health) -> (&'static str, &'static str) {
    match h {
        Health::Ok => ("ok", "OK"),
        Health::Warning => ("warning", "WARNING"),
        Health::Critical => ("critical", "CRITICAL"),
    }
}

/// Transactional mail at a glance: the traffic light and each mailing.
#[component]
pub fn TxPanel(tx: Memo<TransactionalHealth>) -> impl IntoView {
    let rows = move || {
        tx.get()
            .mailings
            .into_iter()
            .map(|m| {
                let (cls, text) = health_label(m.status);
                view! {
                    <tr>
                        <th scope="row"><a href=format!("/mailings/{}", m.id)>{m.name.clone().unwrap_or_else(|| m.id.clone())}</a></th>
                        <td><span class=format!("dot {cls}")></span>{text}</td>
                        <td class="num">{format::per_min(m.sent_per_min)}</td>
                        <td class="num">{format::count(m.queue_depth)}</td>
                        <td class="num">{m.oldest_queued_ms.map_or("—".into(), format::dur_ms)}</td>
                        <td class="num">{m.delay.map_or("—".into(), |d| format::dur_ms(d.p95 as i64))}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <section class="panel" aria-labelledby="tx-h">
            <h2 id="tx-h">
                "Transactional mail "
                <span class=move || format!("light {}", health_label(tx.get().status).0) data-testid="tx-status">
                    {move || health_label(tx.get().status).1}
                </span>
            </h2>
            {move || tx.get().mailings.is_empty().then(|| view! { <p class="muted">"No transactional mailing yet. Mark mailings as transactional in the configuration or on their page."</p> })}
            <table class="list">
                <thead><tr>
                    <th scope="col">"Mailing"</th><th scope="col">"Status"</th><th scope="col">"Sends"</th>
                    <th scope="col">"Queued"</th><th scope="col">"Oldest"</th><th scope="col">"Delay p95"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <p><a href="/transactional">"Stuck dispatches and details"</a></p>
        </section>
    }
}

#[component]
pub fn AlertList(alerts: Signal<Vec<crate::protocol::AlertView>>) -> impl IntoView {
    let items = move || {
        alerts
            .get()
            .into_iter()
            .map(|a| {
                let cls = match (a.state, a.severity) {
                    (AlertState::Firing, crate::protocol::Severity::Critical) => "alert critical",
                    (AlertState::Firing, _) => "alert warning",
                    _ => "alert pending",
                };
                let state = match a.state {
                    AlertState::Pending => "pending",
                    AlertState::Firing => "firing",
                    AlertState::Resolved => "resolved",
                };
                view! {
                    <li class=cls>
                        <span class="state">{state}</span>
                        <span>{a.summary.clone()}</span>
                        {a.muted.clone().map(|m| view! { <span class="muted">{m}</span> })}
                        {a.acked.clone().map(|k| view! { <span class="muted">{format!("acknowledged by {}: {}", k.by, k.comment)}</span> })}
                    </li>
                }
            })
            .collect_view()
    };
    view! {
        <section class="panel" aria-labelledby="alerts-h">
            <h2 id="alerts-h">"Active alerts"</h2>
            {move || alerts.get().is_empty().then(|| view! { <p class="muted" data-testid="no-alerts">"None."</p> })}
            <ul class="alerts">{items}</ul>
            <p><a href="/alerts">"All alerts, silences and rules"</a></p>
        </section>
    }
}

#[component]
fn SendingNow(o: Memo<OverviewState>) -> impl IntoView {
    let rows = move || {
        o.get()
            .mailings
            .into_iter()
            .map(|m| {
                let r = m.totals.rates();
                let spark = m.sparkline.clone();
                view! {
                    <tr>
                        <th scope="row"><a href=format!("/mailings/{}", m.id)>{m.name.clone().unwrap_or_else(|| m.id.clone())}</a></th>
                        <td>{class_badge(m.class)}</td>
                        <td class="spark-cell"><Sparkline values=Signal::derive(move || spark.clone())/></td>
                        <td class="num">{format::count(m.totals.sent)}</td>
                        <td class="num">{format::per_min(m.sent_per_min)}</td>
                        <td class="num">{format::pct(r.open)}</td>
                        <td class="num">{format::pct(r.click)}</td>
                        <td class="num">{format::pct(r.bounce)}</td>
                        <td>{if m.sending { "sending" } else { "" }}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <section class="panel" aria-labelledby="sending-h">
            <h2 id="sending-h">"Mailings active in the last hour"</h2>
            <table class="list">
                <thead><tr>
                    <th scope="col">"Mailing"</th><th scope="col">"Class"</th><th scope="col">"Last 30 min"</th>
                    <th scope="col">"Sent"</th><th scope="col">"Now"</th><th scope="col">"Open"</th>
                    <th scope="col">"Click"</th><th scope="col">"Bounce"</th><th scope="col"><span class="sr-only">"State"</span></th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

/// Every event type's total (including the rare ones).
#[component]
fn TypeTable(o: Memo<OverviewState>) -> impl IntoView {
    let rows = EventType::ALL
        .into_iter()
        .map(|t| {
            let value = move || format::count(o.with(|o| o.summary.overall.totals.of_type(t)));
            view! {
                <tr>
                    <th scope="row">{t.as_str()}</th>
                    <td class="num" data-testid=format!("count-{}", t.as_str())>{value}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel" aria-labelledby="types-h">
            <h2 id="types-h">"Events by type, in total"</h2>
            <table class="counts"><tbody>{rows}</tbody></table>
        </section>
    }
}
