//! Page data loaded on the server and carried into the browser. Leptos'
//! default resource codec reads its serialized value with
//! `serde_json::from_str`, while server functions (the same values fetched
//! again after navigation) and the websocket read with `from_slice`: two
//! readers, so every page type's `Deserialize` was compiled into the wasm
//! twice. [`Json`] reads with `from_slice` too, and [`resource`] uses it.

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;

/// JSON, read with `serde_json::from_slice`.
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(val)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(val.as_bytes())
    }
}

/// A page's data: `Resource::new`, with the [`Json`] codec.
pub type PageResource<T> = Resource<T, Json>;

/// Like `Resource::new`: loaded on the server, serialized into the page,
/// refetched when `source` changes.
#[track_caller]
pub fn resource<T, S, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> PageResource<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: PartialEq + Clone + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}
