//! Policies, their targets, and the group hierarchy of an organization.
//!
//! This is the authoritative, uncompiled form of the rules, as an administrator edits
//! them. The [`snapshot`](crate::snapshot) module compiles it into the structure the
//! layer decides with.
//!
//! - A [`Policy`] has an id, an optional name, a non-empty list of
//!   [allowed sources](crate::source), an optional list of blocked sources, and targets:
//!   user ids and group ids. A policy with no targets is kept but inactive.
//! - A policy admits an address inside its allowed sources and outside its blocked
//!   sources. Several applicable policies combine by union: one that admits the address
//!   is enough, so a policy's blocked sources only restrict that policy.
//! - A policy applies to a caller when the caller's user id is one of its users, or one
//!   of the caller's groups, or any ancestor of those groups, is one of its groups.
//! - [`GroupHierarchy`] records each group's parents: a DAG, several parents allowed,
//!   cycles refused.
//! - Everything belongs to one organization ([`OrgId`]); single-tenant applications use
//!   [`OrgId::default()`] without thinking about it.
//!
//! # Example
//!
//! ```
//! use tower_ip_allowlist::policy::{GroupHierarchy, OrgPolicies, Policy};
//!
//! let mut org = OrgPolicies::default();
//! let policy = Policy::builder("admin-vpn-only")
//!     .name("Admins from the VPN only")
//!     .sources(["203.0.113.10/32", "198.51.100.0/24"])?
//!     .user("admin_user")
//!     .group("adminGroup")
//!     .build()?;
//! assert!(policy.is_active());
//! org.insert_policy(policy);
//!
//! // Members of child groups are covered too.
//! org.groups.set_parents("oncallAdmins", ["adminGroup"])?;
//! assert!(org.groups.set_parents("adminGroup", ["oncallAdmins"]).is_err()); // a cycle
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::source::{
    check_blocked_coverage, check_coverage, parse_blocked_sources, parse_sources, AllowedSource,
    SourceError, SourceListError,
};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(Arc::from(id))
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(Arc::from(id))
            }
        }

        impl From<&String> for $name {
            fn from(id: &String) -> Self {
                Self(Arc::from(id.as_str()))
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

id_type! {
    /// An organization (tenant). Policies and groups belong to exactly one.
    ///
    /// The default, `"default"`, is the organization of callers that carry none.
    OrgId
}
id_type! {
    /// A user, as the authentication layer names it (a JWT `sub`, say).
    UserId
}
id_type! {
    /// A user group.
    GroupId
}
id_type! {
    /// A policy's id, unique within its organization.
    PolicyId
}
id_type! {
    /// A resource (a project, say) that can have its own allowlist.
    ResourceId
}

/// The longest user, group, organization, resource or policy id, in bytes (UTF-8).
pub const MAX_ID_BYTES: usize = 255;

/// Why an id is not valid; see [`validate_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_BYTES`] bytes.
    TooLong,
    /// The id holds a control character (NUL, a line break, DEL, ...).
    ControlCharacter,
    /// The id holds an invisible formatting character: a zero-width character, a
    /// bidirectional control or a byte order mark, which would let two ids that look
    /// alike differ.
    InvisibleCharacter,
    /// The id begins or ends with white space.
    SurroundingWhitespace,
}

impl IdError {
    /// What is wrong, as the end of a sentence naming the id ("user id `x` ...").
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::Empty => "is empty",
            Self::TooLong => "is longer than 255 bytes",
            Self::ControlCharacter => {
                "holds a control character (such as NUL, a tab or a line break)"
            }
            Self::InvisibleCharacter => {
                "holds an invisible formatting character (zero-width, bidirectional control or byte order mark)"
            }
            Self::SurroundingWhitespace => "begins or ends with white space",
        }
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the id {}", self.reason())
    }
}

impl std::error::Error for IdError {}

/// The one rule every user, group, organization and resource id follows, wherever it
/// comes from (a token, an admin document, the store's API) and whatever the backend:
/// 1 to [`MAX_ID_BYTES`] bytes of UTF-8, no control characters, no invisible
/// formatting characters, no white space at either end. Anything else is allowed
/// (`alice@example.com`, `CN=Admins,OU=Groups`, `группа`), so the ids of real
/// identity providers pass unchanged. Policy ids follow this rule and a stricter
/// one on top (they appear in URLs).
///
/// ```
/// use tower_ip_allowlist::policy::{validate_id, IdError};
///
/// assert_eq!(validate_id("alice@example.com"), Ok(()));
/// assert_eq!(validate_id("acme\0"), Err(IdError::ControlCharacter));
/// assert_eq!(validate_id(&"a".repeat(256)), Err(IdError::TooLong));
/// ```
///
/// # Errors
///
/// The first [`IdError`] found.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    if id.chars().any(is_invisible) {
        return Err(IdError::InvisibleCharacter);
    }
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return Err(IdError::SurroundingWhitespace);
    }
    Ok(())
}

/// Zero-width characters, bidirectional controls and the byte order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Whether a rule refuses requests from outside it, or only reports them.
///
/// A report-only rule is evaluated on every request and never denies; when it would
/// have denied, the layers emit a `tracing` event (and a metric, with the `metrics`
/// feature) naming the rule, the user and the address. It is how a list is rolled out
/// without locking anyone out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Enforcement {
    /// Requests from outside the rule are refused.
    #[default]
    Enforce,
    /// Requests from outside the rule are let through and reported.
    Report,
}

impl Enforcement {
    /// `enforce` or `report`, as the admin API writes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Report => "report",
        }
    }

    /// Parses `enforce` or `report`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "enforce" => Some(Self::Enforce),
            "report" => Some(Self::Report),
            _ => None,
        }
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A list of allowed sources that applies to requests rather than to users: an
/// organization's site list, or a resource's list. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceList {
    sources: Vec<AllowedSource>,
    blocked: Vec<AllowedSource>,
    enforcement: Enforcement,
}

impl SourceList {
    /// A list that enforces `sources`.
    ///
    /// # Errors
    ///
    /// [`SourceError::Empty`] for an empty list, [`SourceError::CoversEverything`] when
    /// the sources together admit every address of a family.
    pub fn new(sources: Vec<AllowedSource>) -> Result<Self, SourceError> {
        if sources.is_empty() {
            return Err(SourceError::Empty);
        }
        check_coverage(&sources)?;
        Ok(Self {
            sources,
            blocked: Vec::new(),
            enforcement: Enforcement::Enforce,
        })
    }

    /// Parses and validates `sources`.
    ///
    /// # Errors
    ///
    /// The first source that does not parse, with its index, an empty list, or sources
    /// that together admit every address of a family.
    pub fn parse<I, S>(sources: I) -> Result<Self, SourceListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let sources = parse_sources(sources)?;
        Ok(Self {
            sources,
            blocked: Vec::new(),
            enforcement: Enforcement::Enforce,
        })
    }

    /// Parses a stored list: each source is validated, but a list stored before the
    /// coverage check existed still loads (the store warns about it).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn parse_stored<I, S>(sources: I) -> Result<Self, SourceListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self {
            sources: crate::source::parse_each(sources)?,
            blocked: Vec::new(),
            enforcement: Enforcement::Enforce,
        })
    }

    /// Sets the blocked sources: addresses refused even inside the allowed sources
    /// (empty: none).
    ///
    /// # Errors
    ///
    /// [`SourceError::BlocksEverything`] when they together cover every address of a
    /// family.
    pub fn with_blocked_sources(
        mut self,
        blocked: Vec<AllowedSource>,
    ) -> Result<Self, SourceError> {
        check_blocked_coverage(&blocked)?;
        self.blocked = blocked;
        Ok(self)
    }

    /// Parses and sets the blocked sources (empty: none).
    ///
    /// # Errors
    ///
    /// The first source that does not parse, with its index, or sources that together
    /// cover every address of a family.
    pub fn with_blocked<I, S>(self, blocked: I) -> Result<Self, SourceListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let blocked = parse_blocked_sources(blocked)?;
        Ok(Self { blocked, ..self })
    }

    /// Sets stored blocked sources, each already validated, without the coverage check
    /// (as [`parse_stored`](Self::parse_stored) does for the allowed ones).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn with_stored_blocked(mut self, blocked: Vec<AllowedSource>) -> Self {
        self.blocked = blocked;
        self
    }

    /// Sets whether the list enforces or only reports.
    #[must_use]
    pub fn with_enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// The allowed sources.
    #[must_use]
    pub fn sources(&self) -> &[AllowedSource] {
        &self.sources
    }

    /// Whether the list enforces or only reports.
    #[must_use]
    pub fn enforcement(&self) -> Enforcement {
        self.enforcement
    }

    /// The blocked sources: refused even inside the allowed ones. Often empty.
    #[must_use]
    pub fn blocked_sources(&self) -> &[AllowedSource] {
        &self.blocked
    }

    /// Whether `addr` is inside the list: inside an allowed source and outside every
    /// blocked one (the slow, obvious way).
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.sources.iter().any(|source| source.contains(addr))
            && !self.blocked.iter().any(|source| source.contains(addr))
    }
}

/// An organization's site allowlist: once enabled, every request of the organization,
/// authenticated or not, must come from inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteList {
    /// Whether the list is in force (kept, but ignored, when disabled).
    pub enabled: bool,
    /// The sources, and whether they enforce or report.
    pub list: SourceList,
}

impl OrgId {
    /// The id of the default organization, used when a caller carries none.
    pub const DEFAULT: &'static str = "default";
}

impl Default for OrgId {
    /// The default organization; one shared allocation, so resolving it per request
    /// (as the list layers do for anonymous callers) costs a reference count.
    fn default() -> Self {
        static DEFAULT: std::sync::OnceLock<OrgId> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(|| Self::from(Self::DEFAULT)).clone()
    }
}

/// One IP allowlist policy: allowed sources and the users and groups it applies to.
///
/// Build one with [`Policy::builder`]; see the [module docs](self) for the semantics.
#[derive(Clone, PartialEq, Eq)]
pub struct Policy(Box<PolicyFields>);

/// A policy's fields, behind one pointer: an organization's `BTreeMap` of policies
/// allocates room for eleven values in its first node, so a value of 144 bytes made a
/// one-policy organization cost ~1.6 KB in that node alone (issue #13, "Memory").
#[derive(Clone, PartialEq, Eq)]
struct PolicyFields {
    id: PolicyId,
    // Boxed rather than `String` and `Vec`s: no spare room, 8 bytes less each.
    name: Option<Box<str>>,
    sources: Box<[AllowedSource]>,
    blocked: Box<[AllowedSource]>,
    /// Sorted, without duplicates: a set, without a `BTreeSet`'s node of eleven
    /// (~200 bytes for one user).
    users: Box<[UserId]>,
    /// Sorted, without duplicates.
    groups: Box<[GroupId]>,
    enforcement: Enforcement,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = &*self.0;
        f.debug_struct("Policy")
            .field("id", &fields.id)
            .field("name", &fields.name)
            .field("sources", &fields.sources)
            .field("blocked", &fields.blocked)
            // As sets, as they printed when they were `BTreeSet`s: audit records and
            // logs written before and after read alike.
            .field("users", &AsSet(&fields.users))
            .field("groups", &AsSet(&fields.groups))
            .field("enforcement", &fields.enforcement)
            .finish()
    }
}

/// A sorted slice printed as a set (`{"a", "b"}`).
struct AsSet<'a, T>(&'a [T]);

impl<T: fmt::Debug> fmt::Debug for AsSet<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0).finish()
    }
}

impl Policy {
    /// Starts a policy with the given id.
    pub fn builder(id: impl Into<PolicyId>) -> PolicyBuilder {
        PolicyBuilder {
            id: id.into(),
            name: None,
            sources: Vec::new(),
            blocked: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            enforcement: Enforcement::Enforce,
        }
    }

    /// Whether the policy enforces or only reports.
    #[must_use]
    pub fn enforcement(&self) -> Enforcement {
        self.0.enforcement
    }

    /// Sets whether the policy enforces or only reports.
    pub fn set_enforcement(&mut self, enforcement: Enforcement) {
        self.0.enforcement = enforcement;
    }

    /// The policy's id.
    #[must_use]
    pub fn id(&self) -> &PolicyId {
        &self.0.id
    }

    /// The human-readable name, if any.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The allowed sources; never empty.
    #[must_use]
    pub fn sources(&self) -> &[AllowedSource] {
        &self.0.sources
    }

    /// The blocked sources: refused even inside the allowed ones. Often empty.
    #[must_use]
    pub fn blocked_sources(&self) -> &[AllowedSource] {
        &self.0.blocked
    }

    /// Whether the policy admits `addr`: inside one of its allowed sources and outside
    /// every blocked one (the slow, obvious way; whether it applies to a caller is not
    /// considered).
    #[must_use]
    pub fn admits(&self, addr: IpAddr) -> bool {
        self.0.sources.iter().any(|source| source.contains(addr))
            && !self.0.blocked.iter().any(|source| source.contains(addr))
    }

    /// Users the policy is assigned to directly, sorted, each once.
    #[must_use]
    pub fn users(&self) -> &[UserId] {
        &self.0.users
    }

    /// Groups the policy is assigned to (their descendants are covered too), sorted,
    /// each once.
    #[must_use]
    pub fn groups(&self) -> &[GroupId] {
        &self.0.groups
    }

    /// Number of direct targets: users plus groups. Members of groups do not count.
    #[must_use]
    pub fn target_count(&self) -> usize {
        self.0.users.len() + self.0.groups.len()
    }

    /// A policy with no targets is kept but affects nobody.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.target_count() > 0
    }

    /// Renames the policy (`None` removes the name).
    pub fn set_name(&mut self, name: Option<String>) {
        self.0.name = name.map(String::into_boxed_str);
    }

    /// Replaces the allowed sources.
    ///
    /// # Errors
    ///
    /// [`SourceError::Empty`] for an empty list, [`SourceError::CoversEverything`] when
    /// the sources together admit every address of a family; the policy is left
    /// unchanged.
    pub fn set_sources(&mut self, sources: Vec<AllowedSource>) -> Result<(), SourceError> {
        if sources.is_empty() {
            return Err(SourceError::Empty);
        }
        check_coverage(&sources)?;
        self.0.sources = sources.into_boxed_slice();
        Ok(())
    }

    /// Replaces the blocked sources (empty: none).
    ///
    /// # Errors
    ///
    /// [`SourceError::BlocksEverything`] when they together cover every address of a
    /// family; the policy is left unchanged.
    pub fn set_blocked_sources(&mut self, blocked: Vec<AllowedSource>) -> Result<(), SourceError> {
        check_blocked_coverage(&blocked)?;
        self.0.blocked = blocked.into_boxed_slice();
        Ok(())
    }

    /// Assigns users and groups; already assigned ones are left as they are.
    /// Returns whether anything changed.
    pub fn add_targets(
        &mut self,
        users: impl IntoIterator<Item = UserId>,
        groups: impl IntoIterator<Item = GroupId>,
    ) -> bool {
        let before = self.target_count();
        let fields = &mut *self.0;
        edit_set(&mut fields.users, |all| all.extend(users));
        edit_set(&mut fields.groups, |all| all.extend(groups));
        // Adding never removes: something changed exactly when there are more.
        self.target_count() != before
    }

    /// Unassigns users and groups; missing ones are ignored. Returns whether anything
    /// changed. Removing the last target leaves the policy inactive, not deleted.
    pub fn remove_targets<'a>(
        &mut self,
        users: impl IntoIterator<Item = &'a UserId>,
        groups: impl IntoIterator<Item = &'a GroupId>,
    ) -> bool {
        let before = self.target_count();
        let fields = &mut *self.0;
        let users = into_set(users.into_iter().collect());
        edit_set(&mut fields.users, |all| {
            all.retain(|user| users.binary_search(&user).is_err());
        });
        let groups = into_set(groups.into_iter().collect());
        edit_set(&mut fields.groups, |all| {
            all.retain(|group| groups.binary_search(&group).is_err());
        });
        // Removing never adds: something changed exactly when there are fewer.
        self.target_count() != before
    }

    /// Replaces both target sets (a `BTreeSet` each, or any list; duplicates count
    /// once).
    pub fn set_targets(
        &mut self,
        users: impl IntoIterator<Item = UserId>,
        groups: impl IntoIterator<Item = GroupId>,
    ) {
        self.0.users = into_set(users.into_iter().collect());
        self.0.groups = into_set(groups.into_iter().collect());
    }
}

/// Edits a target set as a list, then sorts it and drops duplicates again.
fn edit_set<T: Ord>(set: &mut Box<[T]>, edit: impl FnOnce(&mut Vec<T>)) {
    let mut items = std::mem::take(set).into_vec();
    edit(&mut items);
    *set = into_set(items);
}

/// `items` sorted, each once, without spare room: the form of a policy's targets.
fn into_set<T: Ord>(mut items: Vec<T>) -> Box<[T]> {
    items.sort_unstable();
    items.dedup();
    items.into_boxed_slice()
}

/// Builds a [`Policy`]; created by [`Policy::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    id: PolicyId,
    name: Option<String>,
    sources: Vec<AllowedSource>,
    blocked: Vec<AllowedSource>,
    users: Vec<UserId>,
    groups: Vec<GroupId>,
    enforcement: Enforcement,
}

impl PolicyBuilder {
    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Parses and adds allowed sources.
    ///
    /// # Errors
    ///
    /// The first source that does not parse, with its index in `sources`.
    pub fn sources<I, S>(mut self, sources: I) -> Result<Self, SourceListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed = parse_sources(sources)?;
        self.sources.extend(parsed);
        Ok(self)
    }

    /// Adds an already validated source.
    pub fn source(mut self, source: AllowedSource) -> Self {
        self.sources.push(source);
        self
    }

    /// Parses and adds blocked sources: addresses the policy refuses even inside its
    /// allowed sources.
    ///
    /// # Errors
    ///
    /// The first source that does not parse, with its index in `blocked`, or sources
    /// that together block every address of a family.
    pub fn blocked_sources<I, S>(mut self, blocked: I) -> Result<Self, SourceListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed = parse_blocked_sources(blocked)?;
        self.blocked.extend(parsed);
        Ok(self)
    }

    /// Adds an already validated blocked source.
    pub fn blocked_source(mut self, source: AllowedSource) -> Self {
        self.blocked.push(source);
        self
    }

    /// Sets whether the policy enforces (the default) or only reports.
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// Assigns a user.
    pub fn user(mut self, user: impl Into<UserId>) -> Self {
        self.users.push(user.into());
        self
    }

    /// Assigns a group (and so its descendants).
    pub fn group(mut self, group: impl Into<GroupId>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Finishes the policy.
    ///
    /// # Errors
    ///
    /// [`SourceError::Empty`] when no source was given, [`SourceError::CoversEverything`]
    /// when the sources together admit every address of a family,
    /// [`SourceError::BlocksEverything`] when the blocked sources together cover one.
    pub fn build(self) -> Result<Policy, SourceError> {
        let policy = self.build_stored()?;
        check_coverage(&policy.0.sources)?;
        check_blocked_coverage(&policy.0.blocked)?;
        Ok(policy)
    }

    /// Finishes a stored policy: a policy stored before the coverage check existed
    /// still loads.
    pub(crate) fn build_stored(self) -> Result<Policy, SourceError> {
        if self.sources.is_empty() {
            return Err(SourceError::Empty);
        }
        // Boxed: the room the lists grew into, one call at a time, is given back (a
        // policy lives as long as its organization).
        Ok(Policy(Box::new(PolicyFields {
            id: self.id,
            name: self.name.map(String::into_boxed_str),
            sources: self.sources.into_boxed_slice(),
            blocked: self.blocked.into_boxed_slice(),
            users: into_set(self.users),
            groups: into_set(self.groups),
            enforcement: self.enforcement,
        })))
    }
}

/// The parents of each group of one organization: a DAG, several parents allowed.
///
/// A policy assigned to a group applies to members of every descendant group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupHierarchy {
    parents: BTreeMap<GroupId, BTreeSet<GroupId>>,
}

impl GroupHierarchy {
    /// The direct parents of `group` (empty for an unknown group).
    pub fn parents(&self, group: &str) -> impl Iterator<Item = &GroupId> + '_ {
        self.parents.get(group).into_iter().flatten()
    }

    /// Every group that has parents, with them.
    pub fn iter(&self) -> impl Iterator<Item = (&GroupId, &BTreeSet<GroupId>)> + '_ {
        self.parents.iter()
    }

    /// Replaces the parents of `child`. An empty list removes the group's parents.
    ///
    /// # Errors
    ///
    /// [`CycleError`] when a parent is `child` itself or one of its descendants; the
    /// hierarchy is left unchanged.
    pub fn set_parents<I, G>(
        &mut self,
        child: impl Into<GroupId>,
        parents: I,
    ) -> Result<(), CycleError>
    where
        I: IntoIterator<Item = G>,
        G: Into<GroupId>,
    {
        let child = child.into();
        let parents: BTreeSet<GroupId> = parents.into_iter().map(Into::into).collect();
        for parent in &parents {
            if parent == &child || self.is_ancestor(child.as_str(), parent.as_str()) {
                return Err(CycleError {
                    child,
                    parent: parent.clone(),
                });
            }
        }
        if parents.is_empty() {
            self.parents.remove(&child);
        } else {
            self.parents.insert(child, parents);
        }
        Ok(())
    }

    /// Removes `group`'s own parent links (its children keep pointing at it).
    pub fn remove(&mut self, group: &str) -> bool {
        self.parents.remove(group).is_some()
    }

    /// Whether `ancestor` is reachable upwards from `group`.
    #[must_use]
    pub fn is_ancestor(&self, ancestor: &str, group: &str) -> bool {
        let mut stack: Vec<&str> = vec![group];
        let mut seen = BTreeSet::new();
        while let Some(current) = stack.pop() {
            for parent in self.parents(current) {
                if parent.as_str() == ancestor {
                    return true;
                }
                if seen.insert(parent.as_str()) {
                    stack.push(parent.as_str());
                }
            }
        }
        false
    }

    /// `group` and all its ancestors, each once.
    #[must_use]
    pub fn with_ancestors<'a>(&'a self, group: &'a str) -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::from([group]);
        let mut stack = vec![group];
        while let Some(current) = stack.pop() {
            for parent in self.parents(current) {
                if seen.insert(parent.as_str()) {
                    stack.push(parent.as_str());
                }
            }
        }
        seen
    }

    /// How many groups the hierarchy names: every group that has parents or is one.
    /// Groups that policies name but the hierarchy does not are not counted.
    #[must_use]
    pub fn group_count(&self) -> usize {
        let mut groups: BTreeSet<&str> = BTreeSet::new();
        for (child, parents) in &self.parents {
            groups.insert(child.as_str());
            groups.extend(parents.iter().map(GroupId::as_str));
        }
        groups.len()
    }

    /// The most parent links on any path upwards from a group: 0 for a hierarchy with
    /// no links, 1 when every group with parents has only top-level ones, and so on.
    /// Iterative, so a deep hierarchy (however it got into storage) cannot overflow
    /// the stack; a cycle (which [`set_parents`](Self::set_parents) refuses) is cut
    /// where it closes.
    #[must_use]
    pub fn depth(&self) -> usize {
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        let mut visiting: BTreeSet<&str> = BTreeSet::new();
        let mut deepest = 0;
        for start in self.parents.keys() {
            let mut stack: Vec<(&str, bool)> = vec![(start.as_str(), false)];
            while let Some((group, expanded)) = stack.pop() {
                if depth.contains_key(group) {
                    continue;
                }
                if expanded {
                    let own = self
                        .parents(group)
                        .map(|parent| depth.get(parent.as_str()).map_or(1, |d| d + 1))
                        .max()
                        .unwrap_or(0);
                    depth.insert(group, own);
                    visiting.remove(group);
                    deepest = deepest.max(own);
                } else if visiting.insert(group) {
                    stack.push((group, true));
                    for parent in self.parents(group) {
                        if !depth.contains_key(parent.as_str())
                            && !visiting.contains(parent.as_str())
                        {
                            stack.push((parent.as_str(), false));
                        }
                    }
                }
            }
        }
        deepest
    }

    /// A hierarchy built without the cycle check, as corrupt storage could hold it.
    #[cfg(test)]
    pub(crate) fn with_unchecked_edges<'a>(
        edges: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut hierarchy = Self::default();
        for (child, parent) in edges {
            hierarchy
                .parents
                .entry(GroupId::from(child))
                .or_default()
                .insert(GroupId::from(parent));
        }
        hierarchy
    }

    /// Number of groups that have parents.
    #[must_use]
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Whether no group has parents.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }
}

/// Setting these parents would make a group its own ancestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    /// The group whose parents were being set.
    pub child: GroupId,
    /// The parent that would close the cycle.
    pub parent: GroupId,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.child == self.parent {
            write!(f, "group `{}` cannot be its own parent", self.child)
        } else {
            write!(
                f,
                "group `{}` cannot have `{}` as a parent: `{}` is already a descendant of `{}`, which would make a cycle",
                self.child, self.parent, self.parent, self.child
            )
        }
    }
}

impl std::error::Error for CycleError {}

/// Everything the allowlist knows about one organization: its policies, its group
/// hierarchy, its site list and its resources' lists. The [`snapshot`](crate::snapshot)
/// compiles one of these per organization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgPolicies {
    /// Policies by id.
    pub policies: BTreeMap<PolicyId, Policy>,
    /// The organization's group hierarchy.
    pub groups: GroupHierarchy,
    /// The site allowlist, if one was ever set.
    pub site: Option<SiteList>,
    /// Per-resource allowlists; a resource without one is unrestricted.
    pub resources: BTreeMap<ResourceId, SourceList>,
}

impl OrgPolicies {
    /// Adds or replaces a policy, returning the one it replaced.
    pub fn insert_policy(&mut self, policy: Policy) -> Option<Policy> {
        self.policies.insert(policy.0.id.clone(), policy)
    }

    /// The policies that apply to a caller, found the slow, obvious way: the reference
    /// the compiled snapshot is tested against, and what `explain`-style tools use.
    pub fn applicable<'a, G>(&'a self, user: &str, groups: G) -> Vec<&'a Policy>
    where
        G: IntoIterator<Item = &'a str>,
    {
        let mut reach = BTreeSet::new();
        for group in groups {
            reach.extend(self.groups.with_ancestors(group));
        }
        self.policies
            .values()
            .filter(|policy| {
                policy.0.users.iter().any(|u| u.as_str() == user)
                    || policy.0.groups.iter().any(|g| reach.contains(g.as_str()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_size_and_depth() {
        let mut groups = GroupHierarchy::default();
        assert_eq!((groups.group_count(), groups.depth()), (0, 0));
        groups.set_parents("a", ["b", "c"]).unwrap();
        assert_eq!((groups.group_count(), groups.depth()), (3, 1));
        groups.set_parents("b", ["d"]).unwrap();
        groups.set_parents("d", ["e"]).unwrap();
        // a -> b -> d -> e is the longest path; a -> c is shorter.
        assert_eq!((groups.group_count(), groups.depth()), (5, 3));
        groups.set_parents("x", ["a"]).unwrap();
        assert_eq!(groups.depth(), 4);

        let mut chain = GroupHierarchy::default();
        for level in 0..10_000 {
            chain
                .set_parents(format!("g{level}"), [format!("g{}", level + 1)])
                .unwrap();
        }
        assert_eq!(chain.depth(), 10_000, "no recursion, no overflow");

        let cycle = GroupHierarchy::with_unchecked_edges([("a", "b"), ("b", "a"), ("c", "a")]);
        assert!(cycle.depth() <= 3, "a cycle ends the walk");
    }

    #[test]
    fn the_one_id_rule() {
        struct Case {
            name: &'static str,
            id: String,
            want: Result<(), IdError>,
        }
        let case = |name, id: &str, want| Case {
            name,
            id: id.to_owned(),
            want,
        };
        let cases = [
            case("plain", "alice", Ok(())),
            case("e-mail", "alice@example.com", Ok(())),
            case("LDAP name", "CN=Admins,OU=Groups,DC=example", Ok(())),
            case("inner space", "Domain Admins", Ok(())),
            case("non-ASCII", "группа", Ok(())),
            case("at the limit", &"a".repeat(MAX_ID_BYTES), Ok(())),
            case("empty", "", Err(IdError::Empty)),
            case(
                "one over",
                &"a".repeat(MAX_ID_BYTES + 1),
                Err(IdError::TooLong),
            ),
            // 128 two-byte characters: 256 bytes.
            case("bytes, not chars", &"é".repeat(128), Err(IdError::TooLong)),
            case("NUL", "acme\0", Err(IdError::ControlCharacter)),
            case("line break", "a\nb", Err(IdError::ControlCharacter)),
            case("DEL", "a\u{7f}", Err(IdError::ControlCharacter)),
            case("C1", "a\u{85}b", Err(IdError::ControlCharacter)),
            case(
                "zero width",
                "ad\u{200B}min",
                Err(IdError::InvisibleCharacter),
            ),
            case(
                "bidi override",
                "\u{202E}nimda",
                Err(IdError::InvisibleCharacter),
            ),
            case("BOM", "\u{FEFF}admin", Err(IdError::InvisibleCharacter)),
            case(
                "leading space",
                " alice",
                Err(IdError::SurroundingWhitespace),
            ),
            case(
                "trailing space",
                "alice ",
                Err(IdError::SurroundingWhitespace),
            ),
            case(
                "no-break space",
                "alice\u{A0}",
                Err(IdError::SurroundingWhitespace),
            ),
        ];
        for case in cases {
            assert_eq!(validate_id(&case.id), case.want, "{}", case.name);
        }
    }

    #[test]
    fn policy_needs_a_source() {
        assert_eq!(
            Policy::builder("p").user("u").build().unwrap_err(),
            SourceError::Empty
        );
    }

    #[test]
    fn targets_are_idempotent() {
        let mut policy = Policy::builder("p")
            .sources(["10.0.0.0/8"])
            .unwrap()
            .user("a")
            .build()
            .unwrap();
        assert!(!policy.add_targets([UserId::from("a")], []));
        assert!(policy.add_targets([], [GroupId::from("g")]));
        assert_eq!(policy.target_count(), 2);
        assert!(!policy.remove_targets([&UserId::from("missing")], []));
        assert!(policy.remove_targets([&UserId::from("a")], [&GroupId::from("g")]));
        assert!(!policy.is_active());
        assert_eq!(policy.sources().len(), 1);
    }

    #[test]
    fn targets_are_sets_whatever_the_order_given() {
        let build = |users: &[&str], groups: &[&str]| {
            let mut builder = Policy::builder("p").sources(["10.0.0.0/8"]).unwrap();
            for user in users {
                builder = builder.user(*user);
            }
            for group in groups {
                builder = builder.group(*group);
            }
            builder.build().unwrap()
        };
        let mut policy = build(&["c", "a", "b", "a"], &["y", "x", "y"]);
        let users: Vec<&str> = policy.users().iter().map(UserId::as_str).collect();
        let groups: Vec<&str> = policy.groups().iter().map(GroupId::as_str).collect();
        assert_eq!((users, groups), (vec!["a", "b", "c"], vec!["x", "y"]));
        assert_eq!(policy, build(&["a", "b", "c"], &["x", "y"]));

        assert!(policy.add_targets(["d", "a", "0"].map(UserId::from), []));
        let users: Vec<&str> = policy.users().iter().map(UserId::as_str).collect();
        assert_eq!(users, ["0", "a", "b", "c", "d"]);
        assert!(policy.remove_targets(&[UserId::from("0"), UserId::from("d")], []));
        assert_eq!(policy, build(&["a", "b", "c"], &["x", "y"]));

        policy.set_targets(["z", "z", "y"].map(UserId::from), BTreeSet::new());
        let users: Vec<&str> = policy.users().iter().map(UserId::as_str).collect();
        assert_eq!((users, policy.target_count()), (vec!["y", "z"], 2));
    }

    #[test]
    fn cycles_are_refused() {
        let mut h = GroupHierarchy::default();
        h.set_parents("c", ["b"]).unwrap();
        h.set_parents("b", ["a"]).unwrap();
        assert!(h.set_parents("a", ["c"]).is_err());
        assert!(h.set_parents("a", ["a"]).is_err());
        let err = h.set_parents("a", ["x", "b"]).unwrap_err();
        assert_eq!(err.parent.as_str(), "b");
        // Unchanged after the refusal; a diamond is fine.
        assert_eq!(h.parents("a").count(), 0);
        h.set_parents("d", ["b", "c"]).unwrap();
        assert!(h.is_ancestor("a", "d"));
        assert_eq!(
            h.with_ancestors("d").into_iter().collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        h.set_parents("d", Vec::<GroupId>::new()).unwrap();
        assert!(!h.is_ancestor("a", "d"));
    }

    #[test]
    fn applicable_follows_ancestors() {
        let mut org = OrgPolicies::default();
        org.groups.set_parents("child", ["parent"]).unwrap();
        org.groups.set_parents("grandchild", ["child"]).unwrap();
        let p = Policy::builder("p")
            .sources(["10.0.0.0/8"])
            .unwrap()
            .group("parent")
            .build()
            .unwrap();
        org.insert_policy(p);
        assert_eq!(org.applicable("u", ["grandchild"]).len(), 1);
        assert_eq!(org.applicable("u", ["other"]).len(), 0);
    }
}
