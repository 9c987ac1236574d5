//! clickstamp's I/O-free vocabulary: click IDs, token templates in every delimiter
//! style, postback parsing and verification, dedup keys, the [`Network`] /
//! [`TrafficSource`] plugin traits with their built-ins, and the macro linter.
//!
//! Nothing in this crate performs I/O, reads a clock or draws randomness; it compiles
//! for `wasm32-unknown-unknown` so the pixel SDK runs exactly the server's code.
//! Callers pass the time (`now_ms`) and any randomness in.

#![warn(missing_docs)]

pub mod clickid;
pub mod dedup;
pub mod lint;
pub mod network;
pub mod postback;
pub mod query;
pub mod source;
pub mod template;
pub mod verify;

pub use clickid::{ClickId, ClickIdCodec, ClickIdError};
pub use dedup::{dedup_key, normalize_event};
pub use lint::{lint_network, lint_offer_url, lint_source_template, LintFinding, Severity};
pub use network::{
    builtin_network, builtin_network_kinds, builtin_network_spec, postback_url_with_secret,
    CustomNetwork, CustomNetworkSpec, FieldSpec, Network, NetworkSpec, ParamNetwork, PostbackField,
    PostbackMacro, SpecError, SpecNetwork, StampError,
};
pub use postback::{ConversionStatus, ParsedPostback, PostbackError, PostbackRequest};
pub use source::{
    builtin_source, builtin_source_kinds, builtin_source_spec, CustomSource, CustomSourceSpec,
    LandingParams, ParamSource, RelayConversion, RelayField, RenderError, SourceSpec, SourceToken,
    SpecSource, TrafficSource,
};
pub use template::{find_tokens, find_unreplaced_macro, CaseRule, Template, TokenStyle};
pub use verify::{Cidr, HmacVerification, IpAllowlist, Verification};
