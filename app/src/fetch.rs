//! REST calls from the browser: history series, raw events, the stuck list
//! and the write endpoints (acknowledge, silence, rules, mailing settings).
//! Writes carry the API token the user saved on this browser, if any. On
//! the server (SSR) these are never called; they answer an error there.

use serde::de::DeserializeOwned;
#[cfg(feature = "hydrate")]
use serde::Deserialize;

/// Key of the API token in the browser's local storage.
pub const TOKEN_KEY: &str = "mailpulse.api_token";

/// GET `url` and decode its JSON. Decoding from the text (not through a
/// `serde_json::Value`) keeps one deserializer per type in the wasm, the
/// one the page resources and the websocket already use.
pub async fn get<T: DeserializeOwned>(url: &str) -> Result<T, String> {
    let text = request("GET", url, None).await?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))
}

/// `method` `url` with `body` (JSON text); the answer's text, or the
/// error message the server gave.
pub async fn send(method: &'static str, url: &str, body: String) -> Result<String, String> {
    request(method, url, Some(body)).await
}

/// The `{"error": …, "message": …}` body of an API error.
#[cfg(feature = "hydrate")]
#[derive(Deserialize)]
struct ApiError {
    message: String,
}

#[cfg(feature = "hydrate")]
async fn request(method: &str, url: &str, body: Option<String>) -> Result<String, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let window = web_sys::window().ok_or("no window")?;
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|_| "headers")?;
    let _ = headers.set("accept", "application/json");
    if let Some(b) = &body {
        let _ = headers.set("content-type", "application/json");
        init.set_body(&wasm_bindgen::JsValue::from_str(b));
    }
    if let Some(token) = stored_token() {
        let _ = headers.set("authorization", &format!("Bearer {token}"));
    }
    init.set_headers(&headers);
    let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(|_| "bad request")?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|_| "mailpulse is unreachable".to_string())?
        .dyn_into()
        .map_err(|_| "no response")?;
    let text = JsFuture::from(resp.text().map_err(|_| "no body")?)
        .await
        .ok()
        .and_then(|t| t.as_string())
        .unwrap_or_default();
    if resp.ok() {
        Ok(text)
    } else {
        Err(error_message(&text, resp.status()))
    }
}

/// The message of an API error answer, or the status when it has none.
#[cfg(feature = "hydrate")]
fn error_message(text: &str, status: u16) -> String {
    serde_json::from_str::<ApiError>(text)
        .map(|e| e.message)
        .unwrap_or_else(|_| format!("request failed: {status}"))
}

#[cfg(not(feature = "hydrate"))]
async fn request(_method: &str, _url: &str, _body: Option<String>) -> Result<String, String> {
    Err("only available in the browser".into())
}

/// The API token saved on this browser.
pub fn stored_token() -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()?
            .local_storage()
            .ok()??
            .get_item(TOKEN_KEY)
            .ok()?
            .filter(|t| !t.is_empty())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        None
    }
}

/// Saves (or, empty, forgets) the API token on this browser.
pub fn store_token(token: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(Ok(Some(s))) = web_sys::window().map(|w| w.local_storage()) {
        let _ = if token.is_empty() {
            s.remove_item(TOKEN_KEY)
        } else {
            s.set_item(TOKEN_KEY, token)
        };
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = token;
}
