//! TLS on the main listener: certificates from files, chosen per host by SNI.

use crate::config::TlsConfig;
use pingora::listeners::tls::TlsSettings;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::collections::HashMap;
use std::sync::Arc;

/// Why the TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.certificates[{index}]: cannot load {cert} / {key}: {reason}")]
    Load {
        index: usize,
        cert: String,
        key: String,
        reason: String,
    },
    #[error("tls: {0}")]
    Setup(String),
}

/// Picks the certificate whose host list holds the SNI name; the first certificate
/// when the client sends no SNI or an unknown name.
#[derive(Debug)]
pub struct SniResolver {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|name| self.by_host.get(&name.to_ascii_lowercase()))
            .unwrap_or(&self.default);
        Some(chosen.clone())
    }
}

/// Load every configured certificate and build the resolver.
pub fn resolver(config: &TlsConfig) -> Result<SniResolver, TlsError> {
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| TlsError::Setup("no crypto provider".into()))?;
    let mut by_host = HashMap::new();
    let mut default = None;
    for (index, c) in config.certificates.iter().enumerate() {
        let (cert, key) = (c.cert.display().to_string(), c.key.display().to_string());
        let load_err = |reason: String| TlsError::Load {
            index,
            cert: cert.clone(),
            key: key.clone(),
            reason,
        };
        let (chain, private) = pingora::tls::load_certs_and_key_files(&cert, &key)
            .map_err(|e| load_err(e.to_string()))?
            .ok_or_else(|| load_err("no certificate or no private key in the files".into()))?;
        let signing = provider
            .key_provider
            .load_private_key(private)
            .map_err(|e| load_err(e.to_string()))?;
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        for host in &c.hosts {
            by_host.insert(host.to_ascii_lowercase(), certified.clone());
        }
        default.get_or_insert(certified);
    }
    let default = default.ok_or_else(|| TlsError::Setup("no certificates configured".into()))?;
    Ok(SniResolver { by_host, default })
}

/// Pingora TLS settings serving the configured certificates by SNI.
pub fn settings(config: &TlsConfig) -> Result<TlsSettings, TlsError> {
    let resolver = resolver(config)?;
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| TlsError::Setup(e.to_string()))?;
    settings.set_cert_resolver(Arc::new(resolver));
    Ok(settings)
}
