//! One mailing (`/mailings/{id}`): the funnel, rates over time, bounces by
//! category, reason and receiving domain, the dispatch-delay histogram of a
//! transactional mailing, its latest raw events (addresses masked) and a
//! CSV export.

use super::data;
use super::overview::{chart_lines, use_range, RangePicker};
use super::resource::resource;
use super::{live_state, not_found_status, Problem};
use crate::components::chart::{Chart, Unit};
use crate::components::erase::EraseView;
use crate::components::markup::{dur_or_dash, urlencode, Markup};
use crate::components::{class_badge, format};
use crate::live::use_live;
use crate::protocol::{
    MailingClass, MailingDispatch, MailingState, RawEvent, Topic, TopicState, Window,
};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// How many of the newest raw events the page lists.
const LATEST: usize = 25;

fn mailing_of(s: &TopicState) -> MailingState {
    match s {
        TopicState::Mailing(m) => m.clone(),
        _ => MailingState::default(),
    }
}

#[component]
pub fn Mailing() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").unwrap_or_default()));
    let live = use_live();
    live.follow(Topic::Mailing(id.get_untracked()));
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| live.follow(Topic::Mailing(id.get())));
    let initial = resource(
        move || id.get(),
        |id| super::get_view(format!("mailing:{id}"), LATEST),
    );
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let mailing = id.get();
                match initial.await {
                    Ok(Some(first)) => {
                        let state = live_state(Topic::Mailing(mailing.clone()), first.state);
                        view! { <MailingBody id=mailing state events=first.events/> }.erase()
                    }
                    Ok(None) => {
                        not_found_status();
                        view! {
                            <h1>"Mailing not found"</h1>
                            <Problem message=format!("No event of mailing {mailing:?} is known (yet). Check the id, or wait for its first webhook.")/>
                            <p><a href="/mailings">"All mailings"</a></p>
                        }.erase()
                    }
                    Err(e) => view! { <Problem message=format!("Could not load mailing {mailing}: {e}")/> }.erase(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn MailingBody(id: String, state: Signal<TopicState>, events: Vec<RawEvent>) -> impl IntoView {
    let m = Memo::new(move |_| mailing_of(&state.get()));
    let tiles = move || {
        let (t, per_min) = m.with(|m| (m.row.totals, m.row.sent_per_min));
        let r = t.rates();
        let mut h = Markup::new();
        h.tile("Sent", "m-sent", &format::count(t.sent), "", None)
            .tile(
                "Open rate",
                "m-open",
                &format::pct(r.open),
                &format!("{} unique openers", format::count(t.unique_opens)),
                None,
            )
            .tile(
                "Click rate",
                "m-click",
                &format::pct(r.click),
                &format!("{} unique clickers", format::count(t.unique_clicks)),
                None,
            )
            .tile(
                "Hard bounces",
                "m-hard",
                &format::pct(r.hard_bounce),
                &format::count(t.hard_bounces),
                None,
            )
            .tile(
                "Soft bounces",
                "m-soft",
                &format::pct(r.soft_bounce),
                &format::count(t.soft_bounces),
                None,
            )
            .tile(
                "Sends / min",
                "m-rate",
                &format::per_min(per_min),
                "last 5 min",
                None,
            );
        h.take()
    };
    let range = use_range();
    let scope = Signal::derive({
        let id = id.clone();
        move || format!("mailing:{id}")
    });
    let span = Signal::derive(move || {
        let now = m.with(|m| m.now);
        (now - range.get().ms(), now)
    });
    let sends_lines = chart_lines(scope, range, data::SEND_HISTORY, move |span| {
        m.with(|m| data::sends(&m.series, span, m.now))
    });
    let rate_lines = chart_lines(scope, range, data::RATE_HISTORY, move |span| {
        m.with(|m| data::rates(&m.series, span, m.now))
    });
    let events = RwSignal::new(events);
    let events_problem = RwSignal::new(None::<String>);
    // New events arrive: refresh the raw list, at most every 5 s.
    #[cfg(feature = "hydrate")]
    {
        let last = StoredValue::new(0.0f64);
        let id = id.clone();
        Effect::new(move |prev: Option<u64>| {
            let sent = m.with(|m| m.row.totals.to_array().iter().sum::<u64>());
            let now = js_sys::Date::now();
            if prev.is_some_and(|p| p != sent) && now - last.get_value() > 5_000.0 {
                last.set_value(now);
                let id = id.clone();
                leptos::task::spawn_local(async move {
                    match super::get_events(id, LATEST).await {
                        Ok(list) => {
                            events.set(list);
                            events_problem.set(None);
                        }
                        Err(e) => {
                            events_problem.set(Some(format!("Could not refresh the events: {e}")))
                        }
                    }
                });
            }
            sent
        });
    }
    let title = {
        let id = id.clone();
        move || {
            m.with(|m| {
                m.row
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("Mailing {id}"))
            })
        }
    };
    let csv = format!(
        "/api/v1/events?mailing={}&format=csv&limit=100000",
        urlencode(&id)
    );
    view! {
        <div class="page-head">
            <h1>{title}</h1>
            <span class="muted">{format!("#{id}")}</span>
            {move || class_badge(m.with(|m| m.row.class))}
            {move || m.with(|m| m.row.sending).then(|| view! { <span class="badge live">"sending now"</span> })}
            <RangePicker range/>
        </div>
        <p class="muted">
            {move || m.with(|m| format!("First event {} · last event {}", format::date_time(m.row.first_event_at), format::date_time(m.row.last_event_at)))}
            " · " <a href=csv data-testid="csv-export" download>"Export all events as CSV"</a>
            " · " <ClassSwitch id=id.clone() class=Signal::derive(move || m.with(|m| m.row.class))/>
        </p>
        <section class="tiles" aria-label="Totals" inner_html=tiles></section>
        <div class="columns">
            <Funnel m/>
            <Bounces m/>
        </div>
        <section class="charts" aria-label="Charts">
            <Chart title="Sends per minute" id="m-chart-sends" lines=sends_lines unit=Unit::PerMin span/>
            <Chart title="Rates (rolling 5 min)" id="m-chart-rates" lines=rate_lines unit=Unit::Ratio span/>
        </section>
        <DelayHistogram m/>
        <section class="panel" aria-labelledby="raw-h">
            <h2 id="raw-h">"Latest events"</h2>
            {move || events_problem.get().map(|message| view! { <Problem message/> })}
            <table class="list wide" data-testid="raw-events">
                <thead><tr>
                    <th scope="col">"Event time"</th><th scope="col">"Type"</th><th scope="col">"Recipient"</th>
                    <th scope="col">"Address"</th><th scope="col">"Details"</th><th scope="col">"Lag"</th>
                </tr></thead>
                <tbody inner_html=move || events.with(|list| events_markup(list))></tbody>
            </table>
        </section>
    }
}

/// Marks the mailing transactional or campaign (`PUT /api/v1/mailings/{id}`).
#[component]
fn ClassSwitch(id: String, class: Signal<MailingClass>) -> impl IntoView {
    let message = RwSignal::new(None::<String>);
    let to = move || match class.get() {
        MailingClass::Transactional => MailingClass::Campaign,
        MailingClass::Campaign => MailingClass::Transactional,
    };
    let click = move |_| {
        let target = to();
        let url = format!("/api/v1/mailings/{}", urlencode(&id));
        leptos::task::spawn_local(async move {
            // The class is one of two fixed words: no escaping needed.
            let body = format!(r#"{{"class":"{}"}}"#, target.as_str());
            let r = crate::fetch::send("PUT", &url, body).await;
            message.set(r.err());
        });
    };
    view! {
        <button class="link-button" on:click=click>{move || format!("Mark as {}", to().as_str())}</button>
        {move || message.get().map(|m| view! { <span class="problem">{m}</span> })}
    }
}

#[component]
fn Funnel(m: Memo<MailingState>) -> impl IntoView {
    let bars = move || {
        let t = m.with(|m| m.row.totals);
        let mut h = Markup::new();
        for (label, id, n) in [
            ("Sent", "funnel-sent", t.sent),
            (
                "Not bounced",
                "funnel-delivered",
                t.sent.saturating_sub(t.bounces),
            ),
            ("Opened (unique)", "funnel-opened", t.unique_opens),
            ("Clicked (unique)", "funnel-clicked", t.unique_clicks),
            ("Unsubscribed", "funnel-unsubscribed", t.unsubscribes),
            ("Complained", "funnel-complained", t.complaints),
        ] {
            let share = (t.sent > 0).then(|| n as f64 / t.sent as f64);
            h.bar(
                label,
                share.unwrap_or(0.0) * 100.0,
                &format::count(n),
                Some(id),
                Some(&share.map_or_else(|| "—".into(), |s| format::pct(Some(s)))),
            );
        }
        h.take()
    };
    view! {
        <section class="panel" aria-labelledby="funnel-h">
            <h2 id="funnel-h">"Funnel"</h2>
            <div inner_html=bars></div>
        </section>
    }
}

#[component]
fn Bounces(m: Memo<MailingState>) -> impl IntoView {
    let b = Memo::new(move |_| m.with(|m| m.bounces.clone()));
    let categories = move || {
        b.with(|b| {
            let mut h = Markup::new();
            for (name, n) in [("hard", b.hard), ("soft", b.soft), ("unknown", b.unknown)] {
                let id = format!("bounce-{name}");
                h.open("tr", &[])
                    .th(name)
                    .el(
                        "td",
                        &[("class", "num"), ("data-testid", &id)],
                        &format::count(n),
                    )
                    .close("tr");
            }
            h.take()
        })
    };
    let reasons = move || {
        b.with(|b| {
            let mut h = Markup::new();
            for (r, n) in &b.by_reason {
                h.open("tr", &[]).th(r).num(&format::count(*n)).close("tr");
            }
            h.take()
        })
    };
    let domains = move || {
        b.with(|b| {
            let mut h = Markup::new();
            for d in &b.by_domain {
                let id = format!("bounce-domain-{}", d.domain);
                h.open("tr", &[])
                    .th(&d.domain)
                    .el(
                        "td",
                        &[("class", "num"), ("data-testid", &id)],
                        &format::count(d.hard),
                    )
                    .num(&format::count(d.soft))
                    .num(&format::count(d.unknown))
                    .close("tr");
            }
            h.take()
        })
    };
    view! {
        <section class="panel" aria-labelledby="bounces-h">
            <h2 id="bounces-h">"Bounces"</h2>
            <table class="list">
                <thead><tr><th scope="col">"Category"</th><th scope="col">"Count"</th></tr></thead>
                <tbody inner_html=categories></tbody>
            </table>
            <h3>"By reason"</h3>
            <table class="list"><tbody inner_html=reasons></tbody></table>
            <h3>"By receiving domain"</h3>
            <table class="list">
                <thead><tr><th scope="col">"Domain"</th><th scope="col">"Hard"</th><th scope="col">"Soft"</th><th scope="col">"Unknown"</th></tr></thead>
                <tbody inner_html=domains></tbody>
            </table>
        </section>
    }
}

/// The dispatch delay of a transactional mailing: percentiles per window
/// and the histogram of the last 24 hours. Nothing for a campaign.
fn delay_markup(d: &MailingDispatch) -> String {
    let mut h = Markup::new();
    let queued = format!(
        "{} queued, oldest {}",
        format::count(d.health.queue_depth),
        dur_or_dash(d.health.oldest_queued_ms)
    );
    h.el("h2", &[("id", "delay-h")], "Dispatch delay")
        .el("p", &[("class", "muted")], &queued)
        .open("table", &[("class", "list")])
        .thead(&["Window", "p50", "p95", "p99"])
        .open("tbody", &[]);
    for w in [Window::M5, Window::H1, Window::H24] {
        let p = d.delay.get(&w).copied();
        h.open("tr", &[])
            .th(w.label())
            .num(&dur_or_dash(p.map(|p| p.p50 as i64)))
            .num(&dur_or_dash(p.map(|p| p.p95 as i64)))
            .num(&dur_or_dash(p.map(|p| p.p99 as i64)))
            .close("tr");
    }
    h.close("tbody")
        .close("table")
        .el("h3", &[], "Sent in the last 24 hours, by delay");
    let max = d.bins.iter().copied().max().unwrap_or(0).max(1);
    let last = *d.bin_bounds_ms.last().unwrap_or(&0) as i64;
    let labels = d
        .bin_bounds_ms
        .iter()
        .map(|b| format!("≤ {}", format::dur_ms(*b as i64)))
        .chain(std::iter::once(format!("> {}", format::dur_ms(last))));
    for (n, l) in d.bins.iter().zip(labels) {
        h.bar(
            &l,
            *n as f64 * 100.0 / max as f64,
            &format::count(*n),
            None,
            None,
        );
    }
    h.take()
}

#[component]
fn DelayHistogram(m: Memo<MailingState>) -> impl IntoView {
    let dispatch = Memo::new(move |_| m.with(|m| m.dispatch.clone()));
    move || {
        dispatch.with(|d| {
            d.as_ref().map(|d| {
                let inner = delay_markup(d);
                view! { <section class="panel" aria-labelledby="delay-h" inner_html=inner></section> }
            })
        })
    }
}

/// The latest raw events as table rows.
fn events_markup(list: &[RawEvent]) -> String {
    let mut h = Markup::new();
    for e in list {
        let details = [&e.bounce, &e.reason, &e.link]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" · ");
        h.open("tr", &[])
            .td(&format::clock(e.event_time))
            .td(&e.event_type)
            .td(e.recipient.as_deref().unwrap_or_default())
            .td(e.address.as_deref().unwrap_or_default())
            .td(&details)
            .el(
                "td",
                &[("class", "muted")],
                &format::dur_ms(e.received_at - e.event_time),
            )
            .close("tr");
    }
    h.take()
}
