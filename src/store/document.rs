//! The stored form of one organization: a JSON document, re-validated when read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{build_policy, BackendError, Ids, OrgRecord, PolicyDraft};
use crate::policy::{
    Enforcement, GroupId, OrgId, OrgPolicies, ResourceId, SiteList, SourceList, UserId,
};
use crate::source::{check_blocked_coverage, check_coverage, parse_all, AllowedSource};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrgDocument {
    policies: Vec<PolicyDocument>,
    /// Child group -> parents.
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    site: Option<SiteDocument>,
    /// Resource id -> its list.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    resources: BTreeMap<String, ListDocument>,
}

/// A [`ListDocument`] with `enabled`. Its fields are written out rather than
/// `#[serde(flatten)]`ed, because serde ignores `deny_unknown_fields` next to a
/// flattened struct, and a misspelt field in stored data must be refused.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SiteDocument {
    enabled: bool,
    allowed_sources: Vec<String>,
    /// Absent in documents written before blocked sources existed, and when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blocked_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "is_enforce")]
    enforcement: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListDocument {
    allowed_sources: Vec<String>,
    /// Absent in documents written before blocked sources existed, and when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blocked_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "is_enforce")]
    enforcement: String,
}

fn is_enforce(enforcement: &str) -> bool {
    enforcement.is_empty() || enforcement == Enforcement::Enforce.as_str()
}

impl ListDocument {
    fn of(list: &SourceList) -> Self {
        Self {
            allowed_sources: list.sources().iter().map(ToString::to_string).collect(),
            blocked_sources: list
                .blocked_sources()
                .iter()
                .map(ToString::to_string)
                .collect(),
            enforcement: list.enforcement().as_str().to_owned(),
        }
    }

    fn read(
        self,
        what: &str,
        corrupt: &dyn Fn(String) -> BackendError,
    ) -> Result<SourceList, BackendError> {
        let enforcement = enforcement(&self.enforcement, what, corrupt)?;
        let list = SourceList::parse_stored(&self.allowed_sources)
            .map_err(|err| corrupt(format!("{what}: {err}")))?;
        warn_if_everyone(what, list.sources());
        let blocked = parse_all(&self.blocked_sources)
            .map_err(|err| corrupt(format!("{what}: blocked sources: {err}")))?;
        warn_if_blocking_everyone(what, &blocked);
        Ok(list
            .with_enforcement(enforcement)
            .with_stored_blocked(blocked))
    }
}

/// A rule stored before the coverage check existed may admit everyone: it still loads
/// (nothing stored is lost), and the operator is told to fix it.
fn warn_if_everyone(what: &str, sources: &[AllowedSource]) {
    if let Err(err) = check_coverage(sources) {
        tracing::warn!(
            rule = what,
            "stored rule admits every address: {err}; change its sources"
        );
    }
}

/// Blocked sources that refuse everyone cannot be written through the store, but a
/// document edited by hand still loads (as [`warn_if_everyone`]), and the operator is
/// told.
fn warn_if_blocking_everyone(what: &str, blocked: &[AllowedSource]) {
    if let Err(err) = check_blocked_coverage(blocked) {
        tracing::warn!(
            rule = what,
            "stored rule blocks every address: {err}; change its blocked sources"
        );
    }
}

fn enforcement(
    text: &str,
    what: &str,
    corrupt: &dyn Fn(String) -> BackendError,
) -> Result<Enforcement, BackendError> {
    if text.is_empty() {
        return Ok(Enforcement::Enforce);
    }
    Enforcement::parse(text).ok_or_else(|| corrupt(format!("{what}: unknown enforcement `{text}`")))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyDocument {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    allowed_sources: Vec<String>,
    /// Absent in documents written before blocked sources existed, and when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blocked_sources: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    version: u64,
    #[serde(default, skip_serializing_if = "is_enforce")]
    enforcement: String,
}

/// The document of a record (its data version is stored beside it).
pub(super) fn encode(record: &OrgRecord) -> Result<String, BackendError> {
    let document = OrgDocument {
        policies: record
            .org
            .policies
            .values()
            .map(|policy| PolicyDocument {
                id: policy.id().to_string(),
                name: policy.name().map(str::to_owned),
                allowed_sources: policy.sources().iter().map(ToString::to_string).collect(),
                blocked_sources: policy
                    .blocked_sources()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                users: policy.users().iter().map(ToString::to_string).collect(),
                groups: policy.groups().iter().map(ToString::to_string).collect(),
                version: record.policy_version(policy.id()),
                enforcement: policy.enforcement().as_str().to_owned(),
            })
            .collect(),
        groups: record
            .org
            .groups
            .iter()
            .map(|(child, parents)| {
                (
                    child.to_string(),
                    parents.iter().map(ToString::to_string).collect(),
                )
            })
            .collect(),
        site: record.org.site.as_ref().map(|site| {
            let list = ListDocument::of(&site.list);
            SiteDocument {
                enabled: site.enabled,
                allowed_sources: list.allowed_sources,
                blocked_sources: list.blocked_sources,
                enforcement: list.enforcement,
            }
        }),
        resources: record
            .org
            .resources
            .iter()
            .map(|(id, list)| (id.to_string(), ListDocument::of(list)))
            .collect(),
    };
    serde_json::to_string(&document)
        .map_err(|err| BackendError::new(format!("cannot encode the organization: {err}")))
}

/// Reads a stored document back, validating everything as if it were new input.
pub(super) fn decode(org: &OrgId, version: u64, text: &str) -> Result<OrgRecord, BackendError> {
    let corrupt = |what: String| {
        BackendError::new(format!(
            "the stored data of organization `{org}` is invalid: {what}"
        ))
    };
    let document: OrgDocument =
        serde_json::from_str(text).map_err(|err| corrupt(err.to_string()))?;
    let mut record = OrgRecord {
        org: OrgPolicies::default(),
        policy_versions: BTreeMap::new(),
        version,
    };
    for stored in document.policies {
        let what = format!("policy `{}`", stored.id);
        // Validated as a new policy is, but for the coverage check (see `warn_if_everyone`).
        let draft = PolicyDraft {
            id: stored.id,
            name: stored.name,
            allowed_sources: stored.allowed_sources,
            blocked_sources: stored.blocked_sources,
            users: stored.users.into_iter().map(UserId::from).collect(),
            groups: stored.groups.into_iter().map(GroupId::from).collect(),
            enforcement: enforcement(&stored.enforcement, &what, &corrupt)?,
        };
        let policy =
            build_policy(draft, Ids::Stored).map_err(|err| corrupt(format!("{what}: {err}")))?;
        warn_if_everyone(&what, policy.sources());
        warn_if_blocking_everyone(&what, policy.blocked_sources());
        record
            .policy_versions
            .insert(policy.id().clone(), stored.version);
        record.org.insert_policy(policy);
    }
    for (child, parents) in document.groups {
        record
            .org
            .groups
            .set_parents(GroupId::from(child), parents)
            .map_err(|err| corrupt(err.to_string()))?;
    }
    if let Some(site) = document.site {
        let list = ListDocument {
            allowed_sources: site.allowed_sources,
            blocked_sources: site.blocked_sources,
            enforcement: site.enforcement,
        };
        record.org.site = Some(SiteList {
            enabled: site.enabled,
            list: list.read("the site allowlist", &corrupt)?,
        });
    }
    for (id, list) in document.resources {
        Ids::Stored
            .check("resource", &id)
            .map_err(|err| corrupt(err.to_string()))?;
        let what = format!("the allowlist of resource `{id}`");
        record
            .org
            .resources
            .insert(ResourceId::from(id), list.read(&what, &corrupt)?);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, PolicyId};

    #[test]
    fn round_trip() {
        let mut record = OrgRecord::default();
        record.org.insert_policy(
            Policy::builder("p")
                .name("P")
                .sources(["192.0.2.0/24", "2001:db8::1"])
                .unwrap()
                .user("u")
                .group("g")
                .build()
                .unwrap(),
        );
        record.org.insert_policy(
            Policy::builder("carved")
                .sources(["192.0.2.0/24"])
                .unwrap()
                .blocked_sources(["192.0.2.66", "192.0.2.128-192.0.2.130"])
                .unwrap()
                .user("u")
                .build()
                .unwrap(),
        );
        record.policy_versions.insert(PolicyId::from("carved"), 2);
        record.org.insert_policy(
            Policy::builder("rollout")
                .sources(["198.51.100.10-198.51.100.20"])
                .unwrap()
                .user("u")
                .enforcement(Enforcement::Report)
                .build()
                .unwrap(),
        );
        record.policy_versions.insert(PolicyId::from("p"), 7);
        record.policy_versions.insert(PolicyId::from("rollout"), 1);
        record.org.groups.set_parents("c", ["g"]).unwrap();
        record.org.site = Some(SiteList {
            enabled: false,
            list: SourceList::parse(["203.0.113.0/24"])
                .unwrap()
                .with_blocked(["203.0.113.9"])
                .unwrap(),
        });
        record.org.resources.insert(
            ResourceId::from("apollo"),
            SourceList::parse(["192.0.2.1"])
                .unwrap()
                .with_enforcement(Enforcement::Report),
        );
        record.org.resources.insert(
            ResourceId::from("hermes"),
            SourceList::parse(["2001:db8::/32"])
                .unwrap()
                .with_blocked(["2001:db8:bad::/48"])
                .unwrap(),
        );
        record.version = 3;
        let org = OrgId::default();
        let text = encode(&record).unwrap();
        assert_eq!(decode(&org, 3, &text).unwrap(), record);
        // Written only where there are some: rules without blocked sources are stored
        // exactly as before, so an older reader of the same database still reads them.
        assert_eq!(text.matches("blockedSources").count(), 3, "{text}");
        assert!(text.contains(r#""blockedSources":["192.0.2.66","192.0.2.128-192.0.2.130"]"#));
    }

    #[test]
    fn documents_written_before_blocked_sources_still_read() {
        let text = r#"{"policies":[{"id":"p","allowedSources":["10.0.0.0/8"],"users":["u"],"groups":[],"version":2}],"groups":{},"site":{"enabled":true,"allowedSources":["10.0.0.0/8"]},"resources":{"r":{"allowedSources":["10.0.0.1"]}}}"#;
        let record = decode(&OrgId::default(), 1, text).unwrap();
        assert!(record.org.policies[&PolicyId::from("p")]
            .blocked_sources()
            .is_empty());
        assert!(record.org.site.unwrap().list.blocked_sources().is_empty());
        assert!(record.org.resources[&ResourceId::from("r")]
            .blocked_sources()
            .is_empty());
    }

    #[test]
    fn documents_written_before_lists_and_enforcement_still_read() {
        let text = r#"{"policies":[{"id":"p","allowedSources":["10.0.0.1"],"users":["u"],"groups":[],"version":2}],"groups":{}}"#;
        let record = decode(&OrgId::default(), 1, text).unwrap();
        assert_eq!(
            record.org.policies[&PolicyId::from("p")].enforcement(),
            Enforcement::Enforce
        );
        assert!(record.org.site.is_none() && record.org.resources.is_empty());
    }

    #[test]
    fn corrupt_documents_are_errors() {
        let org = OrgId::from("acme");
        for text in [
            "",
            "{",
            r#"{"policies":[],"groups":{"a":["b"],"b":["a"]}}"#,
            r#"{"policies":[{"id":"p","allowedSources":["0.0.0.0/0"],"users":[],"groups":[],"version":1}],"groups":{}}"#,
            r#"{"policies":[{"id":"p","allowedSources":[],"users":[],"groups":[],"version":1}],"groups":{}}"#,
            r#"{"policies":[],"groups":{},"extra":1}"#,
            r#"{"policies":[],"groups":{},"site":{"enabled":true,"allowedSources":["10.0.0.1"],"enforcment":"report"}}"#,
            r#"{"policies":[],"groups":{},"resources":{"":{"allowedSources":["10.0.0.1"]}}}"#,
            r#"{"policies":[],"groups":{},"site":{"enabled":true,"allowedSources":["example.com"]}}"#,
            r#"{"policies":[],"groups":{},"resources":{"r":{"allowedSources":["10.0.0.1"],"enforcement":"maybe"}}}"#,
            r#"{"policies":[{"id":"p","allowedSources":["10.0.0.1"],"users":[],"groups":[],"version":1,"enforcement":"off"}],"groups":{}}"#,
            r#"{"policies":[{"id":"p","allowedSources":["10.0.0.0/8"],"blockedSources":["10.0.0.1/8"],"users":[],"groups":[],"version":1}],"groups":{}}"#,
            r#"{"policies":[],"groups":{},"site":{"enabled":true,"allowedSources":["10.0.0.0/8"],"blockedSources":["vpn.example.com"]}}"#,
            r#"{"policies":[],"groups":{},"resources":{"r":{"allowedSources":["10.0.0.0/8"],"blockedSources":[7]}}}"#,
        ] {
            let err = decode(&org, 1, text).unwrap_err();
            assert!(
                err.to_string().contains("organization `acme` is invalid"),
                "{text}: {err}"
            );
        }
    }
}
