//! The query planner: one pure step that decides how a search runs.
//!
//! Every decision that used to be spread over the request handler, the collection and the
//! graph lives here: the beam width `ef` (request or default, at least k, at most `max_ef`),
//! whether a filter is selective enough to score its matches exactly, and the fallbacks when
//! an approximate step comes back short. As in Qdrant's segment dispatch, the choice compares
//! a cardinality estimate with a threshold; the result is an ordered list of [`Step`]s that
//! [`crate::SpaceView::execute`] runs until one gives a final answer.
//!
//! | query                                   | steps                                         |
//! |-----------------------------------------|-----------------------------------------------|
//! | filter, estimate ≤ max(threshold, k)    | `Exact`                                       |
//! | filter, estimate above that             | `Graph{ef}`, `Exact`                          |
//! | no filter                               | `Graph{ef}`, `GraphWidened{ef·widen}`, `Exact` |
//!
//! A step's hits are final once there are at least min(k, possible) of them, `possible` being
//! the exact number of live candidates; the executor only counts them when a step comes back
//! short, so the common case never touches the catalogue.
//!
//! The estimate is an input, so the planner stays deterministic and cheap to test. The root
//! crate starts out with a sample of its catalogue ([`Matching::Sampled`]); issue #7 replaces
//! that with a real cardinality estimate without changing the rules here.

use crate::error::{IndexError, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerConfig {
    /// Beam width when the request names none.
    pub ef_search: usize,
    /// Largest beam any step may use, widening included: the beam is allocated up front, so
    /// this bounds a query's memory. Only k itself may exceed it (a beam narrower than k
    /// cannot return k hits).
    pub max_ef: usize,
    /// A filter estimated to match at most this many items (or at most k) is answered by an
    /// exact scan of its matches: below this size scoring every match beats a graph walk that
    /// has to skip the non-matching majority.
    pub exact_scan_threshold: usize,
    /// How much wider the retry beam is when tombstones crowded the first one.
    pub widen_factor: usize,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            ef_search: 64,
            max_ef: 10_000,
            exact_scan_threshold: 2_000,
            widen_factor: 8,
        }
    }
}

impl PlannerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.ef_search == 0 {
            return Err(IndexError::Parameter("ef_search must be at least 1".into()));
        }
        if self.max_ef < self.ef_search {
            return Err(IndexError::Parameter(format!(
                "max_ef ({}) must be at least ef_search ({})",
                self.max_ef, self.ef_search
            )));
        }
        if self.widen_factor == 0 {
            return Err(IndexError::Parameter(
                "widen_factor must be at least 1 (1 disables widening)".into(),
            ));
        }
        Ok(())
    }

    /// The beam width for a query that needs `k` hits: the requested one or the default,
    /// capped at `max_ef`, and never below k. The only place `ef` is decided.
    pub fn ef(&self, k: usize, requested: Option<usize>) -> usize {
        requested.unwrap_or(self.ef_search).min(self.max_ef).max(k)
    }

    /// The retry beam after `ef` came back short: `widen_factor` times wider, capped at
    /// `max_ef` but never narrower than `ef` itself. Since ef ≥ k this is also ≥ k·widen_factor
    /// whenever the cap allows it.
    pub fn widened_ef(&self, ef: usize) -> usize {
        ef.saturating_mul(self.widen_factor)
            .min(self.max_ef)
            .max(ef)
    }
}

/// How many live vectors of the space pass the query's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// No filter: every live vector is a candidate.
    All,
    /// A filter whose matches were counted.
    Exact(usize),
    /// A filter tried on `sampled` live items of the space, `matched` of which passed; the
    /// estimate is `live · matched / sampled`, rounded to nearest. The root crate samples its
    /// catalogue until issue #7 brings a proper estimator.
    Sampled { matched: usize, sampled: usize },
}

/// What the planner needs to know about one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInput {
    /// Hits the caller needs (offset + top_k: the whole window, not one page).
    pub k: usize,
    /// The request's beam width, if it named one.
    pub ef: Option<usize>,
    /// Live vectors in the space (tombstones excluded).
    pub live: usize,
    pub matching: Matching,
}

impl PlanInput {
    /// Estimated number of live vectors that pass the filter, never more than `live`.
    pub fn estimated_matches(&self) -> usize {
        match self.matching {
            Matching::All => self.live,
            Matching::Exact(n) => n.min(self.live),
            // An empty sample says nothing; assuming everything matches sends the query to the
            // graph first, which falls back to an exact scan if the filter was selective after all.
            Matching::Sampled { sampled: 0, .. } => self.live,
            Matching::Sampled { matched, sampled } => {
                // u128: live · matched fits, and matched ≤ sampled keeps the result ≤ live.
                let scaled = self.live as u128 * matched.min(sampled) as u128;
                let sampled = sampled as u128;
                let (whole, rest) = (scaled / sampled, scaled % sampled);
                (whole + u128::from(2 * rest >= sampled)) as usize
            }
        }
    }
}

/// One way of answering, tried in plan order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Approximate search of every layer with beam width `ef`, results merged.
    Graph { ef: usize },
    /// The same with a wider beam, for when tombstones crowded the first one.
    GraphWidened { ef: usize },
    /// Score every live candidate that passes the filter. Always complete.
    Exact,
}

impl Step {
    pub fn path(self) -> Path {
        match self {
            Step::Graph { .. } => Path::Graph,
            Step::GraphWidened { .. } => Path::GraphWidened,
            Step::Exact => Path::Exact,
        }
    }
}

/// Which kind of step produced an answer; `as_str` names it for logs and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    Graph,
    GraphWidened,
    Exact,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Graph => "graph",
            Path::GraphWidened => "graph_widened",
            Path::Exact => "exact",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Hits wanted.
    pub k: usize,
    /// The beam width of the first graph step (also what a caller reports as "the" ef).
    pub ef: usize,
    /// The filter's estimated matches the decision was based on.
    pub estimated_matches: usize,
    /// Tried in order; [`plan`] always ends them with [`Step::Exact`].
    pub steps: Vec<Step>,
}

/// Decides how to answer a query. Pure: same config and input, same plan.
pub fn plan(config: &PlannerConfig, input: &PlanInput) -> Plan {
    let k = input.k;
    let ef = config.ef(k, input.ef);
    let estimated_matches = input.estimated_matches();
    let steps = if k == 0 {
        // Nothing to find; the exact step answers that without reading anything.
        vec![Step::Exact]
    } else {
        match input.matching {
            Matching::All => {
                let wide = config.widened_ef(ef);
                if wide > ef {
                    vec![
                        Step::Graph { ef },
                        Step::GraphWidened { ef: wide },
                        Step::Exact,
                    ]
                } else {
                    // At the cap a retry would walk the same beam again.
                    vec![Step::Graph { ef }, Step::Exact]
                }
            }
            // No widening for filters: a short graph answer means the filter is selective
            // enough that the matches, already known to be few, are cheaper to score.
            Matching::Exact(_) | Matching::Sampled { .. } => {
                if estimated_matches <= config.exact_scan_threshold.max(k) {
                    vec![Step::Exact]
                } else {
                    vec![Step::Graph { ef }, Step::Exact]
                }
            }
        }
    };
    Plan {
        k,
        ef,
        estimated_matches,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PlannerConfig {
        PlannerConfig::default()
    }

    fn input(k: usize, live: usize, matching: Matching) -> PlanInput {
        PlanInput {
            k,
            ef: None,
            live,
            matching,
        }
    }

    #[test]
    fn defaults_are_todays_server_defaults_and_valid() {
        let c = cfg();
        assert_eq!(
            (
                c.ef_search,
                c.max_ef,
                c.exact_scan_threshold,
                c.widen_factor
            ),
            (64, 10_000, 2_000, 8)
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_rejects_unusable_configs() {
        assert!(PlannerConfig {
            ef_search: 0,
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(PlannerConfig {
            max_ef: 63,
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(PlannerConfig {
            max_ef: 64,
            ..cfg()
        }
        .validate()
        .is_ok());
        assert!(PlannerConfig {
            widen_factor: 0,
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(PlannerConfig {
            exact_scan_threshold: 0,
            ..cfg()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_typos() {
        let c: PlannerConfig = serde_json::from_str(r#"{"ef_search": 100}"#).unwrap();
        assert_eq!(
            c,
            PlannerConfig {
                ef_search: 100,
                ..cfg()
            }
        );
        assert!(serde_json::from_str::<PlannerConfig>(r#"{"ef_serch": 100}"#).is_err());
    }

    #[test]
    fn ef_default_override_at_least_k_and_capped() {
        let c = cfg();
        assert_eq!(c.ef(10, None), 64, "default");
        assert_eq!(c.ef(10, Some(200)), 200, "request overrides the default");
        assert_eq!(c.ef(10, Some(16)), 16, "a request may also narrow it");
        assert_eq!(c.ef(100, None), 100, "never below k");
        assert_eq!(
            c.ef(100, Some(16)),
            100,
            "never below k, even when requested"
        );
        assert_eq!(c.ef(10, Some(0)), 10);
        assert_eq!(c.ef(10, Some(50_000)), 10_000, "capped at max_ef");
        assert_eq!(
            c.ef(20_000, None),
            20_000,
            "k beats the cap: a narrower beam cannot return k"
        );
        // The plan carries the same number.
        let p = plan(
            &c,
            &PlanInput {
                k: 10,
                ef: Some(200),
                live: 1_000_000,
                matching: Matching::All,
            },
        );
        assert_eq!(p.ef, 200);
        assert_eq!(p.steps[0], Step::Graph { ef: 200 });
    }

    #[test]
    fn widening_multiplies_and_caps() {
        let c = cfg();
        assert_eq!(c.widened_ef(64), 512);
        assert_eq!(c.widened_ef(2_000), 10_000, "capped at max_ef");
        assert_eq!(c.widened_ef(10_000), 10_000);
        assert_eq!(
            c.widened_ef(20_000),
            20_000,
            "never narrower than the first beam"
        );
        assert_eq!(c.widened_ef(usize::MAX / 2), usize::MAX / 2, "no overflow");
        assert_eq!(
            PlannerConfig {
                widen_factor: 1,
                ..c
            }
            .widened_ef(64),
            64
        );
    }

    #[test]
    fn no_filter_walks_graph_then_wider_graph_then_exact() {
        let p = plan(&cfg(), &input(10, 1_000_000, Matching::All));
        assert_eq!(
            p.steps,
            vec![
                Step::Graph { ef: 64 },
                Step::GraphWidened { ef: 512 },
                Step::Exact
            ]
        );
        assert_eq!(p.estimated_matches, 1_000_000);
        // k above ef: both beams start from k (today's max(ef·8, k·8)).
        let p = plan(&cfg(), &input(100, 1_000_000, Matching::All));
        assert_eq!(
            p.steps,
            vec![
                Step::Graph { ef: 100 },
                Step::GraphWidened { ef: 800 },
                Step::Exact
            ]
        );
        // Even a tiny space goes to the graph first: it has none below min_graph_size and
        // its segment scans exactly anyway.
        let p = plan(&cfg(), &input(10, 5, Matching::All));
        assert_eq!(p.steps[0], Step::Graph { ef: 64 });
    }

    #[test]
    fn no_filter_skips_a_widening_that_the_cap_makes_pointless() {
        let p = plan(
            &cfg(),
            &PlanInput {
                k: 10,
                ef: Some(10_000),
                live: 1_000_000,
                matching: Matching::All,
            },
        );
        assert_eq!(p.steps, vec![Step::Graph { ef: 10_000 }, Step::Exact]);
        let c = PlannerConfig {
            widen_factor: 1,
            ..cfg()
        };
        assert_eq!(
            plan(&c, &input(10, 1_000, Matching::All)).steps,
            vec![Step::Graph { ef: 64 }, Step::Exact]
        );
        // Partly capped: widened as far as allowed.
        let p = plan(
            &cfg(),
            &PlanInput {
                k: 10,
                ef: Some(5_000),
                live: 1_000_000,
                matching: Matching::All,
            },
        );
        assert_eq!(p.steps[1], Step::GraphWidened { ef: 10_000 });
    }

    #[test]
    fn selective_filter_goes_exact_broad_filter_goes_graph_first() {
        let c = cfg();
        for n in [0, 1, 1_999, 2_000] {
            assert_eq!(
                plan(&c, &input(10, 1_000_000, Matching::Exact(n))).steps,
                vec![Step::Exact],
                "{n} matches"
            );
        }
        for n in [2_001, 500_000, 1_000_000] {
            assert_eq!(
                plan(&c, &input(10, 1_000_000, Matching::Exact(n))).steps,
                vec![Step::Graph { ef: 64 }, Step::Exact],
                "{n} matches"
            );
        }
    }

    #[test]
    fn k_larger_than_the_threshold_raises_it() {
        // Needing 5000 hits out of 3000 matches: scoring them all is the only complete answer.
        let c = cfg();
        assert_eq!(
            plan(&c, &input(5_000, 1_000_000, Matching::Exact(3_000))).steps,
            vec![Step::Exact]
        );
        assert_eq!(
            plan(&c, &input(5_000, 1_000_000, Matching::Exact(5_000))).steps,
            vec![Step::Exact]
        );
        assert_eq!(
            plan(&c, &input(5_000, 1_000_000, Matching::Exact(5_001))).steps,
            vec![Step::Graph { ef: 5_000 }, Step::Exact]
        );
        let c = PlannerConfig {
            exact_scan_threshold: 0,
            ..cfg()
        };
        assert_eq!(
            plan(&c, &input(10, 100, Matching::Exact(10))).steps,
            vec![Step::Exact]
        );
        assert_eq!(
            plan(&c, &input(10, 100, Matching::Exact(11))).steps[0],
            Step::Graph { ef: 64 }
        );
    }

    #[test]
    fn exact_count_is_capped_at_live() {
        let p = plan(&cfg(), &input(10, 1_000, Matching::Exact(5_000)));
        assert_eq!(p.estimated_matches, 1_000);
        assert_eq!(p.steps, vec![Step::Exact]);
    }

    #[test]
    fn sampled_estimate_scales_and_rounds_to_nearest() {
        let est = |live, matched, sampled| {
            input(10, live, Matching::Sampled { matched, sampled }).estimated_matches()
        };
        assert_eq!(est(1_000_000, 1, 1_000), 1_000);
        assert_eq!(est(10, 1, 3), 3, "3.33 rounds down");
        assert_eq!(est(10, 2, 3), 7, "6.67 rounds up");
        assert_eq!(est(5, 1, 2), 3, "2.5 rounds half up");
        assert_eq!(est(1_000, 0, 500), 0);
        assert_eq!(est(1_000, 500, 500), 1_000);
        assert_eq!(
            est(1_000, 900, 500),
            1_000,
            "matched above sampled is clamped"
        );
        assert_eq!(
            est(1_000, 0, 0),
            1_000,
            "an empty sample assumes everything matches"
        );
        assert_eq!(est(0, 0, 0), 0);
        assert_eq!(
            est(usize::MAX, usize::MAX - 1, usize::MAX),
            usize::MAX - 1,
            "no overflow"
        );
    }

    #[test]
    fn sampled_estimate_drives_the_same_threshold() {
        let c = cfg();
        // 1M live, 2 of 1000 sampled match → 2000: exact. 3 of 1000 → 3000: graph first.
        let p = plan(
            &c,
            &input(
                10,
                1_000_000,
                Matching::Sampled {
                    matched: 2,
                    sampled: 1_000,
                },
            ),
        );
        assert_eq!(
            (p.estimated_matches, p.steps.clone()),
            (2_000, vec![Step::Exact])
        );
        let p = plan(
            &c,
            &input(
                10,
                1_000_000,
                Matching::Sampled {
                    matched: 3,
                    sampled: 1_000,
                },
            ),
        );
        assert_eq!(
            (p.estimated_matches, p.steps),
            (3_000, vec![Step::Graph { ef: 64 }, Step::Exact])
        );
        // An empty sample of a non-empty space: graph first, exact if that comes back short.
        let p = plan(
            &c,
            &input(
                10,
                1_000_000,
                Matching::Sampled {
                    matched: 0,
                    sampled: 0,
                },
            ),
        );
        assert_eq!(p.steps, vec![Step::Graph { ef: 64 }, Step::Exact]);
    }

    #[test]
    fn k_zero_plans_one_exact_step() {
        for m in [
            Matching::All,
            Matching::Exact(10),
            Matching::Sampled {
                matched: 1,
                sampled: 2,
            },
        ] {
            assert_eq!(plan(&cfg(), &input(0, 100, m)).steps, vec![Step::Exact]);
        }
    }

    #[test]
    fn paths_name_their_steps() {
        assert_eq!(Step::Graph { ef: 1 }.path().as_str(), "graph");
        assert_eq!(
            Step::GraphWidened { ef: 1 }.path().as_str(),
            "graph_widened"
        );
        assert_eq!(Step::Exact.path().as_str(), "exact");
    }
}
