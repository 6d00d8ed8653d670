//! Counters through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`); without the feature every function here does nothing.
//!
//! | counter | labels |
//! |---|---|
//! | `ip_allowlist_allowed_total` | `organization`, `layer` (`policy`, `site`, `resource`) |
//! | `ip_allowlist_denied_total` | `organization`, `layer`, `reason` (`ipNotAllowed`, `clientIpUnknown`, `policiesUnavailable`) |
//! | `ip_allowlist_report_only_would_deny_total` | `organization`, `rule_kind`, `rule` |
//!
//! "Allowed" counts requests that a rule applied to and admitted; requests no rule
//! applies to are not counted. Label values are bounded: after
//! [`MAX_LABEL_VALUES`] distinct organizations (and as many distinct rules), further
//! ones are counted under `other`, so a tenant cannot blow up the metric's cardinality.

/// The most distinct values an organization or rule label takes before `other`.
pub const MAX_LABEL_VALUES: usize = 1000;

#[cfg(feature = "metrics")]
mod enabled {
    use std::collections::HashSet;
    use std::sync::{Arc, OnceLock, RwLock};

    use super::MAX_LABEL_VALUES;

    /// A bounded set of label values: known values are shared, unknown ones past the
    /// bound become `other`. Labels are handed to `metrics` as shared `Arc<str>`s, so
    /// counting a request allocates nothing once its values are known.
    struct Bounded {
        seen: RwLock<HashSet<Arc<str>>>,
        other: Arc<str>,
    }

    impl Bounded {
        fn new() -> Self {
            Self {
                seen: RwLock::new(HashSet::new()),
                other: Arc::from("other"),
            }
        }

        fn label(&self, value: &str) -> Arc<str> {
            if let Ok(seen) = self.seen.read() {
                if let Some(known) = seen.get(value) {
                    return Arc::clone(known);
                }
            }
            let Ok(mut seen) = self.seen.write() else {
                return Arc::clone(&self.other);
            };
            if let Some(known) = seen.get(value) {
                return Arc::clone(known);
            }
            if seen.len() >= MAX_LABEL_VALUES {
                return Arc::clone(&self.other);
            }
            let value: Arc<str> = Arc::from(value);
            seen.insert(Arc::clone(&value));
            value
        }
    }

    fn orgs() -> &'static Bounded {
        static ORGS: OnceLock<Bounded> = OnceLock::new();
        ORGS.get_or_init(Bounded::new)
    }

    fn rules() -> &'static Bounded {
        static RULES: OnceLock<Bounded> = OnceLock::new();
        RULES.get_or_init(Bounded::new)
    }

    pub(crate) fn allowed(organization: &str, layer: &'static str) {
        let organization = orgs().label(organization);
        metrics::counter!("ip_allowlist_allowed_total", "organization" => organization, "layer" => layer)
            .increment(1);
    }

    pub(crate) fn denied(organization: &str, layer: &'static str, reason: &'static str) {
        let organization = orgs().label(organization);
        metrics::counter!(
            "ip_allowlist_denied_total",
            "organization" => organization,
            "layer" => layer,
            "reason" => reason
        )
        .increment(1);
    }

    pub(crate) fn would_deny(organization: &str, rule_kind: &'static str, rule: &str) {
        let organization = orgs().label(organization);
        let rule = rules().label(rule);
        metrics::counter!(
            "ip_allowlist_report_only_would_deny_total",
            "organization" => organization,
            "rule_kind" => rule_kind,
            "rule" => rule
        )
        .increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    #[inline]
    pub(crate) fn allowed(_organization: &str, _layer: &'static str) {}

    #[inline]
    pub(crate) fn denied(_organization: &str, _layer: &'static str, _reason: &'static str) {}

    #[inline]
    pub(crate) fn would_deny(_organization: &str, _rule_kind: &'static str, _rule: &str) {}
}

pub(crate) use self::enabled::{allowed, denied, would_deny};
