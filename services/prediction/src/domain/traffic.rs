//! The traffic configuration: a weighted split over the champion and challengers, and a set
//! of shadow versions.
//!
//! Routing is a deterministic function of the traffic key (the user id, or the symbol for an
//! anonymous caller): SHA-256 of the key picks one of 100 buckets, and the splits, in a fixed
//! order (by model reference), own consecutive ranges of buckets as wide as their percent. The
//! same key therefore lands on the same version for as long as the split is unchanged, and a
//! change of weights moves only the keys in the buckets that change hands.

use sha2::{Digest as _, Sha256};

use super::model_ref::ModelRef;

/// Why a traffic configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrafficError {
    /// Nothing to route to.
    #[error("traffic needs at least one split")]
    NoSplits,
    /// The weights must describe every request exactly once.
    #[error("split percents must sum to 100, got {0}")]
    Sum(u32),
    /// A percent outside 0–100.
    #[error("split percent of {model} must be 0-100, got {percent}")]
    Percent { model: ModelRef, percent: u32 },
    /// The same version twice in the splits or the shadows.
    #[error("{0} appears more than once")]
    Duplicate(ModelRef),
    /// The champion must be in the split and receive traffic.
    #[error("the champion {0} must be in the splits with at least 1 percent")]
    Champion(ModelRef),
    /// A version cannot both serve and shadow.
    #[error("{0} cannot be both in the splits and a shadow")]
    ShadowInSplits(ModelRef),
    /// Retiring the champion would leave traffic without a reference version.
    #[error("{0} is the champion and cannot be retired; promote another version first")]
    RetireChampion(ModelRef),
}

/// Part a version plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Champion,
    Challenger,
    Shadow,
    Idle,
}

/// One entry of the split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub model: ModelRef,
    pub percent: u32,
}

/// A valid traffic configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Sorted by model: the order buckets are handed out in.
    splits: Vec<Split>,
    shadows: Vec<ModelRef>,
    champion: ModelRef,
}

/// The bucket (0–99) of a traffic key.
pub fn bucket(key: &str) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % 100) as u32
}

impl Traffic {
    pub fn new(
        mut splits: Vec<Split>,
        mut shadows: Vec<ModelRef>,
        champion: ModelRef,
    ) -> Result<Self, TrafficError> {
        if splits.is_empty() {
            return Err(TrafficError::NoSplits);
        }
        splits.sort_by(|a, b| a.model.cmp(&b.model));
        shadows.sort();
        for pair in splits.windows(2) {
            if pair[0].model == pair[1].model {
                return Err(TrafficError::Duplicate(pair[0].model.clone()));
            }
        }
        for pair in shadows.windows(2) {
            if pair[0] == pair[1] {
                return Err(TrafficError::Duplicate(pair[0].clone()));
            }
        }
        for split in &splits {
            if split.percent > 100 {
                return Err(TrafficError::Percent {
                    model: split.model.clone(),
                    percent: split.percent,
                });
            }
        }
        let sum: u32 = splits.iter().map(|s| s.percent).sum();
        if sum != 100 {
            return Err(TrafficError::Sum(sum));
        }
        if !splits.iter().any(|s| s.model == champion && s.percent >= 1) {
            return Err(TrafficError::Champion(champion));
        }
        if let Some(both) = shadows
            .iter()
            .find(|m| splits.iter().any(|s| &s.model == *m))
        {
            return Err(TrafficError::ShadowInSplits(both.clone()));
        }
        Ok(Self {
            splits,
            shadows,
            champion,
        })
    }

    /// All traffic to one version.
    pub fn only(champion: ModelRef) -> Self {
        Self {
            splits: vec![Split {
                model: champion.clone(),
                percent: 100,
            }],
            shadows: Vec::new(),
            champion,
        }
    }

    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    pub fn shadows(&self) -> &[ModelRef] {
        &self.shadows
    }

    pub fn champion(&self) -> &ModelRef {
        &self.champion
    }

    /// The version serving `key`.
    pub fn route(&self, key: &str) -> &ModelRef {
        let bucket = bucket(key);
        let mut upper = 0;
        for split in &self.splits {
            upper += split.percent;
            if bucket < upper {
                return &split.model;
            }
        }
        // Unreachable for a valid split (percents sum to 100); the champion is the safe answer.
        &self.champion
    }

    pub fn role_of(&self, model: &ModelRef) -> Role {
        if *model == self.champion {
            Role::Champion
        } else if self.splits.iter().any(|s| &s.model == model) {
            Role::Challenger
        } else if self.shadows.contains(model) {
            Role::Shadow
        } else {
            Role::Idle
        }
    }

    pub fn percent_of(&self, model: &ModelRef) -> u32 {
        self.splits
            .iter()
            .find(|s| &s.model == model)
            .map_or(0, |s| s.percent)
    }

    /// Every version that forecasts on a new bar: the champion, then the challengers, then the
    /// shadows.
    pub fn live(&self) -> Vec<(ModelRef, Role)> {
        let mut live = vec![(self.champion.clone(), Role::Champion)];
        live.extend(
            self.splits
                .iter()
                .filter(|s| s.model != self.champion)
                .map(|s| (s.model.clone(), Role::Challenger)),
        );
        live.extend(self.shadows.iter().map(|m| (m.clone(), Role::Shadow)));
        live
    }

    /// `model` becomes the champion and takes over the previous champion's weight (added to its
    /// own); the previous champion stays in the split with 0 percent, or leaves it when
    /// `retire_previous`. A shadow leaves the shadow set. No change for the current champion.
    pub fn promote(&self, model: &ModelRef, retire_previous: bool) -> Self {
        if *model == self.champion {
            return self.clone();
        }
        let inherited = self.percent_of(&self.champion);
        let mut splits: Vec<Split> = self
            .splits
            .iter()
            .filter(|s| s.model != *model)
            .filter(|s| !(retire_previous && s.model == self.champion))
            .map(|s| Split {
                model: s.model.clone(),
                percent: if s.model == self.champion {
                    0
                } else {
                    s.percent
                },
            })
            .collect();
        splits.push(Split {
            model: model.clone(),
            percent: self.percent_of(model) + inherited,
        });
        splits.sort_by(|a, b| a.model.cmp(&b.model));
        Self {
            splits,
            shadows: self
                .shadows
                .iter()
                .filter(|m| *m != model)
                .cloned()
                .collect(),
            champion: model.clone(),
        }
    }

    /// `model` leaves the split (its weight goes to the champion) and the shadow set.
    pub fn retire(&self, model: &ModelRef) -> Result<Self, TrafficError> {
        if *model == self.champion {
            return Err(TrafficError::RetireChampion(model.clone()));
        }
        let freed = self.percent_of(model);
        let splits = self
            .splits
            .iter()
            .filter(|s| s.model != *model)
            .map(|s| Split {
                model: s.model.clone(),
                percent: s.percent + if s.model == self.champion { freed } else { 0 },
            })
            .collect();
        Ok(Self {
            splits,
            shadows: self
                .shadows
                .iter()
                .filter(|m| *m != model)
                .cloned()
                .collect(),
            champion: self.champion.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn m(version: &str) -> ModelRef {
        ModelRef::parse("spx-lstm", version).unwrap()
    }

    fn split(version: &str, percent: u32) -> Split {
        Split {
            model: m(version),
            percent,
        }
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let err = |splits, shadows, champion| Traffic::new(splits, shadows, champion).unwrap_err();
        assert_eq!(err(vec![], vec![], m("1")), TrafficError::NoSplits);
        assert_eq!(
            err(vec![split("1", 60), split("2", 30)], vec![], m("1")),
            TrafficError::Sum(90)
        );
        assert_eq!(
            err(vec![split("1", 50), split("1", 50)], vec![], m("1")),
            TrafficError::Duplicate(m("1"))
        );
        assert_eq!(
            err(vec![split("1", 0), split("2", 100)], vec![], m("1")),
            TrafficError::Champion(m("1"))
        );
        assert_eq!(
            err(vec![split("2", 100)], vec![], m("1")),
            TrafficError::Champion(m("1"))
        );
        assert_eq!(
            err(vec![split("1", 100)], vec![m("1")], m("1")),
            TrafficError::ShadowInSplits(m("1"))
        );
        assert_eq!(
            err(vec![split("1", 101)], vec![], m("1")),
            TrafficError::Percent {
                model: m("1"),
                percent: 101
            }
        );
    }

    /// Over 100,000 keys each version's share is within 0.5 percentage points of its weight
    /// (the binomial standard deviation at 20 % is 0.13 points, so this is a ~4σ bound), and
    /// every key routes the same way every time.
    #[test]
    fn the_split_follows_the_weights_and_sticks_per_key() {
        let traffic = Traffic::new(
            vec![split("1", 70), split("2", 20), split("3", 10)],
            vec![m("4")],
            m("1"),
        )
        .unwrap();
        let n = 100_000;
        let mut counts: HashMap<ModelRef, u32> = HashMap::new();
        for i in 0..n {
            let key = format!("user-{i}");
            let version = traffic.route(&key).clone();
            assert_eq!(traffic.route(&key), &version, "sticky for {key}");
            *counts.entry(version).or_default() += 1;
        }
        for (version, weight) in [("1", 70.0), ("2", 20.0), ("3", 10.0)] {
            let share = 100.0 * counts[&m(version)] as f64 / n as f64;
            assert!(
                (share - weight).abs() < 0.5,
                "{version}: {share:.2} % vs {weight} %"
            );
        }
        assert!(!counts.contains_key(&m("4")), "shadows never serve");
    }

    #[test]
    fn changing_weights_moves_only_the_keys_of_buckets_that_change_hands() {
        let before = Traffic::new(vec![split("1", 90), split("2", 10)], vec![], m("1")).unwrap();
        let after = Traffic::new(vec![split("1", 80), split("2", 20)], vec![], m("1")).unwrap();
        for i in 0..10_000 {
            let key = format!("k{i}");
            if before.route(&key) == &m("2") {
                // Buckets 90–99 belonged to 2 and now 80–99 do: nobody leaves 2.
                assert_eq!(after.route(&key), &m("2"), "{key}");
            }
        }
    }

    #[test]
    fn promote_hands_over_the_champion_weight() {
        let traffic =
            Traffic::new(vec![split("1", 80), split("2", 20)], vec![m("3")], m("1")).unwrap();
        let promoted = traffic.promote(&m("2"), false);
        assert_eq!(promoted.champion(), &m("2"));
        assert_eq!(promoted.percent_of(&m("2")), 100);
        assert_eq!(promoted.role_of(&m("1")), Role::Challenger);
        assert_eq!(promoted.percent_of(&m("1")), 0);
        // A shadow promoted leaves the shadows; the previous champion can be dropped.
        let promoted = traffic.promote(&m("3"), true);
        assert_eq!(promoted.percent_of(&m("3")), 80);
        assert_eq!(promoted.role_of(&m("1")), Role::Idle);
        assert!(promoted.shadows().is_empty());
        assert_eq!(traffic.promote(&m("1"), true), traffic);
        // The result is itself valid.
        Traffic::new(
            promoted.splits().to_vec(),
            promoted.shadows().to_vec(),
            promoted.champion().clone(),
        )
        .unwrap();
    }

    #[test]
    fn retire_gives_the_weight_to_the_champion() {
        let traffic =
            Traffic::new(vec![split("1", 80), split("2", 20)], vec![m("3")], m("1")).unwrap();
        let retired = traffic.retire(&m("2")).unwrap();
        assert_eq!(retired.percent_of(&m("1")), 100);
        assert_eq!(retired.role_of(&m("2")), Role::Idle);
        assert_eq!(
            traffic.retire(&m("1")).unwrap_err(),
            TrafficError::RetireChampion(m("1"))
        );
        assert!(traffic.retire(&m("3")).unwrap().shadows().is_empty());
        let live: Vec<ModelRef> = traffic.live().into_iter().map(|(m, _)| m).collect();
        assert_eq!(live, vec![m("1"), m("2"), m("3")]);
    }
}
