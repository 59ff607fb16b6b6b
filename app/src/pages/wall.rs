//! The wall screen (`/wall`): for an unattended TV. Dark, huge numbers, no
//! controls. Transactional status first; a firing alert takes over the top;
//! campaigns sending now rotate; a "data as of" watermark turns red when the
//! link is down or silent. The live link reconnects by itself forever.

use super::topic_page;
use crate::components::erase::EraseView;
use crate::components::format;
use crate::components::markup::{dur_or_dash, health_parts, Markup};
use crate::live::{use_live, LinkStatus};
use crate::protocol::{
    AlertState, Health, MailingClass, MailingRow, Severity, Topic, TopicState, WallState, Window,
};
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
            {topic_page(Topic::Wall, "the wall", |state| view! { <WallBody state/> }.erase())}
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
    let status_cls = move || format!("wall-tx {}", health_parts(tx.with(|t| t.status)).0);
    let tx_inner = move || {
        tx.with(|tx| {
            let head = match tx.status {
                Health::Ok => "Transactional mail OK",
                Health::Warning => "Transactional mail: warning",
                Health::Critical => "Transactional mail STUCK",
            };
            let mut h = Markup::new();
            h.el("div", &[("class", "wall-tx-head")], head)
                .open("div", &[("class", "wall-figures")])
                .figure(&format::per_min(tx.sent_per_min), "sent", None)
                .figure(
                    &dur_or_dash(tx.delay.map(|d| d.p95 as i64)),
                    "delay p95",
                    None,
                )
                .figure(&format::count(tx.queue_depth), "queued", Some("wall-queue"))
                .figure(&dur_or_dash(tx.oldest_queued_ms), "oldest", None)
                .close("div")
                .open("div", &[("class", "wall-tx-mailings")]);
            for m in &tx.mailings {
                let dot = format!("dot {}", health_parts(m.status).0);
                let oldest = m.oldest_queued_ms.map_or("no queue".into(), |a| {
                    format!("oldest {}", format::dur_ms(a))
                });
                h.open("div", &[("class", "wall-tx-mailing")])
                    .el("span", &[("class", &dot)], "")
                    .el("span", &[], m.name.as_deref().unwrap_or(&m.id))
                    .el(
                        "span",
                        &[("class", "num")],
                        &format::per_min(m.sent_per_min),
                    )
                    .el("span", &[("class", "num")], &oldest)
                    .close("div");
            }
            h.close("div").take()
        })
    };
    // The campaign shown now: (row, "2 of 3"), or None when none is sending.
    let campaign = Memo::new(move |_| {
        let campaigns: Vec<MailingRow> = w.with(|w| {
            w.sending
                .iter()
                .filter(|m| m.class == MailingClass::Campaign)
                .cloned()
                .collect()
        });
        let i = turn.get() % campaigns.len().max(1);
        let n = campaigns.len();
        campaigns
            .into_iter()
            .nth(i)
            .map(|m| (m, format!("{} of {n}", i + 1)))
    });
    let campaign_cls = move || {
        if campaign.with(Option::is_some) {
            "wall-campaign"
        } else {
            "wall-campaign idle"
        }
    };
    let campaign_inner = move || {
        campaign.with(|c| {
            let mut h = Markup::new();
            let Some((m, of)) = c else {
                return h.text("No campaign sending right now").take();
            };
            let r = m.totals.rates();
            let name = m.name.clone().unwrap_or(format!("Mailing {}", m.id));
            h.open("div", &[("class", "wall-campaign-name")])
                .text(&name)
                .text(" ")
                .el("span", &[("class", "muted")], of)
                .close("div")
                .open("div", &[("class", "wall-figures")])
                .figure(&format::count(m.totals.sent), "sent", None)
                .figure(&format::per_min(m.sent_per_min), "now", None)
                .figure(&format::pct(r.open), "opened", None)
                .figure(&format::pct(r.click), "clicked", None)
                .figure(&format::pct(r.bounce), "bounced", None)
                .close("div")
                .take()
        })
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
        <section class=status_cls aria-live="polite" data-testid="wall-tx" inner_html=tx_inner></section>
        <div class=campaign_cls inner_html=campaign_inner></div>
        <footer class="wall-foot">
            <span>{move || format!("All mail, last 5 min: {} sent · {} opened · {} bounced",
                format::count(overall().sent), format::count(overall().unique_opens), format::count(overall().bounces))}</span>
            <span class=move || if fresh() { "watermark" } else { "watermark stale" } data-testid="wall-watermark">{as_of}</span>
        </footer>
    }
}
