use std::fmt;
use std::net::IpAddr;

use crate::policy::CycleError;
use crate::source::SourceListError;

/// Why the store refused a change. A refused change leaves the stored state and the
/// published snapshot exactly as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// An allowed source is invalid; `index` names it.
    InvalidSource(SourceListError),
    /// A blocked source is invalid; `index` names it. Without an index, the blocked
    /// sources together cover every address of a family.
    InvalidBlockedSource(SourceListError),
    /// The new parents would make a group its own ancestor.
    Cycle(CycleError),
    /// An id is empty, too long or has characters that are not allowed.
    InvalidId {
        /// `policy`, `user`, `userGroup`, `resource` or `organization`.
        kind: &'static str,
        /// The id as given, cut to 64 characters, control and invisible characters
        /// escaped.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The organization already has the most policies it may have.
    PolicyLimitExceeded {
        /// The limit.
        limit: usize,
    },
    /// The policy would have more direct targets (users plus groups) than allowed.
    TargetLimitExceeded {
        /// The limit.
        limit: usize,
        /// How many it would have.
        count: usize,
    },
    /// The organization already has the most resource allowlists it may have.
    ResourceLimitExceeded {
        /// The limit.
        limit: usize,
    },
    /// A policy or list would have more allowed sources than allowed.
    SourceLimitExceeded {
        /// The limit.
        limit: usize,
        /// How many it would have.
        count: usize,
    },
    /// A policy or list would have more blocked sources than allowed (as many as
    /// allowed sources, counted apart).
    BlockedSourceLimitExceeded {
        /// The limit.
        limit: usize,
        /// How many it would have.
        count: usize,
    },
    /// The organization's group hierarchy would name more groups than allowed
    /// ([`Limits::max_groups_per_org`](super::Limits::max_groups_per_org)).
    GroupLimitExceeded {
        /// The limit.
        limit: usize,
        /// How many it would name.
        count: usize,
    },
    /// A group would have more direct parents than allowed
    /// ([`Limits::max_parents_per_group`](super::Limits::max_parents_per_group)).
    ParentLimitExceeded {
        /// The limit.
        limit: usize,
        /// How many it would have.
        count: usize,
    },
    /// The group hierarchy would be deeper than allowed
    /// ([`Limits::max_group_depth`](super::Limits::max_group_depth)).
    DepthLimitExceeded {
        /// The limit, in parent links.
        limit: usize,
        /// The depth it would have.
        depth: usize,
    },
    /// A policy with this id already exists.
    Conflict {
        /// The id.
        id: String,
    },
    /// No such policy or group in the organization.
    NotFound {
        /// `policy` or `userGroup`.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// The change was made against an older version of the policy.
    VersionMismatch {
        /// The version the caller had.
        expected: u64,
        /// The version stored.
        actual: u64,
    },
    /// The change would deny the acting administrator's own current address.
    LockoutPrevented {
        /// The administrator's address, if it is known.
        addr: Option<IpAddr>,
        /// Why the address is unknown, when it is.
        unknown: Option<String>,
    },
    /// Switching a rule from report to enforce would refuse callers its report-only
    /// summary has seen refused ([`Store::would_deny`](super::Store::would_deny)):
    /// review them, or force the change.
    WouldDenyCallers {
        /// The kind of rule.
        kind: crate::report::RuleKind,
        /// The rule id.
        rule: String,
        /// The distinct (user, address) pairs listed in the summary.
        callers: usize,
        /// Every request the rule would have refused, listed callers' and others'.
        requests: u64,
    },
    /// An API token cannot be created as asked (its name, its expiry, or the owner's
    /// token count); the reason says which.
    InvalidApiToken {
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The backend failed.
    Backend(BackendError),
}

impl StoreError {
    /// The machine-readable code the admin API reports for this error.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidSource(err) | Self::InvalidBlockedSource(err) => err.error.code(),
            Self::InvalidId {
                kind: "organization",
                ..
            } => "invalidOrganization",
            Self::Cycle(_) | Self::InvalidId { .. } => "malformedDocument",
            Self::PolicyLimitExceeded { .. } => "policyLimitExceeded",
            Self::TargetLimitExceeded { .. } => "targetLimitExceeded",
            Self::ResourceLimitExceeded { .. } => "resourceLimitExceeded",
            Self::SourceLimitExceeded { .. } | Self::BlockedSourceLimitExceeded { .. } => {
                "sourceLimitExceeded"
            }
            Self::GroupLimitExceeded { .. } => "groupLimitExceeded",
            Self::ParentLimitExceeded { .. } => "parentLimitExceeded",
            Self::DepthLimitExceeded { .. } => "depthLimitExceeded",
            Self::Conflict { .. } => "conflict",
            Self::InvalidApiToken { .. } => "apiTokenRefused",
            Self::NotFound { .. } => "notFound",
            Self::VersionMismatch { .. } => "versionMismatch",
            Self::LockoutPrevented { .. } => "lockoutPrevented",
            Self::WouldDenyCallers { .. } => "wouldDenyCallers",
            Self::Backend(err) if err.is_refused() => "valueNotStorable",
            Self::Backend(_) => "backendError",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSource(err) => err.fmt(f),
            Self::InvalidBlockedSource(SourceListError {
                index: Some(index),
                error,
            }) => write!(f, "blocked source {index}: {error}"),
            Self::InvalidBlockedSource(err) => err.error.fmt(f),
            Self::Cycle(err) => err.fmt(f),
            Self::InvalidId { kind, id, reason } => write!(f, "{kind} id `{id}` {reason}"),
            Self::PolicyLimitExceeded { limit } => write!(
                f,
                "the organization already has {limit} policies, the most allowed: delete one, or combine policies"
            ),
            Self::TargetLimitExceeded { limit, count } => write!(
                f,
                "a policy may have at most {limit} direct users and groups, and this one would have {count}: assign a group instead of many users"
            ),
            Self::ResourceLimitExceeded { limit } => write!(
                f,
                "the organization already has {limit} resources with an allowlist, the most allowed: delete one first"
            ),
            Self::SourceLimitExceeded { limit, count } => write!(
                f,
                "a policy or list may have at most {limit} allowed sources, and this one would have {count}: use wider CIDR ranges or address ranges"
            ),
            Self::BlockedSourceLimitExceeded { limit, count } => write!(
                f,
                "a policy or list may have at most {limit} blocked sources, and this one would have {count}: use wider CIDR ranges or address ranges"
            ),
            Self::GroupLimitExceeded { limit, count } => write!(
                f,
                "the organization's group hierarchy may name at most {limit} groups, and this change would make it {count}: remove the parent links of groups no policy needs"
            ),
            Self::ParentLimitExceeded { limit, count } => write!(
                f,
                "a group may have at most {limit} direct parents, and this one would have {count}: nest it in a common parent group instead"
            ),
            Self::DepthLimitExceeded { limit, depth } => write!(
                f,
                "groups may be nested at most {limit} levels below a top-level group, and this change would nest one {depth} levels deep: attach the group higher up"
            ),
            Self::Conflict { id } => write!(f, "a policy with id `{id}` already exists: choose another id, or replace it"),
            Self::NotFound { kind, id } => write!(f, "no {kind} `{id}` in this organization"),
            Self::InvalidApiToken { reason } => write!(f, "API token refused: {reason}"),
            Self::VersionMismatch { expected, actual } => write!(
                f,
                "the policy changed since version {expected} (it is now at version {actual}): fetch it again and retry"
            ),
            Self::LockoutPrevented {
                addr: Some(addr), ..
            } => write!(
                f,
                "this change would deny your own current address {addr}: add it to the allowed sources, or force the change"
            ),
            Self::LockoutPrevented {
                addr: None,
                unknown,
            } => write!(
                f,
                "this change would deny you: your current address could not be determined ({}), and no list or policy admits an unknown address; fix how the address is found, or force the change if you mean it",
                unknown.as_deref().unwrap_or("no address was given")
            ),
            Self::WouldDenyCallers {
                kind,
                rule,
                callers,
                requests,
            } => {
                let path = match kind {
                    crate::report::RuleKind::Policy => format!("ipAllowlistPolicies/{rule}"),
                    crate::report::RuleKind::SiteAllowlist => "siteAllowlist".to_owned(),
                    crate::report::RuleKind::ResourceAllowlist => {
                        format!("resourceAllowlists/{rule}")
                    }
                };
                write!(
                    f,
                    "enforcing this {kind} would refuse {callers} caller{} (distinct user and address pairs) that it refused {requests} time{} while reporting: review them at /api/v1/actions/{path}/wouldDeny, widen the sources, or force the change",
                    if *callers == 1 { "" } else { "s" },
                    if *requests == 1 { "" } else { "s" },
                )
            }
            Self::Backend(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidSource(err) | Self::InvalidBlockedSource(err) => Some(err),
            Self::Cycle(err) => Some(err),
            Self::Backend(err) => Some(err),
            _ => None,
        }
    }
}

impl From<BackendError> for StoreError {
    fn from(err: BackendError) -> Self {
        Self::Backend(err)
    }
}

/// A persistence failure: the storage could not be read or written, or what it holds
/// is not valid.
///
/// Most are transient (the database is down or overloaded: retrying later may work).
/// A [refused](Self::refused) one is permanent: the storage holds nothing like the
/// value it was given (a constraint, an encoding, a length), and sending the same
/// change again will fail the same way. The admin API answers the first with 503
/// `backendError` and the second with 422 `valueNotStorable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    message: String,
    refused: bool,
}

impl BackendError {
    /// A transient error with a message a person can act on.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            refused: false,
        }
    }

    /// A permanent refusal of the value given (a constraint, an encoding, a length),
    /// which retrying cannot fix. The message is shown to the caller of the admin API:
    /// say what the storage refused, never where it is (hosts, files).
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            refused: true,
        }
    }

    /// Whether this is a [refusal](Self::refused) of the value, which retrying cannot
    /// fix.
    #[must_use]
    pub fn is_refused(&self) -> bool {
        self.refused
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.refused {
            write!(f, "the storage refused the value: {}", self.message)
        } else {
            write!(f, "storage error: {}", self.message)
        }
    }
}

impl std::error::Error for BackendError {}
