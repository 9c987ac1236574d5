//! Hot reload of the config file: `SIGHUP`, `POST /api/reload` (admin API) and
//! `clickstamp reload --config FILE` (which calls that endpoint).
//!
//! The file is read and validated exactly as `clickstamp check` and `serve` do. An
//! invalid file changes nothing: the running config keeps serving, the problems are
//! logged, answered (key, problem, fix) and counted in
//! `clickstamp_config_reload_failures_total`. A valid one is swapped in whole and at
//! once ([`Tracker::config`] is an `ArcSwap`): every request reads the config once
//! when it starts and keeps that one to its end, so no request ever mixes two configs,
//! and the campaign and offer indices it holds stay valid.
//!
//! What changes live: campaigns, offers, networks, traffic sources, `[postbacks]`,
//! `[outbox]` (but see below), `[pixel]`, and the `[server]` keys read per request
//! (`public_url`, `client_ip_header`, `trusted_proxies`, `cookie_prefix`) and
//! `secrets.admin_token`. What is compiled from them (offer-link matchers, page
//! templates, the pixel's rate limiter) is rebuilt from the new config on its first use.
//!
//! What needs a restart, because it was bound or opened once at start and cannot be
//! swapped under running connections or writes: the listeners and their limits
//! (`server.listen`, `admin_listen`, `threads`, `max_connections`,
//! `admin_max_connections`, `header_timeout`, `body_timeout`), `server.log_format` (the
//! logger is installed once), `[tls]` (certificates are loaded at start), `[store]` (the
//! open database), `[analytics]` (the ClickHouse client and exporter),
//! `secrets.click_id_key` (every click ID already handed out is signed with it), and
//! `outbox.concurrency` / `outbox.timeout` (the delivery agent's pool). When a reloaded
//! file changes any of these, the rest still applies, the running values are kept,
//! and the answer, the log and `clickstamp_config_restart_pending` name the keys.

use crate::config::{self, Config, ConfigError, ConfigErrors};
use crate::tracker::Tracker;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// What asked for a reload: the `trigger` label of the reload metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP`.
    Signal,
    /// `POST /api/reload` (also what `clickstamp reload` sends).
    Api,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::Api => "api",
        }
    }
}

/// A reload that took effect.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Counts the configs this process has run: 1 is the one it started with.
    pub generation: u64,
    /// SHA-256 of the file now live, hex.
    pub sha256: String,
    /// Keys whose new value waits for a restart (the running value is kept).
    pub restart_required: Vec<String>,
    pub campaigns: usize,
    pub offers: usize,
    pub networks: usize,
    pub traffic_sources: usize,
}

/// A reload that was refused: the old config keeps serving.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The generation still live.
    pub generation: u64,
    pub errors: ConfigErrors,
}

struct ReloadMetrics {
    reloads: IntCounterVec,
    failures: IntCounterVec,
    generation: IntGauge,
    info: IntGaugeVec,
    restart_pending: IntGauge,
}

impl ReloadMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "clickstamp_config_reloads_total",
                "Config reloads that took effect, by trigger (signal, api).",
            ),
            &["trigger"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "clickstamp_config_reload_failures_total",
                "Config reloads refused (invalid or unreadable file; the old config kept serving), by trigger.",
            ),
            &["trigger"],
        )?;
        let generation = IntGauge::new(
            "clickstamp_config_generation",
            "Which config is live: 1 at start, one more per reload that took effect.",
        )?;
        let info = IntGaugeVec::new(
            Opts::new(
                "clickstamp_config_info",
                "Always 1; its sha256 label is the SHA-256 of the live config file (one series at a time).",
            ),
            &["sha256"],
        )?;
        let restart_pending = IntGauge::new(
            "clickstamp_config_restart_pending",
            "Keys of the last loaded config file that differ from the running values and wait for a restart.",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(info.clone()))?;
        registry.register(Box::new(restart_pending.clone()))?;
        Ok(ReloadMetrics {
            reloads,
            failures,
            generation,
            info,
            restart_pending,
        })
    }
}

/// The live part of a reload's state, changed under one lock.
struct Live {
    generation: u64,
    sha256: String,
}

/// Reloads the config file a running instance was started with.
pub struct Reloader {
    tracker: Arc<Tracker>,
    path: PathBuf,
    /// The config the process started with: its restart-only values stay in force.
    started: Arc<Config>,
    /// That file as TOML, for the restart-only sections compared as written.
    started_raw: toml::Table,
    /// One reload at a time; also guards the generation and hash.
    live: tokio::sync::Mutex<Live>,
    metrics: ReloadMetrics,
}

impl Reloader {
    /// A reloader for `tracker`, whose live config was loaded from `path`. Its
    /// metrics go into the tracker's registry (or nowhere, when already registered
    /// there by another reloader, as in an embedding test).
    pub fn new(tracker: Arc<Tracker>, path: &Path) -> Reloader {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let metrics = ReloadMetrics::register(tracker.metrics.registry()).unwrap_or_else(|_| {
            ReloadMetrics::register(&Registry::new()).expect("a fresh registry takes them")
        });
        let sha256 = sha256_hex(&text);
        metrics.generation.set(1);
        metrics.info.with_label_values(&[&sha256]).set(1);
        tracing::info!(generation = 1, sha256 = %sha256, config = %path.display(), "config loaded");
        Reloader {
            started: tracker.config(),
            tracker,
            path: path.to_path_buf(),
            started_raw: text.parse().unwrap_or_default(),
            live: tokio::sync::Mutex::new(Live {
                generation: 1,
                sha256,
            }),
            metrics,
        }
    }

    /// Read, validate and (when valid) swap in the config file.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, Refused> {
        let mut live = self.live.lock().await;
        let path = self.path.clone();
        // Validation reads lander directories and files: off the async workers.
        let loaded = tokio::task::spawn_blocking(move || read_and_validate(&path))
            .await
            .unwrap_or_else(|e| {
                Err(single_error(
                    "(file)",
                    format!("validation did not finish: {e}"),
                    "retry the reload; see the log",
                ))
            });
        let (text, mut config) = match loaded {
            Ok(loaded) => loaded,
            Err(errors) => {
                self.metrics
                    .failures
                    .with_label_values(&[trigger.label()])
                    .inc();
                for e in &errors.0 {
                    tracing::warn!(trigger = trigger.label(), key = %e.key, problem = %e.problem, fix = %e.fix, "config reload refused");
                }
                tracing::warn!(trigger = trigger.label(), problems = errors.0.len(), generation = live.generation, config = %self.path.display(), "config reload refused; the running config keeps serving");
                return Err(Refused {
                    generation: live.generation,
                    errors,
                });
            }
        };
        let raw: toml::Table = text.parse().unwrap_or_default();
        let restart_required =
            restart_only_changes(&self.started, &config, &self.started_raw, &raw);
        keep_running_values(&mut config, &self.started);
        let reloaded = Reloaded {
            generation: live.generation + 1,
            sha256: sha256_hex(&text),
            restart_required,
            campaigns: config.campaigns.len(),
            offers: config.offers.len(),
            networks: config.networks.len(),
            traffic_sources: config.sources.len(),
        };
        self.tracker.replace_config(Arc::new(config));
        let m = &self.metrics;
        m.reloads.with_label_values(&[trigger.label()]).inc();
        m.generation.set(reloaded.generation as i64);
        let _ = m.info.remove_label_values(&[&live.sha256]);
        m.info.with_label_values(&[&reloaded.sha256]).set(1);
        m.restart_pending
            .set(reloaded.restart_required.len() as i64);
        live.generation = reloaded.generation;
        live.sha256 = reloaded.sha256.clone();
        tracing::info!(
            trigger = trigger.label(),
            generation = reloaded.generation,
            sha256 = %reloaded.sha256,
            campaigns = reloaded.campaigns,
            offers = reloaded.offers,
            "config reloaded"
        );
        if !reloaded.restart_required.is_empty() {
            tracing::warn!(keys = %reloaded.restart_required.join(", "), "config reloaded, but these keys changed and only take effect after a restart; their running values are kept");
        }
        Ok(reloaded)
    }
}

fn single_error(key: &str, problem: String, fix: &str) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        key: key.into(),
        problem,
        fix: fix.into(),
    }])
}

/// The file's text and its validated config, as [`config::load`] would give it (the
/// text is kept so that the hash and the comparison see the same bytes).
fn read_and_validate(path: &Path) -> Result<(String, Config), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        single_error(
            "(file)",
            format!("cannot read {}: {e}", path.display()),
            "put the config file back where clickstamp serve was started with it",
        )
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = config::parse(&text, &base_dir)?;
    Ok((text, config))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The restart-only keys whose value in `new` differs from the running one. Typed
/// values are compared where they have one; `[store]`, `[tls]` and `[analytics]` are
/// compared as written, key by key.
fn restart_only_changes(
    running: &Config,
    new: &Config,
    running_raw: &toml::Table,
    new_raw: &toml::Table,
) -> Vec<String> {
    let (a, b) = (&running.server, &new.server);
    let typed = [
        ("server.listen", a.listen != b.listen),
        ("server.admin_listen", a.admin_listen != b.admin_listen),
        ("server.threads", a.threads != b.threads),
        (
            "server.max_connections",
            a.max_connections != b.max_connections,
        ),
        (
            "server.admin_max_connections",
            a.admin_max_connections != b.admin_max_connections,
        ),
        (
            "server.header_timeout",
            a.deadlines.header != b.deadlines.header,
        ),
        ("server.body_timeout", a.deadlines.body != b.deadlines.body),
        ("server.log_format", a.log_format != b.log_format),
        (
            "secrets.click_id_key",
            running.secrets.click_id_key != new.secrets.click_id_key,
        ),
        (
            "outbox.concurrency",
            running.outbox.concurrency != new.outbox.concurrency,
        ),
        (
            "outbox.timeout",
            running.outbox.timeout != new.outbox.timeout,
        ),
    ];
    let mut changed: Vec<String> = typed
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| key.to_string())
        .collect();
    for section in ["store", "tls", "analytics"] {
        changed.extend(section_changes(section, running_raw, new_raw));
    }
    changed
}

/// The keys of `section` (a top-level table) that differ between the two files.
fn section_changes(section: &str, running: &toml::Table, new: &toml::Table) -> Vec<String> {
    let (a, b) = (running.get(section), new.get(section));
    if a == b {
        return Vec::new();
    }
    match (
        a.and_then(toml::Value::as_table),
        b.and_then(toml::Value::as_table),
    ) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| format!("{section}.{k}"))
                .collect()
        }
        // Added or removed whole.
        _ => vec![section.to_string()],
    }
}

/// Put the running values of every restart-only part into `new`, so that nothing
/// reads a value that is not in force (a store path, a listener address).
fn keep_running_values(new: &mut Config, running: &Config) {
    let (s, r) = (&mut new.server, &running.server);
    s.listen = r.listen;
    s.admin_listen = r.admin_listen;
    s.threads = r.threads;
    s.max_connections = r.max_connections;
    s.admin_max_connections = r.admin_max_connections;
    s.deadlines = r.deadlines;
    s.log_format = r.log_format;
    new.secrets.click_id_key = running.secrets.click_id_key.clone();
    new.outbox.concurrency = running.outbox.concurrency;
    new.outbox.timeout = running.outbox.timeout;
    new.store = running.store.clone();
    new.tls = running.tls.clone();
    new.analytics = running.analytics.clone();
}

/// The admin API's answer to `POST /api/reload`: 200 with what is live now, or 422
/// with the problems (each with key, problem and fix).
pub async fn api_answer(reloader: &Reloader) -> (http::StatusCode, serde_json::Value) {
    match reloader.reload(Trigger::Api).await {
        Ok(reloaded) => {
            let mut body = serde_json::json!(reloaded);
            body["status"] = "reloaded".into();
            (http::StatusCode::OK, body)
        }
        Err(refused) => (
            http::StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({
                "status": "refused",
                "error": "invalid_config",
                "message": format!("the config file was not reloaded: {} problem(s); the running config (generation {}) keeps serving", refused.errors.0.len(), refused.generation),
                "generation": refused.generation,
                "errors": refused.errors.0.iter().map(|e| serde_json::json!({
                    "key": e.key, "problem": e.problem, "fix": e.fix,
                })).collect::<Vec<_>>(),
            }),
        ),
    }
}

/// Whether a `SIGHUP` arrived before the reload service was listening.
///
/// A signal's default action is the process's end, so until a handler is installed a
/// `systemctl reload` (or a log rotator's HUP) sent while the store opens or the
/// migrations run would kill the node. [`catch_hangups_early`] installs one at the
/// start of `serve`; the hangups it catches are reloaded once [`ReloadOnHangup`]
/// starts.
#[derive(Debug, Clone, Default)]
pub struct EarlyHangup(Arc<std::sync::atomic::AtomicBool>);

impl EarlyHangup {
    fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

/// Catch `SIGHUP` from now on, recording it in the flag returned. Said in the log if it
/// cannot be installed; the node then still serves, as before.
pub fn catch_hangups_early() -> EarlyHangup {
    let flag = EarlyHangup::default();
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.0.clone()) {
        eprintln!("clickstamp: cannot catch SIGHUP early ({e}): a SIGHUP before the node is serving would end it");
    }
    flag
}

/// Reloads on `SIGHUP`. Pingora itself handles only SIGINT, SIGTERM and SIGQUIT.
pub struct ReloadOnHangup {
    reloader: Arc<Reloader>,
    early: EarlyHangup,
}

impl ReloadOnHangup {
    /// Reload with `reloader` on each hangup, starting with one `early` caught.
    pub fn new(reloader: Arc<Reloader>, early: EarlyHangup) -> Self {
        ReloadOnHangup { reloader, early }
    }
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: reload through the admin API (clickstamp reload)");
                return;
            }
        };
        // Listening now: a hangup from here on reaches `hangups`. One that came while
        // the node was starting is honoured once.
        if self.early.take() {
            tracing::info!("SIGHUP received while starting: reloading the config");
            let _ = self.reloader.reload(Trigger::Signal).await;
        }
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    // The early flag is set by every hangup too; clear it so it does
                    // not pile up.
                    self.early.take();
                    tracing::info!("SIGHUP: reloading the config");
                    // The outcome is logged and counted by `reload`.
                    let _ = self.reloader.reload(Trigger::Signal).await;
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

/// `clickstamp reload --config FILE`: check the file as `check` does, then ask the
/// instance it describes (its admin address and token) to reload. Exit 0 when the
/// reload took effect, 2 when the config was refused, 1 when the instance could not
/// be asked.
pub fn run_cli(path: &Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{}: not reloaded: {errors}", path.display());
            return ExitCode::from(2);
        }
    };
    match crate::cli::ops::admin(&config, "POST", "/api/reload") {
        Ok(answer) => {
            println!(
                "{}: reloaded (generation {}, sha256 {}; {} campaigns, {} offers, {} networks, {} traffic sources)",
                path.display(),
                answer["generation"],
                answer["sha256"].as_str().unwrap_or("-"),
                answer["campaigns"],
                answer["offers"],
                answer["networks"],
                answer["traffic_sources"],
            );
            let pending: Vec<&str> = answer["restart_required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            if !pending.is_empty() {
                println!(
                    "restart required for: {} (the running values are kept until then)",
                    pending.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(crate::cli::ops::OpsError::Refused { status: 422, body }) => {
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let errors = answer["errors"].as_array().cloned().unwrap_or_default();
            eprintln!(
                "{}: not reloaded: {} problem(s) in the config; the running config keeps serving:",
                path.display(),
                errors.len()
            );
            for e in &errors {
                eprintln!(
                    "  - {}: {} (fix: {})",
                    e["key"].as_str().unwrap_or("-"),
                    e["problem"].as_str().unwrap_or("-"),
                    e["fix"].as_str().unwrap_or("-")
                );
            }
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("clickstamp reload: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::section_changes;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("valid TOML")
    }

    #[test]
    fn section_changes_name_each_changed_key_or_the_whole_section() {
        let running = table("[store]\npath = \"a.sqlite\"\nbatch_max = 64\n");
        let same = table("[store]\nbatch_max = 64\npath = \"a.sqlite\"\n");
        assert!(section_changes("store", &running, &same).is_empty());
        let moved = table("[store]\npath = \"b.sqlite\"\nsync = \"full\"\nbatch_max = 64\n");
        assert_eq!(
            section_changes("store", &running, &moved),
            ["store.path", "store.sync"]
        );
        let with_tls = table("[tls]\nlisten = \"127.0.0.1:8443\"\n");
        assert_eq!(section_changes("tls", &running, &with_tls), ["tls"]);
        assert!(section_changes("analytics", &running, &moved).is_empty());
    }
}
