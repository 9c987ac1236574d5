//! Secrets named by the config file (`*_env`, `*_file`) and the type that holds them,
//! whose `Debug` and `Display` never show the value.

use std::fmt;
use std::path::Path;

/// A secret value read from the environment or a file. Its `Debug` and `Display` say
/// `<redacted>`; only [`Secret::expose`] gives the value, at the point it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one header or field that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads secrets from the environment or files, never from the config text.
pub(super) struct SecretReader<'a> {
    pub(super) base_dir: &'a Path,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl SecretReader<'_> {
    /// The secret `name` from `{name}_env` or `{name}_file` (exactly one of them).
    /// `None` (with a problem recorded) when neither yields a value.
    pub(super) fn required(
        &mut self,
        p: &mut super::destinations::Problems<'_>,
        name: &str,
        from_env: &Option<String>,
        from_file: &Option<String>,
    ) -> Option<Secret> {
        let value = match (from_env, from_file) {
            (Some(_), Some(_)) => {
                p.add(
                    &format!("{name}_env"),
                    format!("both {name}_env and {name}_file are set"),
                    "keep one of them",
                );
                None
            }
            (Some(var), None) => match (self.env)(var) {
                Some(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                _ => {
                    p.add(
                        &format!("{name}_env"),
                        format!("the environment variable {var} is not set"),
                        format!("export {var} before starting clickstamp, or name a file with {name}_file"),
                    );
                    None
                }
            },
            (None, Some(path)) => {
                let path = self.base_dir.join(path);
                match std::fs::read_to_string(&path) {
                    Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                    Ok(_) => {
                        p.add(
                            &format!("{name}_file"),
                            format!("{} is empty", path.display()),
                            "write the secret into the file",
                        );
                        None
                    }
                    Err(e) => {
                        p.add(
                            &format!("{name}_file"),
                            format!("cannot read {}: {e}", path.display()),
                            "name a readable file (relative paths start at the config file's directory)",
                        );
                        None
                    }
                }
            }
            (None, None) => {
                p.add(
                    &format!("{name}_env"),
                    format!("no {name}"),
                    format!("add {name}_env = \"VARIABLE\" (secrets come from the environment) or {name}_file = \"path\""),
                );
                None
            }
        };
        value.map(Secret::new)
    }
}
