//! The wasm-bindgen layer the JS loader calls: argument conversion only, every rule
//! lives in the plain-Rust modules. Names are the JS names.

use wasm_bindgen::prelude::*;

/// See [`crate::find::find_click_id`]. Returns `undefined` when no source holds one.
#[wasm_bindgen]
pub fn find_click_id(search: &str, cookies: &str, stored: Option<String>) -> Option<String> {
    crate::find::find_click_id(search, cookies, stored.as_deref())
}

/// See [`crate::payload::event_id`]: the server's dedup key for this conversion.
#[wasm_bindgen]
pub fn event_id(click_id: &str, event: &str, txid: Option<String>) -> String {
    crate::payload::event_id(click_id, event, txid.as_deref())
}

/// See [`crate::payload::build_payload`]. Throws a string naming the broken rule.
/// `page` is optional in JS (pass `location.href`).
#[wasm_bindgen]
pub fn build_payload(
    click_id: &str,
    event: &str,
    txid: Option<String>,
    value: Option<f64>,
    currency: Option<String>,
    page: Option<String>,
) -> Result<String, JsValue> {
    crate::payload::build_payload(
        click_id,
        event,
        txid.as_deref(),
        value,
        currency.as_deref(),
        page.as_deref(),
    )
    .map_err(|e| JsValue::from_str(&e.to_string()))
}
