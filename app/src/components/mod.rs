//! Building blocks shared by the pages: markup for tiles, tables and
//! sparklines, charts, the
//! alert banner (with sound and desktop notifications), the link status.

pub mod chart;
pub mod erase;
pub mod format;
pub mod markup;

use crate::live::{use_live, LinkStatus};
use crate::protocol::{AlertState, AlertView, MailingClass, Severity};
use leptos::prelude::*;

/// `on:input=set_from(signal)` (or `on:change`): keeps a form field's value
/// in `signal`. One closure type serves every field: each distinct handler
/// closure would compile its own event-listener code into the wasm.
pub fn set_from(signal: RwSignal<String>) -> impl Fn(leptos::ev::Event) + Clone + 'static {
    move |e| signal.set(event_target_value(&e))
}

/// `prop:value=value_of(signal)`: the field shows `signal`, one closure
/// type for every field (see [`set_from`]).
pub fn value_of(signal: RwSignal<String>) -> impl Fn() -> String + Clone + Send + Sync + 'static {
    move || signal.get()
}

/// The SVG path of a sparkline in a 100×20 box, highest value at the top.
pub fn spark_path(v: &[u32]) -> String {
    let max = v.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = v.len().max(2) - 1;
    let mut d = String::with_capacity(v.len() * 12);
    for (i, y) in v.iter().enumerate() {
        let _ = std::fmt::Write::write_fmt(
            &mut d,
            format_args!(
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                i as f64 * 100.0 / n as f64,
                20.0 - (*y as f64 / max) * 18.0 - 1.0
            ),
        );
    }
    d
}

/// The CSS class and the word of a mailing class badge.
pub fn class_badge_parts(c: MailingClass) -> (&'static str, &'static str) {
    match c {
        MailingClass::Transactional => ("badge tx", "transactional"),
        MailingClass::Campaign => ("badge", "campaign"),
    }
}

pub fn class_badge(c: MailingClass) -> impl IntoView {
    let (cls, text) = class_badge_parts(c);
    view! { <span class=cls>{text}</span> }
}

/// The link's freshness, for the header and the wall watermark.
pub fn status_text(s: LinkStatus) -> String {
    match s {
        LinkStatus::Connecting => "connecting…".into(),
        LinkStatus::Live => "live".into(),
        LinkStatus::Reconnecting { since } => {
            format!("reconnecting… (down since {})", format::clock(since as i64))
        }
        LinkStatus::Stale { since } => format!("stale since {}", format::clock(since as i64)),
    }
}

/// Firing alerts across the top of every page. New critical alerts beep
/// and raise a desktop notification where the user allowed it.
#[component]
pub fn AlertBanner(#[prop(into)] alerts: Signal<Vec<AlertView>>) -> impl IntoView {
    let firing = Memo::new(move |_| {
        alerts
            .get()
            .into_iter()
            .filter(|a| a.state == AlertState::Firing && a.muted.is_none())
            .collect::<Vec<_>>()
    });
    #[cfg(feature = "hydrate")]
    {
        let seen = StoredValue::new(None::<std::collections::HashSet<i64>>);
        Effect::new(move |_| {
            let now: Vec<AlertView> = firing.get();
            let ids: std::collections::HashSet<i64> = now.iter().map(|a| a.id).collect();
            seen.update_value(|s| {
                // The first render is not news; alerts that appear later are.
                if let Some(before) = s {
                    for a in now.iter().filter(|a| !before.contains(&a.id)) {
                        attention::alert(a);
                    }
                }
                *s = Some(ids);
            });
        });
    }
    move || {
        let list = firing.get();
        (!list.is_empty()).then(|| {
            let critical = list.iter().any(|a| a.severity == Severity::Critical);
            let first = list[0].clone();
            let more = list.len() - 1;
            view! {
                <div class=if critical { "banner critical" } else { "banner warning" }
                    role="alert" data-testid="alert-banner">
                    <strong>{if critical { "CRITICAL" } else { "WARNING" }}</strong>
                    <span class="banner-text">{first.summary.clone()}</span>
                    {first.acked.clone().map(|a| view! { <span class="acked">{format!("acknowledged by {}", a.by)}</span> })}
                    {(more > 0).then(|| view! { <span class="more">{format!("+{more} more")}</span> })}
                    <a href="/alerts">"Alerts"</a>
                </div>
            }
        })
    }
}

/// Lets the user allow sound and desktop notifications (browsers need a
/// click before either).
#[component]
pub fn AttentionToggle() -> impl IntoView {
    let label = RwSignal::new("Enable alert sound & notifications");
    let on_click = move |_| {
        #[cfg(feature = "hydrate")]
        {
            attention::enable();
            label.set("Alert sound & notifications on");
        }
    };
    view! { <button class="link-button" on:click=on_click>{move || label.get()}</button> }
}

#[cfg(feature = "hydrate")]
mod attention {
    use crate::protocol::{AlertView, Severity};
    use std::cell::Cell;

    thread_local! {
        static ENABLED: Cell<bool> = const { Cell::new(false) };
    }

    pub fn enable() {
        ENABLED.with(|e| e.set(true));
        let _ = web_sys::Notification::request_permission();
        beep(440.0, 0.05);
    }

    fn beep(freq: f32, secs: f64) {
        let Ok(ctx) = web_sys::AudioContext::new() else {
            return;
        };
        let Ok(osc) = ctx.create_oscillator() else {
            return;
        };
        let Ok(gain) = ctx.create_gain() else { return };
        osc.frequency().set_value(freq);
        gain.gain().set_value(0.15);
        let _ = osc.connect_with_audio_node(&gain);
        let _ = gain.connect_with_audio_node(&ctx.destination());
        let t = ctx.current_time();
        let _ = osc.start();
        let _ = osc.stop_with_when(t + secs);
    }

    pub fn alert(a: &AlertView) {
        if !ENABLED.with(|e| e.get()) {
            return;
        }
        if a.severity == Severity::Critical {
            beep(880.0, 0.4);
        }
        if web_sys::Notification::permission() == web_sys::NotificationPermission::Granted {
            let opts = web_sys::NotificationOptions::new();
            opts.set_body(&a.summary);
            opts.set_tag(&format!("mailpulse-{}", a.id));
            let _ = web_sys::Notification::new_with_options("mailpulse alert", &opts);
        }
    }
}

/// Header link status, with a class for its colour.
#[component]
pub fn LinkBadge() -> impl IntoView {
    let live = use_live();
    let class = move || match live.status.get() {
        LinkStatus::Live => "link live",
        LinkStatus::Connecting => "link connecting",
        _ => "link down",
    };
    view! {
        <span class=class data-testid="link-status" role="status" aria-live="polite">
            {move || status_text(live.status.get())}
        </span>
    }
}
