//! The JSON:API documents the admin API reads and writes.
//!
//! The types describe the wire format (and generate the OpenAPI schemas); requests are
//! read by hand from a [`serde_json::Value`] so that every refusal can point
//! (RFC 6901) at the member at fault, e.g. `/data/attributes/allowedSources/2`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::explain::{Explanation, ListExplanation, PolicyExplanation, Via};
use crate::policy::{Enforcement, GroupId, SiteList, SourceList, UserId};
use crate::snapshot::Decision;
use crate::store::{
    check_policy_id, check_principal_id, ListDraft, PolicyDraft, PolicyPatch, StoredGroup,
    StoredPolicy, Targets,
};

/// `data.type` of a policy.
pub const POLICY_TYPE: &str = "ipAllowlistPolicy";
/// `data.type` of a user group, and of a group in a relationship.
pub const GROUP_TYPE: &str = "userGroup";
/// `type` of a user in a relationship.
pub const USER_TYPE: &str = "user";
/// `data.type` (and `data.id`) of the site allowlist.
pub const SITE_TYPE: &str = "siteAllowlist";
/// `data.type` of a resource's allowlist.
pub const RESOURCE_TYPE: &str = "resourceAllowlist";
/// `data.type` of an API token.
#[cfg(feature = "api-tokens")]
pub const API_TOKEN_TYPE: &str = "apiToken";
/// `data.type` of a report-only rule's would-deny summary.
pub const WOULD_DENY_SUMMARY_TYPE: &str = "wouldDenySummary";

/// The most groups `evaluate` takes.
const MAX_EVALUATED_GROUPS: usize = 1000;

/// The longest policy name accepted, in characters.
const MAX_NAME_CHARS: usize = 255;

/// A document holding one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyDocument {
    /// The policy.
    pub data: PolicyResource,
}

/// A document holding a list of policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyListDocument {
    /// The policies, by id.
    pub data: Vec<PolicyResource>,
}

/// An `ipAllowlistPolicy` resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyResource {
    /// The policy id: 1 to 255 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`.
    #[schema(example = "admin-vpn-only")]
    pub id: String,
    /// Always `ipAllowlistPolicy`.
    #[serde(rename = "type")]
    #[schema(example = "ipAllowlistPolicy")]
    pub kind: String,
    /// Name and allowed sources.
    pub attributes: PolicyAttributes,
    /// Assigned users and groups.
    #[serde(default)]
    pub relationships: PolicyRelationships,
    /// The stored version (responses only); send it back in `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ResourceMeta>,
}

/// A policy's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAttributes {
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// IP addresses and CIDR ranges; not empty, no host names, no match-all ranges.
    #[schema(example = json!(["203.0.113.10/32", "198.51.100.0/24", "2001:db8:abcd::/48"]))]
    pub allowed_sources: Vec<String>,
    /// Addresses refused even inside the allowed sources, in the same forms; they may
    /// not block every address. Absent or empty: none (responses omit it then). In a
    /// `PATCH`, absent leaves them as they are, `[]` or `null` removes them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["198.51.100.64/26"]))]
    pub blocked_sources: Vec<String>,
    /// `enforce` (the default) or `report`: a report-only policy never denies, it logs
    /// what it would have denied.
    #[serde(default = "enforce")]
    #[schema(example = "enforce")]
    pub enforcement: String,
}

fn enforce() -> String {
    Enforcement::Enforce.as_str().to_owned()
}

/// A policy's targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRelationships {
    /// Assigned users (`type: user`).
    #[serde(default)]
    pub users: Relationship,
    /// Assigned groups (`type: userGroup`); members of their descendant groups are
    /// covered too.
    #[serde(default)]
    pub user_groups: Relationship,
}

/// A to-many relationship.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Relationship {
    /// The related resources.
    pub data: Vec<ResourceIdentifier>,
}

/// A reference to a resource: `{ "id": ..., "type": ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceIdentifier {
    /// The id.
    pub id: String,
    /// `user` or `userGroup`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Server-side facts about a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceMeta {
    /// The version: 1 when created, bumped by every change. The `ETag` is `"<version>"`.
    pub version: u64,
}

/// The body of `addTargets` and `removeTargets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetsDocument {
    /// The users and groups.
    pub data: TargetsData,
}

/// Users and groups to assign or unassign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetsData {
    /// Users (`type: user`).
    #[serde(default)]
    pub users: Vec<ResourceIdentifier>,
    /// Groups (`type: userGroup`).
    #[serde(default)]
    pub user_groups: Vec<ResourceIdentifier>,
}

/// A document holding one user group's place in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupDocument {
    /// The group.
    pub data: GroupResource,
}

/// A document holding every group that has parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupListDocument {
    /// The groups that have parents, by id, each with them.
    pub data: Vec<GroupResource>,
}

/// A `userGroup` resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupResource {
    /// The group id.
    pub id: String,
    /// Always `userGroup`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The group's parents.
    #[serde(default)]
    pub relationships: GroupRelationships,
}

/// A group's relationships.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupRelationships {
    /// Direct parent groups: members of this group are members of its ancestors too.
    #[serde(default)]
    pub parents: Relationship,
}

/// A JSON:API error document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDocument {
    /// The errors (this API reports one at a time).
    pub errors: Vec<ErrorObject>,
}

/// One error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorObject {
    /// The HTTP status, as a string.
    #[schema(example = "400")]
    pub status: String,
    /// The machine-readable code, such as `hostBitsSet` or `versionMismatch`.
    #[schema(example = "hostBitsSet")]
    pub code: String,
    /// A short summary, the same for every occurrence of the code.
    pub title: String,
    /// What went wrong in this request, and what to do about it.
    pub detail: String,
    /// The part of the request at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ErrorSource>,
}

/// The part of a request an error is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorSource {
    /// A JSON pointer into the request document, e.g. `/data/attributes/allowedSources/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// A query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// A document holding an organization's site allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteAllowlistDocument {
    /// The site allowlist.
    pub data: SiteAllowlistResource,
}

/// The `siteAllowlist` resource: one per organization, id `siteAllowlist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteAllowlistResource {
    /// Always `siteAllowlist`.
    #[schema(example = "siteAllowlist")]
    pub id: String,
    /// Always `siteAllowlist`.
    #[serde(rename = "type")]
    #[schema(example = "siteAllowlist")]
    pub kind: String,
    /// Whether it is in force, its sources and enforcement.
    pub attributes: SiteAllowlistAttributes,
}

/// The site allowlist's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteAllowlistAttributes {
    /// Once enabled, every request of the organization must come from inside the list.
    pub enabled: bool,
    /// IP addresses, CIDR ranges and `first-last` ranges (empty only when never set).
    pub allowed_sources: Vec<String>,
    /// Addresses refused even inside the allowed sources. Absent or empty: none
    /// (responses omit it then); a `PUT` without it removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_sources: Vec<String>,
    /// `enforce` (the default) or `report`.
    #[serde(default = "enforce")]
    pub enforcement: String,
}

/// A document holding one resource's allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceAllowlistDocument {
    /// The resource's allowlist.
    pub data: ResourceAllowlistResource,
}

/// A document holding every resource's allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceAllowlistListDocument {
    /// The resources that have an allowlist, by id.
    pub data: Vec<ResourceAllowlistResource>,
}

/// A `resourceAllowlist` resource, whose id is the resource's (a project id, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceAllowlistResource {
    /// The resource id.
    pub id: String,
    /// Always `resourceAllowlist`.
    #[serde(rename = "type")]
    #[schema(example = "resourceAllowlist")]
    pub kind: String,
    /// Its sources and enforcement.
    pub attributes: ListAttributes,
}

/// A list's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListAttributes {
    /// IP addresses, CIDR ranges and `first-last` ranges; not empty.
    pub allowed_sources: Vec<String>,
    /// Addresses refused even inside the allowed sources. Absent or empty: none
    /// (responses omit it then); a `PUT` without it removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_sources: Vec<String>,
    /// `enforce` (the default) or `report`.
    #[serde(default = "enforce")]
    pub enforcement: String,
}

/// The body of `evaluate`: a caller and an address to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvaluateDocument {
    /// What to evaluate.
    pub data: EvaluateData,
}

/// A caller and an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateData {
    /// The user id.
    #[schema(example = "bob")]
    pub user: String,
    /// The user's direct groups (their ancestors are found through the hierarchy).
    #[serde(default)]
    #[schema(example = json!(["interns"]))]
    pub user_groups: Vec<String>,
    /// The client address to evaluate; the caller's own (as the request's recorded
    /// client-address outcome says) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "198.51.100.7")]
    pub address: Option<String>,
}

/// The outcome of `evaluate` or `myAccess`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExplanationDocument {
    /// The outcome.
    pub data: ExplanationData,
}

/// A decision and the reasons for it, rule by rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplanationData {
    /// The user evaluated.
    pub user: String,
    /// The organization.
    pub organization: String,
    /// The address evaluated.
    pub client_ip: Option<String>,
    /// How the address was found (`myAccess`, and `evaluate` without an address):
    /// `peer`, `proxyProtocol` (from the header of the balancer in `clientIpBalancer`),
    /// `xForwardedFor`, `forwarded`, `xRealIp` or `header` (another single-address
    /// header, named in `clientIpHeader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_source: Option<String>,
    /// The layer-4 balancer whose PROXY protocol header named the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_balancer: Option<String>,
    /// The header the address was read from, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_header: Option<String>,
    /// Which entry of that header, counted from the right (1: written by the nearest
    /// proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_hop: Option<usize>,
    /// Why the address could not be determined, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_unknown: Option<String>,
    /// `allowed`, `denied` or `noPolicy`, from the enforced policies.
    #[schema(example = "allowed")]
    pub decision: String,
    /// Why it is denied: `ipNotAllowed` or `clientIpUnknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every applicable policy, enforced and report-only.
    pub policies: Vec<PolicyVerdict>,
    /// The enforced policy that admits the address, and the source that does.
    pub matching: Option<MatchingRule>,
    /// The decision if report-only policies enforced too, when some apply.
    pub with_report_only: Option<String>,
    /// The site allowlist, when enabled.
    pub site_allowlist: Option<ListVerdict>,
}

/// One applicable policy, for a caller and an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVerdict {
    /// The policy id.
    pub id: String,
    /// `enforce` or `report`.
    pub enforcement: String,
    /// Whether it names the user directly.
    pub via_user: bool,
    /// The chains of groups through which it applies, each from the caller's group up
    /// to the group the policy names.
    pub via_groups: Vec<Vec<String>>,
    /// Whether it admits the address (`null`: unknown address): inside one of its
    /// allowed sources and outside its blocked ones.
    pub admits: Option<bool>,
    /// Its first allowed source containing the address.
    pub matching_source: Option<String>,
    /// Its first blocked source containing the address, when an allowed one contains
    /// it too: why it refuses the address. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking_source: Option<String>,
}

/// The rule that admits a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchingRule {
    /// The policy id.
    pub policy: String,
    /// The source containing the address.
    pub source: String,
}

/// A site or resource list, for an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListVerdict {
    /// `enforce` or `report`.
    pub enforcement: String,
    /// Whether it admits the address (`null`: unknown address): inside one of its
    /// allowed sources and outside its blocked ones.
    pub admits: Option<bool>,
    /// Its first allowed source containing the address.
    pub matching_source: Option<String>,
    /// Its first blocked source containing the address, when an allowed one contains
    /// it too: why it refuses the address. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking_source: Option<String>,
}

// ---- responses -------------------------------------------------------------------

fn identifiers<'a>(ids: impl Iterator<Item = &'a str>, kind: &str) -> Relationship {
    Relationship {
        data: ids
            .map(|id| ResourceIdentifier {
                id: id.to_owned(),
                kind: kind.to_owned(),
            })
            .collect(),
    }
}

impl From<&StoredPolicy> for PolicyResource {
    fn from(stored: &StoredPolicy) -> Self {
        let policy = &stored.policy;
        Self {
            id: policy.id().to_string(),
            kind: POLICY_TYPE.to_owned(),
            attributes: PolicyAttributes {
                name: policy.name().map(str::to_owned),
                allowed_sources: policy.sources().iter().map(ToString::to_string).collect(),
                blocked_sources: texts(policy.blocked_sources()),
                enforcement: policy.enforcement().as_str().to_owned(),
            },
            relationships: PolicyRelationships {
                users: identifiers(policy.users().iter().map(UserId::as_str), USER_TYPE),
                user_groups: identifiers(policy.groups().iter().map(GroupId::as_str), GROUP_TYPE),
            },
            meta: Some(ResourceMeta {
                version: stored.version,
            }),
        }
    }
}

impl From<&StoredGroup> for GroupResource {
    fn from(group: &StoredGroup) -> Self {
        Self {
            id: group.id.to_string(),
            kind: GROUP_TYPE.to_owned(),
            relationships: GroupRelationships {
                parents: identifiers(group.parents.iter().map(GroupId::as_str), GROUP_TYPE),
            },
        }
    }
}

impl From<&SiteList> for SiteAllowlistResource {
    fn from(site: &SiteList) -> Self {
        Self {
            id: SITE_TYPE.to_owned(),
            kind: SITE_TYPE.to_owned(),
            attributes: SiteAllowlistAttributes {
                enabled: site.enabled,
                allowed_sources: site
                    .list
                    .sources()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                blocked_sources: texts(site.list.blocked_sources()),
                enforcement: site.list.enforcement().as_str().to_owned(),
            },
        }
    }
}

impl SiteAllowlistResource {
    /// An organization that never set one: disabled and empty.
    pub(crate) fn unset() -> Self {
        Self {
            id: SITE_TYPE.to_owned(),
            kind: SITE_TYPE.to_owned(),
            attributes: SiteAllowlistAttributes {
                enabled: false,
                allowed_sources: Vec::new(),
                blocked_sources: Vec::new(),
                enforcement: enforce(),
            },
        }
    }
}

impl ResourceAllowlistResource {
    pub(crate) fn of(id: &str, list: &SourceList) -> Self {
        Self {
            id: id.to_owned(),
            kind: RESOURCE_TYPE.to_owned(),
            attributes: ListAttributes {
                allowed_sources: list.sources().iter().map(ToString::to_string).collect(),
                blocked_sources: texts(list.blocked_sources()),
                enforcement: list.enforcement().as_str().to_owned(),
            },
        }
    }
}

fn texts(sources: &[crate::source::AllowedSource]) -> Vec<String> {
    sources.iter().map(ToString::to_string).collect()
}

fn decision_text(decision: Decision) -> (String, Option<String>) {
    match decision {
        Decision::Allowed => ("allowed".to_owned(), None),
        Decision::NoPolicy => ("noPolicy".to_owned(), None),
        Decision::Denied(reason) => ("denied".to_owned(), Some(reason.code().to_owned())),
    }
}

impl From<&ListExplanation> for ListVerdict {
    fn from(list: &ListExplanation) -> Self {
        Self {
            enforcement: list.enforcement.as_str().to_owned(),
            admits: list.admits,
            matching_source: list.matching_source.map(|s| s.to_string()),
            blocking_source: list.blocked_by.map(|s| s.to_string()),
        }
    }
}

impl From<&PolicyExplanation> for PolicyVerdict {
    fn from(policy: &PolicyExplanation) -> Self {
        Self {
            id: policy.id.to_string(),
            enforcement: policy.enforcement.as_str().to_owned(),
            via_user: policy.via.contains(&Via::User),
            via_groups: policy
                .via
                .iter()
                .filter_map(|via| match via {
                    Via::Group { path } => Some(path.iter().map(ToString::to_string).collect()),
                    Via::User => None,
                })
                .collect(),
            admits: policy.admits,
            matching_source: policy.matching_source.map(|s| s.to_string()),
            blocking_source: policy.blocked_by.map(|s| s.to_string()),
        }
    }
}

impl ExplanationData {
    pub(crate) fn of(
        user: &str,
        organization: &str,
        client_ip: Option<std::net::IpAddr>,
        why: &Explanation,
    ) -> Self {
        let (decision, reason) = decision_text(why.decision);
        Self {
            user: user.to_owned(),
            organization: organization.to_owned(),
            client_ip: client_ip.map(|ip| ip.to_string()),
            client_ip_source: None,
            client_ip_balancer: None,
            client_ip_header: None,
            client_ip_hop: None,
            client_ip_unknown: None,
            decision,
            reason,
            policies: why.policies.iter().map(PolicyVerdict::from).collect(),
            matching: why.matching.as_ref().map(|(policy, source)| MatchingRule {
                policy: policy.to_string(),
                source: source.to_string(),
            }),
            with_report_only: why.with_report_only.map(|d| decision_text(d).0),
            site_allowlist: why.site.as_ref().map(ListVerdict::from),
        }
    }
}

// ---- requests --------------------------------------------------------------------

/// The members a request document may have at the top: `data`, and JSON:API's
/// `meta` and `jsonapi`, which are ignored. Anything else (`included`, `errors`, a
/// typo such as `date`) is refused, as unknown members are everywhere else.
const TOP_LEVEL: &[&str] = &["data", "meta", "jsonapi"];

/// The `data` member of a request document whose top level holds nothing unknown.
fn top(root: &Value) -> Result<At<'_>, ApiError> {
    let root = At::root(root);
    root.only(TOP_LEVEL)?;
    root.get("data")
}

/// Parses a request body strictly: like `serde_json::from_slice`, but a member that
/// appears twice in one object (`{"id": "a", "id": "b"}`), where serde_json would
/// keep the last, is refused with `malformedDocument` pointing at it, so the
/// document means one thing to every reader.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
    let duplicate = std::cell::RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde::de::DeserializeSeed::deserialize(
        Strict {
            pointer: String::new(),
            duplicate: &duplicate,
        },
        &mut deserializer,
    )
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some((pointer, key))) => {
            let parent = pointer.rsplit_once('/').map_or("", |(parent, _)| parent);
            let within = if parent.is_empty() {
                "the document".to_owned()
            } else {
                format!("`{parent}`")
            };
            Err(ApiError::malformed(
                pointer,
                format!(
                    "member `{}` appears more than once in {within}: send each member once",
                    cut(&key)
                ),
            ))
        }
        (Err(err), None) => Err(ApiError::malformed(
            "",
            format!("the body is not valid JSON: {err}"),
        )),
    }
}

/// Builds a [`Value`], refusing duplicate members; records the first one's pointer
/// and name in `duplicate`.
struct Strict<'d> {
    pointer: String,
    duplicate: &'d std::cell::RefCell<Option<(String, String)>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            pointer: format!("{}/{}", self.pointer, items.len()),
            duplicate: self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let pointer = format!("{}/{}", self.pointer, escape(&key));
            if object.contains_key(&key) {
                let message = format!("duplicate member `{}`", cut(&key));
                *self.duplicate.borrow_mut() = Some((pointer, key));
                return Err(serde::de::Error::custom(message));
            }
            let value = map.next_value_seed(Strict {
                pointer,
                duplicate: self.duplicate,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A JSON object member with the pointer that leads to it.
struct At<'v> {
    value: &'v Value,
    pointer: String,
}

impl<'v> At<'v> {
    fn root(value: &'v Value) -> Self {
        Self {
            value,
            pointer: String::new(),
        }
    }

    fn object(&self) -> Result<&'v Map<String, Value>, ApiError> {
        self.value.as_object().ok_or_else(|| {
            ApiError::malformed(self.shown(), format!("{} must be an object", self.name()))
        })
    }

    fn array(&self) -> Result<&'v Vec<Value>, ApiError> {
        self.value.as_array().ok_or_else(|| {
            ApiError::malformed(self.shown(), format!("{} must be an array", self.name()))
        })
    }

    fn string(&self) -> Result<&'v str, ApiError> {
        self.value.as_str().ok_or_else(|| {
            ApiError::malformed(self.shown(), format!("{} must be a string", self.name()))
        })
    }

    /// The member `key`, which must be there.
    fn get(&self, key: &str) -> Result<At<'v>, ApiError> {
        self.optional(key)?.ok_or_else(|| {
            ApiError::malformed(
                self.shown(),
                format!("{} has no `{key}` member", self.name()),
            )
        })
    }

    /// The member `key`, if it is there and not `null`.
    fn optional(&self, key: &str) -> Result<Option<At<'v>>, ApiError> {
        Ok(self
            .object()?
            .get(key)
            .filter(|value| !value.is_null())
            .map(|value| At {
                value,
                pointer: format!("{}/{}", self.pointer, escape(key)),
            }))
    }

    fn items(&self) -> Result<impl Iterator<Item = At<'v>> + '_, ApiError> {
        Ok(self.array()?.iter().enumerate().map(|(index, value)| At {
            value,
            pointer: format!("{}/{index}", self.pointer),
        }))
    }

    /// Refuses members other than `allowed`, so a typo (`allowedSource`) is reported
    /// instead of silently ignored.
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self
            .object()?
            .keys()
            .find(|key| !allowed.contains(&key.as_str()))
        {
            Some(key) => Err(ApiError::malformed(
                format!("{}/{}", self.pointer, escape(key)),
                format!(
                    "unknown member `{}` in {}: expected one of {}",
                    cut(key),
                    self.name(),
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    fn shown(&self) -> String {
        self.pointer.clone()
    }

    fn name(&self) -> String {
        if self.pointer.is_empty() {
            "the document".to_owned()
        } else {
            format!("`{}`", self.pointer)
        }
    }
}

/// RFC 6901 escaping of a member name.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A member name as a message shows it.
fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `data`, checking its `type` is `kind` and, when `id` is given, that `data.id` (if
/// sent) matches it.
fn data<'v>(root: &'v Value, kind: &str, id: Option<&str>) -> Result<At<'v>, ApiError> {
    let data = top(root)?;
    let sent = data.get("type")?;
    if sent.string()? != kind {
        return Err(ApiError::malformed(
            sent.shown(),
            format!("`data.type` must be `{kind}`"),
        ));
    }
    if let (Some(id), Some(sent)) = (id, data.optional("id")?) {
        if sent.string()? != id {
            return Err(ApiError::malformed(
                sent.shown(),
                format!(
                    "`data.id` `{}` does not match the id in the URL, `{id}`",
                    cut(sent.string()?)
                ),
            ));
        }
    }
    Ok(data)
}

/// The ids of a list of `{id, type}` identifiers, each of type `kind`.
fn ids<T: From<String> + Ord>(list: &At<'_>, kind: &'static str) -> Result<BTreeSet<T>, ApiError> {
    let mut ids = BTreeSet::new();
    for item in list.items()? {
        item.only(&["id", "type"])?;
        let sent_kind = item.get("type")?;
        if sent_kind.string()? != kind {
            return Err(ApiError::malformed(
                sent_kind.shown(),
                format!("expected an identifier of type `{kind}`"),
            ));
        }
        let id = item.get("id")?;
        let text = id.string()?;
        check_principal_id(kind, text)
            .map_err(|err| ApiError::malformed(id.shown(), err.to_string()))?;
        ids.insert(T::from(text.to_owned()));
    }
    Ok(ids)
}

/// The identifiers of relationship `name` (`{"data": [...]}`), if sent.
fn relationship<T: From<String> + Ord>(
    relationships: &At<'_>,
    name: &str,
    kind: &'static str,
) -> Result<Option<BTreeSet<T>>, ApiError> {
    let Some(relationship) = relationships.optional(name)? else {
        return Ok(None);
    };
    relationship.only(&["data", "links", "meta"])?;
    ids(&relationship.get("data")?, kind).map(Some)
}

struct PolicyFields {
    name: Option<Option<String>>,
    allowed_sources: Option<Vec<String>>,
    blocked_sources: Option<Vec<String>>,
    users: Option<BTreeSet<UserId>>,
    groups: Option<BTreeSet<GroupId>>,
    enforcement: Option<Enforcement>,
}

/// `allowedSources`: an array of strings.
fn sources(list: &At<'_>) -> Result<Vec<String>, ApiError> {
    list.items()?
        .map(|item| item.string().map(str::to_owned))
        .collect()
}

/// `blockedSources`, when the member is there: an array of strings, or `null` for none.
fn blocked_sources(attributes: &At<'_>) -> Result<Option<Vec<String>>, ApiError> {
    // `null` is hidden by `optional`: look for the member itself.
    if !attributes.object()?.contains_key("blockedSources") {
        return Ok(None);
    }
    match attributes.optional("blockedSources")? {
        Some(list) => sources(&list).map(Some),
        None => Ok(Some(Vec::new())),
    }
}

/// `enforcement`: `enforce` or `report`.
fn enforcement(value: &At<'_>) -> Result<Enforcement, ApiError> {
    Enforcement::parse(value.string()?).ok_or_else(|| {
        ApiError::malformed(value.shown(), "`enforcement` must be `enforce` or `report`")
    })
}

fn policy_fields(data: &At<'_>) -> Result<PolicyFields, ApiError> {
    data.only(&["id", "type", "attributes", "relationships", "meta", "links"])?;
    let mut fields = PolicyFields {
        name: None,
        allowed_sources: None,
        blocked_sources: None,
        users: None,
        groups: None,
        enforcement: None,
    };
    if let Some(attributes) = data.optional("attributes")? {
        attributes.only(&["name", "allowedSources", "blockedSources", "enforcement"])?;
        if let Some(value) = attributes.optional("enforcement")? {
            fields.enforcement = Some(enforcement(&value)?);
        }
        // `name: null` is sent as a JSON null, which `optional` hides; look for it.
        if attributes.object()?.contains_key("name") {
            fields.name = Some(match attributes.optional("name")? {
                Some(name) => {
                    let text = name.string()?;
                    if text.chars().count() > MAX_NAME_CHARS {
                        return Err(ApiError::malformed(
                            name.shown(),
                            format!("the name is longer than {MAX_NAME_CHARS} characters"),
                        ));
                    }
                    Some(text.to_owned())
                }
                None => None,
            });
        }
        if let Some(list) = attributes.optional("allowedSources")? {
            fields.allowed_sources = Some(sources(&list)?);
        }
        fields.blocked_sources = blocked_sources(&attributes)?;
    }
    if let Some(relationships) = data.optional("relationships")? {
        relationships.only(&["users", "userGroups"])?;
        fields.users = relationship(&relationships, "users", USER_TYPE)?;
        fields.groups = relationship(&relationships, "userGroups", GROUP_TYPE)?;
    }
    Ok(fields)
}

/// An API token to create: its `name`, and its `expiresAt` as sent (RFC 3339), with
/// the pointer to it.
#[cfg(feature = "api-tokens")]
pub(crate) fn api_token_draft(
    root: &Value,
) -> Result<(String, Option<(String, String)>), ApiError> {
    let data = data(root, API_TOKEN_TYPE, None)?;
    data.only(&["type", "attributes", "meta"])?;
    let attributes = data.get("attributes")?;
    attributes.only(&["name", "expiresAt"])?;
    let name = attributes.get("name")?.string()?.to_owned();
    let expires = attributes
        .optional("expiresAt")?
        .map(|at| Ok::<_, ApiError>((at.string()?.to_owned(), at.shown())))
        .transpose()?;
    Ok((name, expires))
}

/// A policy to create (`POST`, `path_id` `None`) or replace (`PUT`): `allowedSources`
/// is required, absent relationships mean no targets.
pub(crate) fn policy_draft(root: &Value, path_id: Option<&str>) -> Result<PolicyDraft, ApiError> {
    let data = data(root, POLICY_TYPE, path_id)?;
    let id = match path_id {
        Some(id) => id.to_owned(),
        None => {
            let id = data.get("id")?;
            let text = id.string()?;
            check_policy_id(text)
                .map_err(|err| ApiError::malformed(id.shown(), err.to_string()))?;
            text.to_owned()
        }
    };
    let fields = policy_fields(&data)?;
    let Some(allowed_sources) = fields.allowed_sources else {
        let attributes = data.get("attributes")?;
        return Err(ApiError::malformed(
            attributes.shown(),
            "`allowedSources` is required: list the addresses and CIDR ranges the policy allows",
        ));
    };
    Ok(PolicyDraft {
        id,
        name: fields.name.flatten(),
        allowed_sources,
        blocked_sources: fields.blocked_sources.unwrap_or_default(),
        users: fields.users.unwrap_or_default(),
        groups: fields.groups.unwrap_or_default(),
        enforcement: fields.enforcement.unwrap_or_default(),
    })
}

/// A partial update (`PATCH`): only the members sent change; `name: null` removes the
/// name, `blockedSources: []` or `null` removes the blocked sources, a relationship sent
/// replaces that list of targets.
pub(crate) fn policy_patch(root: &Value, path_id: &str) -> Result<PolicyPatch, ApiError> {
    let data = data(root, POLICY_TYPE, Some(path_id))?;
    let fields = policy_fields(&data)?;
    Ok(PolicyPatch {
        name: fields.name,
        allowed_sources: fields.allowed_sources,
        blocked_sources: fields.blocked_sources,
        users: fields.users,
        groups: fields.groups,
        enforcement: fields.enforcement,
    })
}

/// The body of `addTargets` / `removeTargets`.
pub(crate) fn targets(root: &Value) -> Result<Targets, ApiError> {
    let data = top(root)?;
    data.only(&["users", "userGroups"])?;
    let users = match data.optional("users")? {
        Some(list) => ids::<UserId>(&list, USER_TYPE)?,
        None => BTreeSet::new(),
    };
    let groups = match data.optional("userGroups")? {
        Some(list) => ids::<GroupId>(&list, GROUP_TYPE)?,
        None => BTreeSet::new(),
    };
    Ok(Targets::default().users(users).groups(groups))
}

/// The parents of a `userGroup` document (`PUT`); absent means none.
pub(crate) fn group_parents(root: &Value, path_id: &str) -> Result<BTreeSet<GroupId>, ApiError> {
    let data = data(root, GROUP_TYPE, Some(path_id))?;
    data.only(&["id", "type", "attributes", "relationships", "meta", "links"])?;
    let Some(relationships) = data.optional("relationships")? else {
        return Ok(BTreeSet::new());
    };
    relationships.only(&["parents"])?;
    Ok(relationship(&relationships, "parents", GROUP_TYPE)?.unwrap_or_default())
}

/// The body of `PUT siteAllowlist`: `enabled` and `allowedSources` required.
pub(crate) fn site_list(root: &Value) -> Result<(bool, ListDraft), ApiError> {
    let data = data(root, SITE_TYPE, Some(SITE_TYPE))?;
    data.only(&["id", "type", "attributes", "meta", "links"])?;
    let attributes = data.get("attributes")?;
    attributes.only(&["enabled", "allowedSources", "blockedSources", "enforcement"])?;
    let enabled = attributes.get("enabled")?;
    let enabled = enabled.value.as_bool().ok_or_else(|| {
        ApiError::malformed(enabled.shown(), "`enabled` must be `true` or `false`")
    })?;
    Ok((enabled, list_draft(&attributes)?))
}

/// The body of `PUT resourceAllowlists/{id}`.
pub(crate) fn resource_list(root: &Value, path_id: &str) -> Result<ListDraft, ApiError> {
    let data = data(root, RESOURCE_TYPE, Some(path_id))?;
    data.only(&["id", "type", "attributes", "meta", "links"])?;
    let attributes = data.get("attributes")?;
    attributes.only(&["allowedSources", "blockedSources", "enforcement"])?;
    list_draft(&attributes)
}

fn list_draft(attributes: &At<'_>) -> Result<ListDraft, ApiError> {
    let mut draft = ListDraft::new(sources(&attributes.get("allowedSources")?)?)
        .blocked_sources(blocked_sources(attributes)?.unwrap_or_default());
    if let Some(value) = attributes.optional("enforcement")? {
        draft = draft.enforcement(enforcement(&value)?);
    }
    Ok(draft)
}

/// The body of `evaluate`: a user, their groups and an address.
/// The user, groups and address (`None`: the caller's own) of an `evaluate` document.
pub(crate) type Evaluation = (String, Vec<String>, Option<std::net::IpAddr>);

pub(crate) fn evaluate(root: &Value) -> Result<Evaluation, ApiError> {
    let data = top(root)?;
    data.only(&["user", "userGroups", "address"])?;
    let user = data.get("user")?;
    let user_text = user.string()?;
    check_principal_id("user", user_text)
        .map_err(|err| ApiError::malformed(user.shown(), err.to_string()))?;
    let mut groups = Vec::new();
    if let Some(list) = data.optional("userGroups")? {
        if list.array()?.len() > MAX_EVALUATED_GROUPS {
            return Err(ApiError::malformed(
                list.shown(),
                format!("at most {MAX_EVALUATED_GROUPS} groups can be evaluated at once"),
            ));
        }
        for item in list.items()? {
            let text = item.string()?;
            check_principal_id("userGroup", text)
                .map_err(|err| ApiError::malformed(item.shown(), err.to_string()))?;
            groups.push(text.to_owned());
        }
    }
    let addr = match data.optional("address")? {
        None => None,
        Some(address) => Some(address.string()?.trim().parse().map_err(|_| {
            ApiError::malformed(
                address.shown(),
                "`address` must be an IPv4 or IPv6 address, such as 198.51.100.7 (or absent: your own)",
            )
        })?),
    };
    Ok((user_text.to_owned(), groups, addr))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Case {
        name: &'static str,
        body: Value,
        pointer: &'static str,
    }

    #[test]
    fn refusals_point_at_the_member_at_fault() {
        let cases = [
            Case {
                name: "no data",
                body: json!({}),
                pointer: "",
            },
            Case {
                name: "data not an object",
                body: json!({"data": 1}),
                pointer: "/data",
            },
            Case {
                name: "wrong type",
                body: json!({"data": {"id": "a", "type": "user"}}),
                pointer: "/data/type",
            },
            Case {
                name: "bad id",
                body: json!({"data": {"id": ".a", "type": POLICY_TYPE}}),
                pointer: "/data/id",
            },
            Case {
                name: "no sources",
                body: json!({"data": {"id": "a", "type": POLICY_TYPE, "attributes": {}}}),
                pointer: "/data/attributes",
            },
            Case {
                name: "source not a string",
                body: json!({"data": {"id": "a", "type": POLICY_TYPE,
                    "attributes": {"allowedSources": ["10.0.0.1", 7]}}}),
                pointer: "/data/attributes/allowedSources/1",
            },
            Case {
                name: "typo in attributes",
                body: json!({"data": {"id": "a", "type": POLICY_TYPE,
                    "attributes": {"allowedSource": ["10.0.0.1"]}}}),
                pointer: "/data/attributes/allowedSource",
            },
            Case {
                name: "user of the wrong type",
                body: json!({"data": {"id": "a", "type": POLICY_TYPE,
                    "attributes": {"allowedSources": ["10.0.0.1"]},
                    "relationships": {"users": {"data": [{"id": "u", "type": "user"}, {"id": "g", "type": "userGroup"}]}}}}),
                pointer: "/data/relationships/users/data/1/type",
            },
            Case {
                name: "empty user id",
                body: json!({"data": {"id": "a", "type": POLICY_TYPE,
                    "attributes": {"allowedSources": ["10.0.0.1"]},
                    "relationships": {"userGroups": {"data": [{"id": "", "type": "userGroup"}]}}}}),
                pointer: "/data/relationships/userGroups/data/0/id",
            },
            Case {
                name: "escaped member name",
                body: json!({"data": {"id": "a", "type": POLICY_TYPE,
                    "attributes": {"allowedSources": ["10.0.0.1"], "a/b~c": 1}}}),
                pointer: "/data/attributes/a~1b~0c",
            },
        ];
        for case in cases {
            let err = policy_draft(&case.body, None).expect_err(case.name);
            assert_eq!(err.code, "malformedDocument", "{}", case.name);
            let pointer = err.source.and_then(|s| s.pointer);
            assert_eq!(pointer.as_deref(), Some(case.pointer), "{}", case.name);
        }
    }

    #[test]
    fn duplicate_members_are_refused_wherever_they_are() {
        struct Case {
            name: &'static str,
            body: &'static str,
            pointer: &'static str,
        }
        let cases = [
            Case {
                name: "top level",
                body: r#"{"data": {}, "data": {}}"#,
                pointer: "/data",
            },
            Case {
                name: "the id",
                body: r#"{"data": {"id": "a", "id": "b", "type": "ipAllowlistPolicy"}}"#,
                pointer: "/data/id",
            },
            Case {
                name: "inside an array",
                body: r#"{"data": {"relationships": {"users": {"data": [{"id": "u", "type": "user"}, {"id": "u", "type": "user", "type": "userGroup"}]}}}}"#,
                pointer: "/data/relationships/users/data/1/type",
            },
            Case {
                name: "an escaped name",
                body: r#"{"data": {"a/b": 1, "a\/b": 2}}"#,
                pointer: "/data/a~1b",
            },
        ];
        for case in cases {
            let err = parse(case.body.as_bytes()).expect_err(case.name);
            assert_eq!(err.code, "malformedDocument", "{}", case.name);
            assert_eq!(
                err.source.and_then(|s| s.pointer).as_deref(),
                Some(case.pointer),
                "{}",
                case.name
            );
            assert!(err.detail.contains("more than once"), "{}", err.detail);
        }
        // The same member name in different objects is no duplicate.
        let body = r#"{"data": {"id": "a", "attributes": {"id": 1}}, "meta": {"id": 2}}"#;
        assert_eq!(
            parse(body.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(body).unwrap()
        );
        let err = parse(b"{\"data\": 1} trailing").unwrap_err();
        assert!(err.detail.contains("not valid JSON"), "{}", err.detail);
    }

    #[test]
    fn unknown_top_level_members_are_refused() {
        let policy =
            json!({"id": "a", "type": POLICY_TYPE, "attributes": {"allowedSources": ["10.0.0.1"]}});
        let accepted = json!({"data": policy, "meta": {"note": 1}, "jsonapi": {"version": "1.1"}});
        assert!(policy_draft(&accepted, None).is_ok());
        for member in ["included", "errors", "date"] {
            let mut body = json!({"data": policy});
            body[member] = json!([]);
            let err = policy_draft(&body, None).expect_err(member);
            assert_eq!(
                err.source.and_then(|s| s.pointer).as_deref(),
                Some(format!("/{member}").as_str())
            );
        }
        let err = targets(&json!({"data": {}, "extra": 1})).unwrap_err();
        assert_eq!(
            err.source.and_then(|s| s.pointer).as_deref(),
            Some("/extra")
        );
    }

    #[test]
    fn reads_the_seed_document() {
        let body = json!({"data": {"id": "admin-vpn-only", "type": "ipAllowlistPolicy",
            "attributes": {"allowedSources": ["203.0.113.10/32", "198.51.100.0/24", "2001:db8:abcd::/48"]},
            "relationships": {
                "users": {"data": [{"id": "admin_user", "type": "user"}]},
                "userGroups": {"data": [{"id": "adminGroup", "type": "userGroup"}]}}}});
        let draft = policy_draft(&body, None).unwrap();
        assert_eq!(draft.id, "admin-vpn-only");
        assert_eq!(draft.allowed_sources.len(), 3);
        assert!(draft.users.contains("admin_user"));
        assert!(draft.groups.contains("adminGroup"));
    }

    #[test]
    fn put_id_must_match_the_url() {
        let body = json!({"data": {"id": "b", "type": POLICY_TYPE,
            "attributes": {"allowedSources": ["10.0.0.1"]}}});
        let err = policy_draft(&body, Some("a")).unwrap_err();
        assert_eq!(err.source.unwrap().pointer.as_deref(), Some("/data/id"));
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let body = json!({"data": {"type": POLICY_TYPE, "attributes": {"name": null}}});
        let patch = policy_patch(&body, "a").unwrap();
        assert_eq!(patch.name, Some(None));
        assert_eq!(patch.allowed_sources, None);
        let body = json!({"data": {"type": POLICY_TYPE, "attributes": {}}});
        assert_eq!(policy_patch(&body, "a").unwrap().name, None);
    }

    #[test]
    fn targets_and_parents() {
        let body = json!({"data": {"users": [{"id": "service_user", "type": "user"}],
            "userGroups": [{"id": "restrictedAccessGroup", "type": "userGroup"}]}});
        let targets = targets(&body).unwrap();
        assert_eq!(targets.users, vec![UserId::from("service_user")]);
        let body = json!({"data": {"id": "g", "type": "userGroup",
            "relationships": {"parents": {"data": [{"id": "p", "type": "userGroup"}]}}}});
        assert_eq!(group_parents(&body, "g").unwrap().len(), 1);
    }
}
