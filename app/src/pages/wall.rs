//! The wall screen (`/wall`): for an unattended TV. Dark, huge numbers, no
//! controls. Transactional status first; a firing alert takes over the top;
//! campaigns sending now rotate; a "data as of" watermark turns red when the
//! link is down or silent. The live link reconnects by itself forever.

use super::topic_page;
use crate::components::erase::EraseView;
use crate::components::format;
use crate::live::{use_live, LinkStatus};
use crate::protocol::{AlertState, Health, Severity, Topic, TopicState, WallState, Window};
use leptos::prelude::*;

fn wall_of(s: &TopicState) -> WallState {
    match s {
        TopicState::Wall(w) => w.clone(),
        _ => WallState::default(),
    }
}

#[component]
pub fn Wall() -> impl IntoView {
    view! {
        <div class="wall">
            {topic_page(Topic::Wall, "the wall", |state| view! { <WallBody state/> })}
        </div>
    }
}

#[component]
fn WallBody(state: Signal<TopicState>) -> impl IntoView {
    let live = use_live();
    let w = Memo::new(move |_| wall_of(&state.get()));
    let tx = Memo::new(move |_| w.with(|w| w.transactional.clone()));
    // Rotate the campaigns sending now, one every 8 seconds.
    let turn = RwSignal::new(0usize);
    #[cfg(feature = "hydrate")]
    {
        let _ = set_interval_with_handle(
            move || turn.update(|t| *t += 1),
            std::time::Duration::from_secs(8),
        );
    }
    let takeover = move || {
        w.with(|w| {
            w.alerts
                .iter()
                .find(|a| a.state == AlertState::Firing && a.muted.is_none())
                .cloned()
        })
        .map(|a| {
            let cls = if a.severity == Severity::Critical { "wall-alert critical" } else { "wall-alert warning" };
            view! {
                <div class=cls role="alert" data-testid="wall-alert">
                    <div class="wall-alert-head">{if a.severity == Severity::Critical { "ALERT" } else { "WARNING" }}</div>
                    <div class="wall-alert-text">{a.summary.clone()}</div>
                </div>
            }
        })
    };
    let (status_cls, status_text) = (
        move || match tx.get().status {
            Health::Ok => "wall-tx ok",
            Health::Warning => "wall-tx warning",
            Health::Critical => "wall-tx critical",
        },
        move || match tx.get().status {
            Health::Ok => "Transactional mail OK",
            Health::Warning => "Transactional mail: warning",
            Health::Critical => "Transactional mail STUCK",
        },
    );
    let tx_mailings = move || {
        tx.get()
            .mailings
            .into_iter()
            .map(|m| {
                let cls = match m.status {
                    Health::Ok => "dot ok",
                    Health::Warning => "dot warning",
                    Health::Critical => "dot critical",
                };
                view! {
                    <div class="wall-tx-mailing">
                        <span class=cls></span>
                        <span>{m.name.clone().unwrap_or(m.id.clone())}</span>
                        <span class="num">{format::per_min(m.sent_per_min)}</span>
                        <span class="num">{m.oldest_queued_ms.map_or("no queue".into(), |a| format!("oldest {}", format::dur_ms(a)))}</span>
                    </div>
                }
            })
            .collect_view()
    };
    let campaign = move || {
        let sending = w.with(|w| w.sending.clone());
        let campaigns: Vec<_> = sending
            .into_iter()
            .filter(|m| m.class == crate::protocol::MailingClass::Campaign)
            .collect();
        if campaigns.is_empty() {
            return view! { <div class="wall-campaign idle">"No campaign sending right now"</div> }
                .erase();
        }
        let m = campaigns[turn.get() % campaigns.len()].clone();
        let r = m.totals.rates();
        let of = format!(
            "{} of {}",
            turn.get() % campaigns.len() + 1,
            campaigns.len()
        );
        view! {
            <div class="wall-campaign">
                <div class="wall-campaign-name">{m.name.clone().unwrap_or(format!("Mailing {}", m.id))} <span class="muted">{of}</span></div>
                <div class="wall-figures">
                    <div><span class="big">{format::count(m.totals.sent)}</span><span>"sent"</span></div>
                    <div><span class="big">{format::per_min(m.sent_per_min)}</span><span>"now"</span></div>
                    <div><span class="big">{format::pct(r.open)}</span><span>"opened"</span></div>
                    <div><span class="big">{format::pct(r.click)}</span><span>"clicked"</span></div>
                    <div><span class="big">{format::pct(r.bounce)}</span><span>"bounced"</span></div>
                </div>
            </div>
        }
        .erase()
    };
    let fresh = move || matches!(live.status.get(), LinkStatus::Live | LinkStatus::Connecting);
    let as_of = move || {
        let last = live.last_message_at.get();
        let t = if last > 0.0 {
            last as i64
        } else {
            w.with(|w| w.now)
        };
        let note = match live.status.get() {
            LinkStatus::Reconnecting { .. } => " — reconnecting",
            LinkStatus::Stale { .. } => " — no update for 15 s",
            _ => "",
        };
        format!("data as of {}{note}", format::clock(t))
    };
    let overall = move || w.with(|w| w.summary.overall.window(Window::M5).counters);
    view! {
        {takeover}
        <section class=status_cls aria-live="polite" data-testid="wall-tx">
            <div class="wall-tx-head">{status_text}</div>
            <div class="wall-figures">
                <div><span class="big">{move || format::per_min(tx.get().sent_per_min)}</span><span>"sent"</span></div>
                <div><span class="big">{move || tx.get().delay.map_or("—".into(), |d| format::dur_ms(d.p95 as i64))}</span><span>"delay p95"</span></div>
                <div><span class="big" data-testid="wall-queue">{move || format::count(tx.get().queue_depth)}</span><span>"queued"</span></div>
                <div><span class="big">{move || tx.get().oldest_queued_ms.map_or("—".into(), format::dur_ms)}</span><span>"oldest"</span></div>
            </div>
            <div class="wall-tx-mailings">{tx_mailings}</div>
        </section>
        {campaign}
        <footer class="wall-foot">
            <span>{move || format!("All mail, last 5 min: {} sent · {} opened · {} bounced",
                format::count(overall().sent), format::count(overall().unique_opens), format::count(overall().bounces))}</span>
            <span class=move || if fresh() { "watermark" } else { "watermark stale" } data-testid="wall-watermark">{as_of}</span>
        </footer>
    }
}
