//! Thompson sampling over a path's offers: each offer's conversion rate is a Beta
//! posterior from the store's own figures (conversions out of outbound clicks), and an
//! offer's weight is the chance it is the best, drawn by simulation, lifted to a floor
//! so no offer starves. Pure: the random source is passed in.

use rand::Rng;

/// What the store knows of one arm (an offer of a path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ArmData {
    /// Visitors sent to it (distinct clicks with an outbound click to it).
    pub clicks: u64,
    /// Counted conversions attributed to it.
    pub conversions: u64,
}

/// How the bandit moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BanditSettings {
    /// Share every arm keeps at least (0.05: 5 %).
    pub floor: f64,
    /// Clicks every arm needs before weights move from the configured ones.
    pub min_clicks: u64,
    /// Posterior draws per arm.
    pub draws: usize,
}

impl Default for BanditSettings {
    fn default() -> Self {
        BanditSettings {
            floor: 0.05,
            min_clicks: 100,
            draws: 2_000,
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Gamma(shape, 1) draw for shape ≥ 1 (Marsaglia–Tsang).
fn gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(a, b) draw for a, b ≥ 1.
fn beta(a: f64, b: f64, rng: &mut impl Rng) -> f64 {
    let x = gamma(a, rng);
    let y = gamma(b, rng);
    x / (x + y)
}

/// The weights (shares summing to 1) for `arms`, or `None` while some arm has fewer
/// than `settings.min_clicks` clicks (the configured weights stay).
pub fn thompson_weights(
    arms: &[ArmData],
    settings: &BanditSettings,
    rng: &mut impl Rng,
) -> Option<Vec<f64>> {
    if arms.is_empty() || arms.iter().any(|a| a.clicks < settings.min_clicks) {
        return None;
    }
    let n = arms.len();
    let mut wins = vec![0u64; n];
    for _ in 0..settings.draws.max(1) {
        let mut best = (0, f64::MIN);
        for (i, a) in arms.iter().enumerate() {
            let conversions = a.conversions.min(a.clicks) as f64;
            let rate = beta(
                1.0 + conversions,
                1.0 + (a.clicks as f64 - conversions),
                rng,
            );
            if rate > best.1 {
                best = (i, rate);
            }
        }
        wins[best.0] += 1;
    }
    // The floor is kept only as far as it can be: n arms cannot each keep more than 1/n.
    let floor = settings.floor.clamp(0.0, 1.0 / n as f64);
    let spread = 1.0 - floor * n as f64;
    let total = wins.iter().sum::<u64>() as f64;
    Some(
        wins.iter()
            .map(|w| floor + spread * (*w as f64 / total))
            .collect(),
    )
}

/// Shares as integer weights (per mille) for the weighted pick; every arm at least 1.
pub fn per_mille(shares: &[f64]) -> Vec<u32> {
    shares
        .iter()
        .map(|s| ((s * 1000.0).round() as u32).max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn too_little_data_keeps_the_configured_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let s = BanditSettings::default();
        let arms = [
            ArmData {
                clicks: 500,
                conversions: 20,
            },
            ArmData {
                clicks: 99,
                conversions: 9,
            },
        ];
        assert_eq!(thompson_weights(&arms, &s, &mut rng), None);
        assert_eq!(thompson_weights(&[], &s, &mut rng), None);
    }

    /// One offer converting at 2 %, another at 4 %: visitors arrive in rounds, each
    /// round sent by the weights the previous figures gave. After 20 000 visitors the
    /// better offer gets most of the traffic, and the worse never falls below the floor.
    #[test]
    fn the_better_offer_wins_most_traffic_while_the_floor_holds() {
        let mut rng = StdRng::seed_from_u64(42);
        let settings = BanditSettings {
            floor: 0.1,
            min_clicks: 100,
            draws: 1_000,
        };
        let rates = [0.02, 0.04];
        let mut arms = [ArmData::default(); 2];
        let mut weights = vec![0.5, 0.5];
        let mut last_round = [0u64; 2];
        for round in 0..40 {
            let mut sent = [0u64; 2];
            for _ in 0..500 {
                let arm = usize::from(rng.random::<f64>() >= weights[0]);
                sent[arm] += 1;
                arms[arm].clicks += 1;
                if rng.random::<f64>() < rates[arm] {
                    arms[arm].conversions += 1;
                }
            }
            if let Some(w) = thompson_weights(&arms, &settings, &mut rng) {
                assert!(w.iter().all(|s| *s >= 0.1 - 1e-9), "round {round}: {w:?}");
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
                weights = w;
            }
            last_round = sent;
        }
        assert!(
            weights[1] > 0.8,
            "the 4 % offer dominates: {weights:?} after {arms:?}"
        );
        assert!(
            last_round[1] > 3 * last_round[0],
            "it gets most of the traffic: {last_round:?}"
        );
        assert!(
            last_round[0] >= 25,
            "the floor keeps the 2 % offer alive: {last_round:?}"
        );
    }

    #[test]
    fn a_floor_too_high_for_the_arms_is_cut_to_an_even_split() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = BanditSettings {
            floor: 0.9,
            min_clicks: 0,
            draws: 100,
        };
        let arms = [ArmData {
            clicks: 10,
            conversions: 0,
        }; 3];
        let w = thompson_weights(&arms, &s, &mut rng).unwrap();
        assert!(w.iter().all(|x| (x - 1.0 / 3.0).abs() < 1e-9), "{w:?}");
        assert_eq!(per_mille(&[0.95, 0.05, 0.0]), [950, 50, 1]);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use rand::rngs::StdRng;
        use rand::SeedableRng;

        proptest! {
            /// Whatever the figures, weights are shares: each at least the floor,
            /// summing to one.
            #[test]
            fn weights_are_shares_above_the_floor(
                figures in proptest::collection::vec((0u64..5_000, 0u64..5_000), 1..6),
                floor in 0.0f64..0.3,
                seed in any::<u64>(),
            ) {
                let arms: Vec<ArmData> = figures.iter().map(|(c, v)| ArmData { clicks: *c, conversions: *v }).collect();
                let s = BanditSettings { floor, min_clicks: 0, draws: 200 };
                let w = thompson_weights(&arms, &s, &mut StdRng::seed_from_u64(seed)).unwrap();
                let kept = floor.min(1.0 / arms.len() as f64);
                prop_assert!(w.iter().all(|x| *x >= kept - 1e-9));
                prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            }
        }
    }
}
