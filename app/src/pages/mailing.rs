//! One mailing (`/mailings/{id}`): the funnel, rates over time, bounces by
//! category, reason and receiving domain, the dispatch-delay histogram of a
//! transactional mailing, its latest raw events (addresses masked) and a
//! CSV export.

use super::data;
use super::overview::{chart_lines, use_range, RangePicker};
use super::resource::{resource, PageResource};
use super::{live_state, not_found_status, Problem};
use crate::components::chart::{Chart, Unit};
use crate::components::erase::EraseView;
use crate::components::{class_badge, format, Tile};
use crate::live::use_live;
use crate::protocol::{MailingClass, MailingState, RawEvent, Topic, TopicState, Window};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

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
        |id| super::get_view(format!("mailing:{id}")),
    );
    let events = resource(move || id.get(), |id| super::get_events(id, 25));
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let mailing = id.get();
                match initial.await {
                    Ok(Some(first)) => {
                        let state = live_state(Topic::Mailing(mailing.clone()), first.state);
                        view! { <MailingBody id=mailing state events/> }.erase()
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
fn MailingBody(
    id: String,
    state: Signal<TopicState>,
    events: PageResource<Result<Vec<RawEvent>, ServerFnError>>,
) -> impl IntoView {
    let m = Memo::new(move |_| mailing_of(&state.get()));
    let t = move || m.with(|m| m.row.totals);
    let rates = move || t().rates();
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
    // New events arrive: refresh the raw list, at most every 5 s.
    #[cfg(feature = "hydrate")]
    {
        let last = StoredValue::new(0.0f64);
        Effect::new(move |prev: Option<u64>| {
            let sent = m.with(|m| m.row.totals.to_array().iter().sum::<u64>());
            let now = js_sys::Date::now();
            if prev.is_some_and(|p| p != sent) && now - last.get_value() > 5_000.0 {
                last.set_value(now);
                events.refetch();
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
        <section class="tiles" aria-label="Totals">
            <Tile label="Sent" id="m-sent" value=Signal::derive(move || format::count(t().sent))/>
            <Tile label="Open rate" id="m-open" value=Signal::derive(move || format::pct(rates().open))
                note=Signal::derive(move || format!("{} unique openers", format::count(t().unique_opens)))/>
            <Tile label="Click rate" id="m-click" value=Signal::derive(move || format::pct(rates().click))
                note=Signal::derive(move || format!("{} unique clickers", format::count(t().unique_clicks)))/>
            <Tile label="Hard bounces" id="m-hard" value=Signal::derive(move || format::pct(rates().hard_bounce))
                note=Signal::derive(move || format::count(t().hard_bounces))/>
            <Tile label="Soft bounces" id="m-soft" value=Signal::derive(move || format::pct(rates().soft_bounce))
                note=Signal::derive(move || format::count(t().soft_bounces))/>
            <Tile label="Sends / min" id="m-rate" value=Signal::derive(move || format::per_min(m.with(|m| m.row.sent_per_min)))
                note=Signal::derive(|| "last 5 min".to_string())/>
        </section>
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
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(list) => view! { <EventTable list/> }.erase(),
                        Err(e) => view! { <Problem message=format!("Could not load events: {e}")/> }.erase(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
            let r =
                crate::fetch::send("PUT", &url, serde_json::json!({ "class": target.as_str() }))
                    .await;
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
    let bar = move |label: &'static str,
                    id: &'static str,
                    n: Box<dyn Fn() -> u64 + Send + Sync>| {
        let n = std::sync::Arc::new(n);
        let (n2, n3, n4) = (n.clone(), n.clone(), n.clone());
        let sent = move || m.with(|m| m.row.totals.sent);
        let width = move || {
            let s = sent();
            if s == 0 {
                0.0
            } else {
                (n2() as f64 / s as f64 * 100.0).min(100.0)
            }
        };
        view! {
            <div class="funnel-row">
                <span class="funnel-label">{label}</span>
                <span class="funnel-bar"><span style=move || format!("width:{:.1}%", width())></span></span>
                <span class="num" data-testid=id>{move || format::count(n3())}</span>
                <span class="num muted">{move || {
                    let s = sent();
                    if s == 0 { "—".to_string() } else { format::pct(Some(n4() as f64 / s as f64)) }
                }}</span>
            </div>
        }
    };
    let t = move || m.with(|m| m.row.totals);
    view! {
        <section class="panel" aria-labelledby="funnel-h">
            <h2 id="funnel-h">"Funnel"</h2>
            {bar("Sent", "funnel-sent", Box::new(move || t().sent))}
            {bar("Not bounced", "funnel-delivered", Box::new(move || t().sent.saturating_sub(t().bounces)))}
            {bar("Opened (unique)", "funnel-opened", Box::new(move || t().unique_opens))}
            {bar("Clicked (unique)", "funnel-clicked", Box::new(move || t().unique_clicks))}
            {bar("Unsubscribed", "funnel-unsubscribed", Box::new(move || t().unsubscribes))}
            {bar("Complained", "funnel-complained", Box::new(move || t().complaints))}
        </section>
    }
}

#[component]
fn Bounces(m: Memo<MailingState>) -> impl IntoView {
    let b = move || m.with(|m| m.bounces.clone());
    let reasons = move || {
        b().by_reason
            .into_iter()
            .map(|(r, n)| view! { <tr><th scope="row">{r}</th><td class="num">{format::count(n)}</td></tr> })
            .collect_view()
    };
    let domains = move || {
        b().by_domain
            .into_iter()
            .map(|d| {
                let id = format!("bounce-domain-{}", d.domain);
                view! {
                    <tr>
                        <th scope="row">{d.domain.clone()}</th>
                        <td class="num" data-testid=id>{format::count(d.hard)}</td>
                        <td class="num">{format::count(d.soft)}</td>
                        <td class="num">{format::count(d.unknown)}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <section class="panel" aria-labelledby="bounces-h">
            <h2 id="bounces-h">"Bounces"</h2>
            <table class="list">
                <thead><tr><th scope="col">"Category"</th><th scope="col">"Count"</th></tr></thead>
                <tbody>
                    <tr><th scope="row">"hard"</th><td class="num" data-testid="bounce-hard">{move || format::count(b().hard)}</td></tr>
                    <tr><th scope="row">"soft"</th><td class="num" data-testid="bounce-soft">{move || format::count(b().soft)}</td></tr>
                    <tr><th scope="row">"unknown"</th><td class="num" data-testid="bounce-unknown">{move || format::count(b().unknown)}</td></tr>
                </tbody>
            </table>
            <h3>"By reason"</h3>
            <table class="list"><tbody>{reasons}</tbody></table>
            <h3>"By receiving domain"</h3>
            <table class="list">
                <thead><tr><th scope="col">"Domain"</th><th scope="col">"Hard"</th><th scope="col">"Soft"</th><th scope="col">"Unknown"</th></tr></thead>
                <tbody>{domains}</tbody>
            </table>
        </section>
    }
}

#[component]
fn DelayHistogram(m: Memo<MailingState>) -> impl IntoView {
    move || {
        m.with(|m| m.dispatch.clone()).map(|d| {
            let max = d.bins.iter().copied().max().unwrap_or(0).max(1);
            let labels: Vec<String> = d
                .bin_bounds_ms
                .iter()
                .map(|b| format!("≤ {}", format::dur_ms(*b as i64)))
                .chain(std::iter::once(format!(
                    "> {}",
                    format::dur_ms(*d.bin_bounds_ms.last().unwrap_or(&0) as i64)
                )))
                .collect();
            let bars = d
                .bins
                .iter()
                .zip(labels)
                .map(|(n, l)| {
                    view! {
                        <div class="funnel-row">
                            <span class="funnel-label">{l}</span>
                            <span class="funnel-bar"><span style=format!("width:{:.1}%", *n as f64 * 100.0 / max as f64)></span></span>
                            <span class="num">{format::count(*n)}</span>
                        </div>
                    }
                })
                .collect_view();
            let per_window = [Window::M5, Window::H1, Window::H24]
                .into_iter()
                .map(|w| {
                    let p = d.delay.get(&w).copied();
                    view! {
                        <tr>
                            <th scope="row">{w.label()}</th>
                            <td class="num">{p.map_or("—".into(), |p| format::dur_ms(p.p50 as i64))}</td>
                            <td class="num">{p.map_or("—".into(), |p| format::dur_ms(p.p95 as i64))}</td>
                            <td class="num">{p.map_or("—".into(), |p| format::dur_ms(p.p99 as i64))}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <section class="panel" aria-labelledby="delay-h">
                    <h2 id="delay-h">"Dispatch delay"</h2>
                    <p class="muted">{format!(
                        "{} queued, oldest {}",
                        format::count(d.health.queue_depth),
                        d.health.oldest_queued_ms.map_or("—".into(), format::dur_ms)
                    )}</p>
                    <table class="list">
                        <thead><tr><th scope="col">"Window"</th><th scope="col">"p50"</th><th scope="col">"p95"</th><th scope="col">"p99"</th></tr></thead>
                        <tbody>{per_window}</tbody>
                    </table>
                    <h3>"Sent in the last 24 hours, by delay"</h3>
                    {bars}
                </section>
            }
        })
    }
}

#[component]
fn EventTable(list: Vec<RawEvent>) -> impl IntoView {
    let rows = list
        .into_iter()
        .map(|e| {
            view! {
                <tr>
                    <td>{format::clock(e.event_time)}</td>
                    <td>{e.event_type}</td>
                    <td>{e.recipient.unwrap_or_default()}</td>
                    <td>{e.address.unwrap_or_default()}</td>
                    <td>{[e.bounce, e.reason, e.link].into_iter().flatten().collect::<Vec<_>>().join(" · ")}</td>
                    <td class="muted">{format::dur_ms(e.received_at - e.event_time)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="list wide" data-testid="raw-events">
            <thead><tr>
                <th scope="col">"Event time"</th><th scope="col">"Type"</th><th scope="col">"Recipient"</th>
                <th scope="col">"Address"</th><th scope="col">"Details"</th><th scope="col">"Lag"</th>
            </tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
