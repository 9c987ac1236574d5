//! Log output: text for people, JSON for collectors, neither carrying details of the
//! machine the binary was built on.

use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format without the `log.*` fields that records bridged from the
/// `log` crate (Pingora's own lines) carry: `log.file` is a source path on the build
/// machine, and `log.target`/`log.module_path` repeat `target`.
pub(super) struct JsonWithoutSourcePaths(pub(super) Format<Json>);

impl<S> FormatEvent<S, JsonFields> for JsonWithoutSourcePaths
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&line) else {
            // Never lose a line over its clean-up.
            return writer.write_str(&line);
        };
        if let Some(fields) = value
            .get_mut("fields")
            .and_then(serde_json::Value::as_object_mut)
        {
            fields.retain(|name, _| !name.starts_with("log."));
        }
        writeln!(writer, "{value}")
    }
}
