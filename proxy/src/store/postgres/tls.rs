//! TLS to PostgreSQL. The URL's `sslmode` decides whether it is used, as with libpq:
//! `disable` never, `prefer` (the default) when the server offers it, `require` always.
//! Certificates are verified against `store.tls_ca_file` when set (a managed
//! database's CA bundle, or a private CA), else against the system's roots. Written
//! with the maintained `tokio-postgres-rustls` adapter over rustls; only the root store
//! is assembled here.

use crate::config::PostgresConfig;
use crate::store::StoreError;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

fn tls_error(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: "store.tls_ca_file".into(),
        reason: reason.to_string(),
    }
}

/// The roots server certificates are checked against.
fn roots(pg: &PostgresConfig) -> Result<rustls::RootCertStore, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match &pg.tls_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| tls_error(format!("cannot read {}: {e}", path.display())))?;
            let mut found = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    tls_error(format!("{} is not PEM certificates: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    tls_error(format!("{}: unusable certificate: {e}", path.display()))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(tls_error(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        None => {
            // A system without a CA bundle can still reach a server with
            // `sslmode=disable`, or one whose CA is given in store.tls_ca_file.
            if let Ok(certs) = rustls_native_certs::load_native_certs() {
                let _ = roots.add_parsable_certificates(certs);
            }
        }
    }
    Ok(roots)
}

/// The TLS connector every connection of the store (and the import) uses.
pub(crate) fn connector(pg: &PostgresConfig) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots(pg)?)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
