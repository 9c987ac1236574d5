//! The current offer weights of every path that optimises (`optimise = "thompson"`),
//! recomputed from the store's own figures at most every `traffic.optimise_interval`,
//! in the background of the request that finds them stale. Each node computes its own
//! from the shared figures, so nodes on one PostgreSQL database agree up to sampling.

use super::bandit::{per_mille, thompson_weights, ArmData, BanditSettings};
use crate::config::routing::Optimise;
use crate::config::Config;
use crate::store::Store;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One offer of a path, as the rotation API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArmWeight {
    pub offer: String,
    /// The weight in the config.
    pub configured_weight: u32,
    /// The weight in use (per mille when the bandit has moved, else the configured).
    pub weight: u32,
    /// `weight` as a share of the path's total.
    pub share: f64,
    #[serde(flatten)]
    pub data: ArmData,
}

/// One optimising path.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PathWeights {
    pub campaign: String,
    pub path: String,
    /// False while some offer has too few clicks (`traffic.optimise_min_clicks`):
    /// the configured weights are in use.
    pub moving: bool,
    pub arms: Vec<ArmWeight>,
}

/// Every optimising path's weights, as last computed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RotationSnapshot {
    /// When they were computed (Unix ms; 0: not yet).
    pub updated_ms: u64,
    pub paths: Vec<PathWeights>,
}

impl RotationSnapshot {
    /// The weights in use for `path` of `campaign`, by offer id, when it optimises and
    /// has moved.
    pub fn weights(&self, campaign: &str, path: &str) -> Option<HashMap<&str, u32>> {
        let p = self
            .paths
            .iter()
            .find(|p| p.campaign == campaign && p.path == path && p.moving)?;
        Some(
            p.arms
                .iter()
                .map(|a| (a.offer.as_str(), a.weight))
                .collect(),
        )
    }
}

/// The weights and their refresh.
#[derive(Default)]
pub struct Rotation {
    current: ArcSwap<RotationSnapshot>,
    refreshing: AtomicBool,
    started_ms: AtomicU64,
}

impl Rotation {
    pub fn snapshot(&self) -> Arc<RotationSnapshot> {
        self.current.load_full()
    }

    /// Start a refresh in the background when the weights are older than the
    /// interval and none is running. Needs a Tokio runtime (the request's).
    pub fn refresh_if_stale(
        self: &Arc<Self>,
        config: &Arc<Config>,
        store: &Arc<dyn Store>,
        now_ms: u64,
    ) {
        let interval = config.traffic.optimise_interval.as_millis() as u64;
        let optimising = config
            .campaigns
            .iter()
            .any(|c| c.routing.paths().any(|p| p.optimise == Optimise::Thompson));
        if !optimising || now_ms.saturating_sub(self.started_ms.load(Ordering::Relaxed)) < interval
        {
            return;
        }
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.started_ms.store(now_ms, Ordering::Relaxed);
        let (me, config, store) = (Arc::clone(self), Arc::clone(config), Arc::clone(store));
        tokio::spawn(async move {
            match compute(&config, store.as_ref(), now_ms).await {
                Ok(snapshot) => me.current.store(Arc::new(snapshot)),
                Err(e) => {
                    tracing::warn!(error = %e, "rotation: weights not refreshed; the previous ones stay")
                }
            }
            me.refreshing.store(false, Ordering::Release);
        });
    }
}

/// The weights of every optimising path from the store's figures.
pub async fn compute(
    config: &Config,
    store: &dyn Store,
    now_ms: u64,
) -> Result<RotationSnapshot, crate::store::StoreError> {
    let settings = BanditSettings {
        floor: config.traffic.optimise_floor,
        min_clicks: config.traffic.optimise_min_clicks,
        ..Default::default()
    };
    let mut paths = Vec::new();
    for c in &config.campaigns {
        let optimising: Vec<_> = c
            .routing
            .paths()
            .filter(|p| p.optimise == Optimise::Thompson)
            .collect();
        if optimising.is_empty() {
            continue;
        }
        let since = now_ms.saturating_sub(c.attribution_window.as_millis() as u64);
        let figures = store.rotation_figures(&c.id, since).await?;
        for path in optimising {
            let data: Vec<ArmData> = path
                .offers
                .iter()
                .map(|(o, _)| {
                    let offer = &config.offers[*o].id;
                    figures
                        .iter()
                        .filter(|f| f.route == path.name && &f.offer_id == offer)
                        .fold(ArmData::default(), |acc, f| ArmData {
                            clicks: acc.clicks + f.clicks,
                            conversions: acc.conversions + f.conversions,
                        })
                })
                .collect();
            let moved = thompson_weights(&data, &settings, &mut rand::rng()).map(|s| per_mille(&s));
            let weights: Vec<u32> = moved
                .clone()
                .unwrap_or_else(|| path.offers.iter().map(|(_, w)| *w).collect());
            let total: u32 = weights.iter().sum::<u32>().max(1);
            paths.push(PathWeights {
                campaign: c.id.clone(),
                path: path.name.clone(),
                moving: moved.is_some(),
                arms: path
                    .offers
                    .iter()
                    .zip(weights)
                    .zip(data)
                    .map(|(((o, configured), weight), data)| ArmWeight {
                        offer: config.offers[*o].id.clone(),
                        configured_weight: *configured,
                        weight,
                        share: f64::from(weight) / f64::from(total),
                        data,
                    })
                    .collect(),
            });
        }
    }
    Ok(RotationSnapshot {
        updated_ms: now_ms,
        paths,
    })
}

impl Rotation {
    /// Make `snapshot` the current weights.
    pub fn replace(&self, snapshot: RotationSnapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

/// `GET /api/rotation`: every optimising path's weights and the figures behind them,
/// recomputed first when older than the interval.
pub async fn api(tracker: &crate::tracker::Tracker) -> (http::StatusCode, serde_json::Value) {
    let config = tracker.config();
    let rotation = &tracker.traffic.rotation;
    let now = crate::tracker::Tracker::now_ms();
    let interval = config.traffic.optimise_interval.as_millis() as u64;
    if now.saturating_sub(rotation.snapshot().updated_ms) >= interval {
        match compute(&config, tracker.store.as_ref(), now).await {
            Ok(snapshot) => rotation.replace(snapshot),
            Err(e) => {
                return (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({ "error": "store_unavailable", "message": e.to_string() }),
                )
            }
        }
    }
    let snapshot = rotation.snapshot();
    (
        http::StatusCode::OK,
        serde_json::json!({
            "updated_ms": snapshot.updated_ms,
            "interval_ms": interval,
            "floor": config.traffic.optimise_floor,
            "min_clicks": config.traffic.optimise_min_clicks,
            "paths": snapshot.paths,
        }),
    )
}
