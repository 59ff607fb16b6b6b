//! mailpulse's user interface. Compiled twice: with `ssr` into the server
//! (which renders every page with current numbers) and with `hydrate` into
//! the wasm bundle that takes the page over in the browser and keeps it live
//! over the websocket. The wire contract both sides share is [`protocol`].

// Leptos views are deeply nested types; the release (wasm-release) build of
// the overview page needs more than the default 128 to compute their layout.
#![recursion_limit = "256"]

pub mod components;
pub mod fetch;
pub mod live;
pub mod pages;
pub mod protocol;

use components::erase::EraseView;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{FlatRoutes, Route, Router},
    hooks::use_location,
    path, SsrMode,
};

/// The HTML document around the app; only the server renders it.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The root component: routes and the live link every page shares.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    live::provide_live();

    view! {
        <Stylesheet id="leptos" href="/pkg/mailpulse.css"/>
        <Title text="mailpulse"/>
        <Router>
            <Chrome/>
            <main>
                // Async: every number is in the HTML before any script runs.
                <FlatRoutes fallback=|| view! { <pages::NotFound/> }.erase()>
                    <Route path=path!("") view=|| view! { <pages::overview::Overview/> }.erase() ssr=SsrMode::Async/>
                    <Route path=path!("/mailings") view=|| view! { <pages::mailings::Mailings/> }.erase() ssr=SsrMode::Async/>
                    <Route path=path!("/mailings/:id") view=|| view! { <pages::mailing::Mailing/> }.erase() ssr=SsrMode::Async/>
                    <Route path=path!("/transactional") view=|| view! { <pages::transactional::Transactional/> }.erase() ssr=SsrMode::Async/>
                    <Route path=path!("/alerts") view=|| view! { <pages::alerts::Alerts/> }.erase() ssr=SsrMode::Async/>
                    <Route path=path!("/wall") view=|| view! { <pages::wall::Wall/> }.erase() ssr=SsrMode::Async/>
                </FlatRoutes>
            </main>
        </Router>
    }
}

/// The header on every page but the wall (which has no controls).
#[component]
fn Chrome() -> impl IntoView {
    let location = use_location();
    move || (location.pathname.get() != "/wall").then(|| view! { <pages::Header/> })
}

/// Entry point of the wasm bundle.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
