//! The overview (`/`): tiles, live charts of the last hour (or history from
//! the rollups), transactional health, active alerts, mailings sending now.

use super::data::{self, Range};
use super::topic_page;
use crate::components::chart::{Chart, Line, Unit};
use crate::components::erase::EraseView;
use crate::components::format;
use crate::components::markup::{dur_or_dash, health_parts, Markup};
use crate::protocol::{
    AlertState, EventType, MailingRow, OverviewState, Topic, TopicState, TransactionalHealth,
    Window,
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
    topic_page(Topic::Overview, "the overview", |state| {
        view! { <OverviewBody state/> }.erase()
    })
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
    let tx = Memo::new(move |_| o.with(|o| o.transactional.clone()));
    let lag = move || o.with(|o| o.summary.overall.window(Window::M5).lag);

    let tiles = move || {
        let s = stats();
        let (c, r) = (s.counters, s.counters.rates());
        let win = format!("last {}", window.get().label());
        let of_sent = |n| format!("{} of {}", format::count(n), format::count(c.sent));
        let tx = tx.get();
        let oldest = tx.oldest_queued_ms.map_or("nothing waiting".into(), |a| {
            format!("oldest {}", format::dur_ms(a))
        });
        let arriving = o.with(|o| format!("{:.1} events/s arriving", o.feed.events_per_sec));
        let sends = c.sent as f64 * 60.0 / window.get().secs() as f64;
        let mut h = Markup::new();
        h.tile(
            "Sends / min",
            "tile-sends",
            &format::per_min(sends),
            &win,
            None,
        )
        .tile(
            "Hard bounces",
            "tile-hard-bounce",
            &format::pct(r.hard_bounce),
            &of_sent(c.hard_bounces),
            None,
        )
        .tile(
            "Soft bounces",
            "tile-soft-bounce",
            &format::pct(r.soft_bounce),
            &of_sent(c.soft_bounces),
            None,
        )
        .tile(
            "Open rate",
            "tile-open-rate",
            &format::pct(r.open),
            &format!(
                "{} unique · {} opens",
                format::count(c.unique_opens),
                format::count(c.opens)
            ),
            None,
        )
        .tile(
            "Click rate",
            "tile-click-rate",
            &format::pct(r.click),
            &format!(
                "{} unique · {} clicks",
                format::count(c.unique_clicks),
                format::count(c.clicks)
            ),
            None,
        )
        .tile(
            "Unsubscribes",
            "tile-unsubscribe",
            &format::pct(r.unsubscribe),
            &format!("{} · {win}", format::count(c.unsubscribes)),
            None,
        )
        .tile(
            "Complaints",
            "tile-complaint",
            &format::pct(r.complaint),
            &format!("{} · {win}", format::count(c.complaints)),
            None,
        )
        .tile(
            "Dispatch delay p95",
            "tile-delay",
            &dur_or_dash(tx.delay.map(|d| d.p95 as i64)),
            "transactional, last 5 min",
            Some(tx.status),
        )
        .tile(
            "Queue depth",
            "tile-queue",
            &format::count(tx.queue_depth),
            &oldest,
            Some(tx.status),
        )
        .tile(
            "Webhook lag p95",
            "tile-lag",
            &dur_or_dash(lag().map(|l| l.p95 as i64)),
            &arriving,
            None,
        );
        h.take()
    };
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
        <section class="tiles" aria-label="Key figures" inner_html=tiles></section>
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

/// Transactional mail at a glance: the traffic light and each mailing.
#[component]
pub fn TxPanel(tx: Memo<TransactionalHealth>) -> impl IntoView {
    let rows = move || {
        tx.with(|tx| {
            let mut h = Markup::new();
            for m in &tx.mailings {
                h.open("tr", &[])
                    .open("th", &[("scope", "row")])
                    .mailing_link(&m.id, m.name.as_deref())
                    .close("th")
                    .open("td", &[])
                    .health(m.status)
                    .close("td")
                    .num(&format::per_min(m.sent_per_min))
                    .num(&format::count(m.queue_depth))
                    .num(&dur_or_dash(m.oldest_queued_ms))
                    .num(&dur_or_dash(m.delay.map(|d| d.p95 as i64)))
                    .close("tr");
            }
            h.take()
        })
    };
    view! {
        <section class="panel" aria-labelledby="tx-h">
            <h2 id="tx-h">
                "Transactional mail "
                <span class=move || format!("light {}", health_parts(tx.get().status).0) data-testid="tx-status">
                    {move || health_parts(tx.get().status).1}
                </span>
            </h2>
            {move || tx.get().mailings.is_empty().then(|| view! { <p class="muted">"No transactional mailing yet. Mark mailings as transactional in the configuration or on their page."</p> })}
            <table class="list">
                <thead><tr>
                    <th scope="col">"Mailing"</th><th scope="col">"Status"</th><th scope="col">"Sends"</th>
                    <th scope="col">"Queued"</th><th scope="col">"Oldest"</th><th scope="col">"Delay p95"</th>
                </tr></thead>
                <tbody inner_html=rows></tbody>
            </table>
            <p><a href="/transactional">"Stuck dispatches and details"</a></p>
        </section>
    }
}

#[component]
pub fn AlertList(alerts: Signal<Vec<crate::protocol::AlertView>>) -> impl IntoView {
    let items = move || {
        alerts.with(|alerts| {
            let mut h = Markup::new();
            for a in alerts {
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
                h.open("li", &[("class", cls)])
                    .el("span", &[("class", "state")], state)
                    .el("span", &[], &a.summary);
                if let Some(m) = &a.muted {
                    h.el("span", &[("class", "muted")], m);
                }
                if let Some(k) = &a.acked {
                    let text = format!("acknowledged by {}: {}", k.by, k.comment);
                    h.el("span", &[("class", "muted")], &text);
                }
                h.close("li");
            }
            h.take()
        })
    };
    view! {
        <section class="panel" aria-labelledby="alerts-h">
            <h2 id="alerts-h">"Active alerts"</h2>
            {move || alerts.get().is_empty().then(|| view! { <p class="muted" data-testid="no-alerts">"None."</p> })}
            <ul class="alerts" inner_html=items></ul>
            <p><a href="/alerts">"All alerts, silences and rules"</a></p>
        </section>
    }
}

/// One row per mailing: name, class, sparkline, then the given cells. The
/// overview's "active" table and the mailings list share it.
pub fn mailing_row(h: &mut Markup, m: &MailingRow, testid: bool) {
    let id = format!("mailing-row-{}", m.id);
    let attrs: &[(&str, &str)] = if testid { &[("data-testid", &id)] } else { &[] };
    h.open("tr", attrs)
        .open("th", &[("scope", "row")])
        .mailing_link(&m.id, m.name.as_deref());
    if m.name.is_some() {
        h.el("span", &[("class", "muted")], &format!(" #{}", m.id));
    }
    h.close("th")
        .open("td", &[])
        .class_badge(m.class)
        .close("td")
        .open("td", &[("class", "spark-cell")])
        .sparkline(&m.sparkline)
        .close("td")
        .num(&format::count(m.totals.sent));
}

#[component]
fn SendingNow(o: Memo<OverviewState>) -> impl IntoView {
    let rows = move || {
        o.with(|o| {
            let mut h = Markup::new();
            for m in &o.mailings {
                let r = m.totals.rates();
                mailing_row(&mut h, m, false);
                h.num(&format::per_min(m.sent_per_min))
                    .num(&format::pct(r.open))
                    .num(&format::pct(r.click))
                    .num(&format::pct(r.bounce))
                    .td(if m.sending { "sending" } else { "" })
                    .close("tr");
            }
            h.take()
        })
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
                <tbody inner_html=rows></tbody>
            </table>
        </section>
    }
}

/// Every event type's total (including the rare ones).
#[component]
fn TypeTable(o: Memo<OverviewState>) -> impl IntoView {
    let rows = move || {
        o.with(|o| {
            let mut h = Markup::new();
            for t in EventType::ALL {
                let id = format!("count-{}", t.as_str());
                let n = format::count(o.summary.overall.totals.of_type(t));
                h.open("tr", &[])
                    .th(t.as_str())
                    .el("td", &[("class", "num"), ("data-testid", &id)], &n)
                    .close("tr");
            }
            h.take()
        })
    };
    view! {
        <section class="panel" aria-labelledby="types-h">
            <h2 id="types-h">"Events by type, in total"</h2>
            <table class="counts"><tbody inner_html=rows></tbody></table>
        </section>
    }
}
