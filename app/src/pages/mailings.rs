//! Every mailing (`/mailings`) with live stats: sortable, filterable by
//! class, searchable by id or name. All in the browser from the live topic.

use super::overview::mailing_row;
use super::topic_page;
use crate::components::erase::EraseView;
use crate::components::markup::Markup;
use crate::components::{format, set_from, value_of};
use crate::protocol::{MailingClass, MailingRow, MailingsState, Topic, TopicState};
use leptos::prelude::*;

fn mailings_of(s: &TopicState) -> MailingsState {
    match s {
        TopicState::Mailings(m) => m.clone(),
        _ => MailingsState::default(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sort {
    Recent,
    Name,
    Sent,
    OpenRate,
    ClickRate,
    BounceRate,
}

#[component]
pub fn Mailings() -> impl IntoView {
    view! {
        <h1>"Mailings"</h1>
        {topic_page(Topic::Mailings, "the mailings", |state| view! { <MailingsTable state/> }.erase())}
    }
}

fn sorted(mut rows: Vec<MailingRow>, sort: Sort, desc: bool) -> Vec<MailingRow> {
    let key = |r: &MailingRow| -> f64 {
        let rates = r.totals.rates();
        match sort {
            Sort::Recent => r.last_event_at as f64,
            Sort::Sent => r.totals.sent as f64,
            Sort::OpenRate => rates.open.unwrap_or(-1.0),
            Sort::ClickRate => rates.click.unwrap_or(-1.0),
            Sort::BounceRate => rates.bounce.unwrap_or(-1.0),
            Sort::Name => 0.0,
        }
    };
    if sort == Sort::Name {
        rows.sort_by(|a, b| {
            a.name
                .as_deref()
                .unwrap_or(&a.id)
                .to_lowercase()
                .cmp(&b.name.as_deref().unwrap_or(&b.id).to_lowercase())
        });
    } else {
        rows.sort_by(|a, b| key(a).total_cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
    }
    if desc {
        rows.reverse();
    }
    rows
}

#[component]
fn MailingsTable(state: Signal<TopicState>) -> impl IntoView {
    let all = Memo::new(move |_| mailings_of(&state.get()).mailings);
    let query = RwSignal::new(String::new());
    let class = RwSignal::new(String::from("all"));
    let sort = RwSignal::new((Sort::Recent, true));
    let shown = Memo::new(move |_| {
        let q = query.get().to_lowercase();
        let c = class.get();
        let (s, desc) = sort.get();
        let rows: Vec<MailingRow> = all
            .get()
            .into_iter()
            .filter(|r| match c.as_str() {
                "transactional" => r.class == MailingClass::Transactional,
                "campaign" => r.class == MailingClass::Campaign,
                _ => true,
            })
            .filter(|r| {
                q.is_empty()
                    || r.id.to_lowercase().contains(&q)
                    || r.name
                        .as_ref()
                        .is_some_and(|n| n.to_lowercase().contains(&q))
            })
            .collect();
        sorted(rows, s, desc)
    });
    let header = move |label: &'static str, key: Sort| {
        let aria = move || {
            let (s, desc) = sort.get();
            if s == key {
                if desc {
                    "descending"
                } else {
                    "ascending"
                }
            } else {
                "none"
            }
        };
        view! {
            <th scope="col" aria-sort=aria>
                <button class="sort" on:click=move |_| sort.update(|(s, d)| {
                    if *s == key { *d = !*d } else { *s = key; *d = key != Sort::Name }
                })>{label}</button>
            </th>
        }
    };
    let rows = move || {
        shown.with(|shown| {
            let mut h = Markup::new();
            for m in shown {
                let r = m.totals.rates();
                mailing_row(&mut h, m, true);
                h.num(&format::pct(r.open))
                    .num(&format::pct(r.click))
                    .num(&format::pct(r.bounce))
                    .num(&format::count(m.totals.unsubscribes))
                    .num(&format::count(m.totals.complaints))
                    .td(&format::date_time(m.last_event_at))
                    .close("tr");
            }
            h.take()
        })
    };
    view! {
        <div class="filters" role="search">
            <label>"Search "
                <input type="search" placeholder="id or name" aria-label="Search mailings by id or name"
                    prop:value=value_of(query)
                    on:input=set_from(query)/>
            </label>
            <label>"Class "
                <select aria-label="Filter by class" on:change=set_from(class)>
                    <option value="all">"all"</option>
                    <option value="transactional">"transactional"</option>
                    <option value="campaign">"campaign"</option>
                </select>
            </label>
            <span class="muted" data-testid="mailing-count">{move || format!("{} of {} mailings", shown.get().len(), all.get().len())}</span>
        </div>
        <table class="list wide">
            <thead><tr>
                {header("Mailing", Sort::Name)}
                <th scope="col">"Class"</th>
                <th scope="col">"Last 30 min"</th>
                {header("Sent", Sort::Sent)}
                {header("Open", Sort::OpenRate)}
                {header("Click", Sort::ClickRate)}
                {header("Bounce", Sort::BounceRate)}
                <th scope="col">"Unsub."</th>
                <th scope="col">"Compl."</th>
                {header("Last event", Sort::Recent)}
            </tr></thead>
            <tbody inner_html=rows></tbody>
        </table>
    }
}
