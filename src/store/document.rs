//! The stored form of one organization: a JSON document, re-validated when read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BackendError, OrgRecord};
use crate::policy::{GroupId, OrgId, OrgPolicies, Policy, PolicyId};
use crate::source::parse_sources;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrgDocument {
    policies: Vec<PolicyDocument>,
    /// Child group -> parents.
    groups: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyDocument {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    allowed_sources: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    version: u64,
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
                users: policy.users().iter().map(ToString::to_string).collect(),
                groups: policy.groups().iter().map(ToString::to_string).collect(),
                version: record
                    .policy_versions
                    .get(policy.id())
                    .copied()
                    .unwrap_or(1),
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
        let sources = parse_sources(&stored.allowed_sources)
            .map_err(|err| corrupt(format!("policy `{}`: {err}", stored.id)))?;
        let mut builder = Policy::builder(stored.id.as_str());
        for source in sources {
            builder = builder.source(source);
        }
        for user in stored.users {
            builder = builder.user(user);
        }
        for group in stored.groups {
            builder = builder.group(group);
        }
        if let Some(name) = stored.name {
            builder = builder.name(name);
        }
        let policy = builder
            .build()
            .map_err(|err| corrupt(format!("policy `{}`: {err}", stored.id)))?;
        record
            .policy_versions
            .insert(PolicyId::from(stored.id), stored.version);
        record.org.insert_policy(policy);
    }
    for (child, parents) in document.groups {
        record
            .org
            .groups
            .set_parents(GroupId::from(child), parents)
            .map_err(|err| corrupt(err.to_string()))?;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        record.policy_versions.insert(PolicyId::from("p"), 7);
        record.org.groups.set_parents("c", ["g"]).unwrap();
        record.version = 3;
        let org = OrgId::default();
        assert_eq!(decode(&org, 3, &encode(&record).unwrap()).unwrap(), record);
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
        ] {
            let err = decode(&org, 1, text).unwrap_err();
            assert!(
                err.to_string().contains("organization `acme` is invalid"),
                "{text}: {err}"
            );
        }
    }
}
