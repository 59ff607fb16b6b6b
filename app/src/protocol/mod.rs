//! The wire contract: serde types that cross the websocket (`/ws`) and the
//! REST API. Both the server (native) and the browser (wasm) compile this
//! module, so a change here changes both sides at once. It holds only data
//! and the small pure functions both sides must agree on (counting, rates,
//! applying a delta).

mod events;
mod messages;
mod tagged;
mod views;

pub use events::*;
pub use messages::*;
pub use views::*;
