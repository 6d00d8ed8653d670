//! Property test: any sequence of store operations leaves the store equal to a simple
//! model, and the published snapshot deciding exactly as the model does.
//!
//! The model is deliberately naive (maps, sets, linear scans, a recursive walk up the
//! group hierarchy); the store is validated, versioned, persisted and compiled.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use proptest::prelude::*;
use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::snapshot::{Decision, DenyReason, SnapshotHandle};
use tower_ip_allowlist::store::{
    Actor, Limits, MemoryBackend, PolicyDraft, PolicyPatch, SqliteBackend, Store, StoreError,
    Targets,
};

const MAX_POLICIES: usize = 3;
const MAX_TARGETS: usize = 3;

const IDS: &[&str] = &["a", "b", "c", "d"];
const USERS: &[&str] = &["u1", "u2", "u3"];
const GROUPS: &[&str] = &["g1", "g2", "g3", "g4"];
/// Valid sources, and three invalid ones (host bits, match-all, hostname).
const SOURCES: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "192.0.2.1",
    "2001:db8::/32",
    "10.0.0.1/8",
    "0.0.0.0/0",
    "example.com",
];
/// Valid blocked sources, and two invalid ones (host bits, match-all).
const BLOCKED: &[&str] = &[
    "10.1.2.0/24",
    "192.0.2.1",
    "2001:db8::/48",
    "10.0.0.1/8",
    "0.0.0.0/0",
];
const ADDRS: &[&str] = &[
    "10.1.9.9",
    "10.1.2.3",
    "10.200.0.1",
    "192.0.2.1",
    "2001:db8::5",
    "198.51.100.1",
];

#[derive(Debug, Clone)]
enum Op {
    Create {
        id: usize,
        sources: Vec<usize>,
        blocked: Vec<usize>,
        users: Vec<usize>,
        groups: Vec<usize>,
    },
    Replace {
        id: usize,
        sources: Vec<usize>,
        users: Vec<usize>,
        stale: bool,
    },
    Update {
        id: usize,
        sources: Option<Vec<usize>>,
        blocked: Option<Vec<usize>>,
        groups: Option<Vec<usize>>,
        name: Option<Option<String>>,
    },
    Delete {
        id: usize,
    },
    AddTargets {
        id: usize,
        users: Vec<usize>,
        groups: Vec<usize>,
    },
    RemoveTargets {
        id: usize,
        users: Vec<usize>,
        groups: Vec<usize>,
    },
    SetParents {
        group: usize,
        parents: Vec<usize>,
    },
    DeleteGroup {
        group: usize,
    },
}

fn indices(len: usize, max: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..len, 0..=max)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..IDS.len(), indices(SOURCES.len(), 3), indices(BLOCKED.len(), 2), indices(USERS.len(), 3), indices(GROUPS.len(), 2))
            .prop_map(|(id, sources, blocked, users, groups)| Op::Create { id, sources, blocked, users, groups }),
        1 => (0..IDS.len(), indices(SOURCES.len(), 2), indices(USERS.len(), 4), any::<bool>())
            .prop_map(|(id, sources, users, stale)| Op::Replace { id, sources, users, stale }),
        1 => (0..IDS.len(), prop::option::of(indices(SOURCES.len(), 2)), prop::option::of(indices(BLOCKED.len(), 2)),
              prop::option::of(indices(GROUPS.len(), 4)), prop::option::of(prop::option::of("[a-z]{1,5}")))
            .prop_map(|(id, sources, blocked, groups, name)| Op::Update { id, sources, blocked, groups, name }),
        1 => (0..IDS.len()).prop_map(|id| Op::Delete { id }),
        2 => (0..IDS.len(), indices(USERS.len(), 2), indices(GROUPS.len(), 2))
            .prop_map(|(id, users, groups)| Op::AddTargets { id, users, groups }),
        1 => (0..IDS.len(), indices(USERS.len(), 2), indices(GROUPS.len(), 2))
            .prop_map(|(id, users, groups)| Op::RemoveTargets { id, users, groups }),
        2 => (0..GROUPS.len(), indices(GROUPS.len(), 2))
            .prop_map(|(group, parents)| Op::SetParents { group, parents }),
        1 => (0..GROUPS.len()).prop_map(|group| Op::DeleteGroup { group }),
    ]
}

// ---- the model -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelPolicy {
    name: Option<String>,
    /// Canonical text, as the store reports sources.
    sources: Vec<String>,
    /// Blocked sources, likewise.
    blocked: Vec<String>,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    version: u64,
}

#[derive(Debug, Default)]
struct Model {
    policies: BTreeMap<String, ModelPolicy>,
    parents: BTreeMap<String, BTreeSet<String>>,
}

/// The model's source validation: canonical text, or the error code.
fn model_sources(picked: &[usize]) -> Result<Vec<String>, &'static str> {
    if picked.is_empty() {
        return Err("emptyAllowedSources");
    }
    picked
        .iter()
        .map(|&i| match SOURCES[i] {
            "10.0.0.1/8" => Err("hostBitsSet"),
            "0.0.0.0/0" => Err("matchAllNotAllowed"),
            "example.com" => Err("hostnameNotAllowed"),
            valid => Ok(valid.to_owned()),
        })
        .collect()
}

/// The model's validation of blocked sources: an empty list is fine.
fn model_blocked(picked: &[usize]) -> Result<Vec<String>, &'static str> {
    picked
        .iter()
        .map(|&i| match BLOCKED[i] {
            "10.0.0.1/8" => Err("hostBitsSet"),
            "0.0.0.0/0" => Err("matchAllNotAllowed"),
            valid => Ok(valid.to_owned()),
        })
        .collect()
}

/// Whether `addr` is inside one of `sources` (canonical text).
fn inside(sources: &[String], addr: IpAddr) -> bool {
    sources.iter().any(|source| {
        let net: IpNet = source
            .parse()
            .unwrap_or_else(|_| IpNet::from(source.parse::<IpAddr>().unwrap()));
        net.contains(&addr)
    })
}

fn names(picked: &[usize], pool: &[&str]) -> BTreeSet<String> {
    picked.iter().map(|&i| pool[i].to_owned()).collect()
}

impl Model {
    fn existing(&self, id: &str, if_version: Option<u64>) -> Result<&ModelPolicy, &'static str> {
        let policy = self.policies.get(id).ok_or("notFound")?;
        match if_version {
            Some(version) if version != policy.version => Err("versionMismatch"),
            _ => Ok(policy),
        }
    }

    fn check_targets(policy: &ModelPolicy) -> Result<(), &'static str> {
        if policy.users.len() + policy.groups.len() > MAX_TARGETS {
            return Err("targetLimitExceeded");
        }
        Ok(())
    }

    /// Stores `policy` under `id`, bumping the version if it differs.
    fn put(&mut self, id: &str, mut policy: ModelPolicy) {
        let old = &self.policies[id];
        let same = old.name == policy.name
            && old.sources == policy.sources
            && old.blocked == policy.blocked
            && old.users == policy.users
            && old.groups == policy.groups;
        policy.version = if same { old.version } else { old.version + 1 };
        self.policies.insert(id.to_owned(), policy);
    }

    fn ancestors(&self, group: &str, out: &mut BTreeSet<String>) {
        if out.insert(group.to_owned()) {
            for parent in self.parents.get(group).into_iter().flatten() {
                self.ancestors(parent, out);
            }
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), &'static str> {
        match op {
            Op::Create {
                id,
                sources,
                blocked,
                users,
                groups,
            } => {
                let sources = model_sources(sources)?;
                let blocked = model_blocked(blocked)?;
                let id = IDS[*id];
                if self.policies.contains_key(id) {
                    return Err("conflict");
                }
                if self.policies.len() >= MAX_POLICIES {
                    return Err("policyLimitExceeded");
                }
                let policy = ModelPolicy {
                    name: None,
                    sources,
                    blocked,
                    users: names(users, USERS),
                    groups: names(groups, GROUPS),
                    version: 1,
                };
                Self::check_targets(&policy)?;
                self.policies.insert(id.to_owned(), policy);
            }
            Op::Replace {
                id,
                sources,
                users,
                stale,
            } => {
                let sources = model_sources(sources)?;
                let id = IDS[*id];
                let current = self.policies.get(id).map_or(1, |p| p.version);
                let if_version = Some(if *stale { current + 1 } else { current });
                self.existing(id, if_version)?;
                // A replacement without blocked sources has none.
                let policy = ModelPolicy {
                    name: None,
                    sources,
                    blocked: Vec::new(),
                    users: names(users, USERS),
                    groups: BTreeSet::new(),
                    version: 0,
                };
                Self::check_targets(&policy)?;
                self.put(id, policy);
            }
            Op::Update {
                id,
                sources,
                blocked,
                groups,
                name,
            } => {
                let sources = sources.as_deref().map(model_sources).transpose()?;
                let blocked = blocked.as_deref().map(model_blocked).transpose()?;
                let id = IDS[*id];
                let mut policy = self.existing(id, None)?.clone();
                if let Some(name) = name {
                    policy.name.clone_from(name);
                }
                if let Some(sources) = sources {
                    policy.sources = sources;
                }
                if let Some(blocked) = blocked {
                    policy.blocked = blocked;
                }
                if let Some(groups) = groups {
                    policy.groups = names(groups, GROUPS);
                }
                Self::check_targets(&policy)?;
                self.put(id, policy);
            }
            Op::Delete { id } => {
                self.existing(IDS[*id], None)?;
                self.policies.remove(IDS[*id]);
            }
            Op::AddTargets { id, users, groups } => {
                let id = IDS[*id];
                let mut policy = self.existing(id, None)?.clone();
                policy.users.extend(names(users, USERS));
                policy.groups.extend(names(groups, GROUPS));
                if policy != self.policies[id] {
                    Self::check_targets(&policy)?;
                    self.put(id, policy);
                }
            }
            Op::RemoveTargets { id, users, groups } => {
                let id = IDS[*id];
                let mut policy = self.existing(id, None)?.clone();
                for user in names(users, USERS) {
                    policy.users.remove(&user);
                }
                for group in names(groups, GROUPS) {
                    policy.groups.remove(&group);
                }
                self.put(id, policy);
            }
            Op::SetParents { group, parents } => {
                let group = GROUPS[*group];
                let parents = names(parents, GROUPS);
                for parent in &parents {
                    let mut above = BTreeSet::new();
                    self.ancestors(parent, &mut above);
                    if above.contains(group) {
                        return Err("malformedDocument");
                    }
                }
                if parents.is_empty() {
                    self.parents.remove(group);
                } else {
                    self.parents.insert(group.to_owned(), parents);
                }
            }
            Op::DeleteGroup { group } => {
                if self.parents.remove(GROUPS[*group]).is_none() {
                    return Err("notFound");
                }
            }
        }
        Ok(())
    }

    fn decide(&self, user: &str, groups: &[&str], addr: IpAddr) -> Decision {
        let mut closure = BTreeSet::new();
        for group in groups {
            self.ancestors(group, &mut closure);
        }
        let applicable: Vec<&ModelPolicy> = self
            .policies
            .values()
            .filter(|p| p.users.contains(user) || p.groups.iter().any(|g| closure.contains(g)))
            .collect();
        if applicable.is_empty() {
            return Decision::NoPolicy;
        }
        // Union: one policy admitting the address (inside its sources, outside its
        // blocked ones) is enough.
        if applicable
            .iter()
            .any(|p| inside(&p.sources, addr) && !inside(&p.blocked, addr))
        {
            Decision::Allowed
        } else {
            Decision::Denied(DenyReason::IpNotAllowed)
        }
    }
}

// ---- running the store -----------------------------------------------------------

fn org() -> OrgId {
    OrgId::default()
}

async fn run(store: &Store, op: &Op) -> Result<(), StoreError> {
    let actor = Actor::system();
    let org = org();
    match op {
        Op::Create {
            id,
            sources,
            blocked,
            users,
            groups,
        } => {
            let draft = PolicyDraft::new(IDS[*id], sources.iter().map(|&i| SOURCES[i]))
                .blocked_sources(blocked.iter().map(|&i| BLOCKED[i]))
                .users(users.iter().map(|&i| USERS[i]))
                .groups(groups.iter().map(|&i| GROUPS[i]));
            store.create_policy(&actor, &org, draft).await.map(drop)
        }
        Op::Replace {
            id,
            sources,
            users,
            stale,
        } => {
            let current = store.get_policy(&org, IDS[*id]).map_or(1, |p| p.version);
            let version = if *stale { current + 1 } else { current };
            let draft = PolicyDraft::new(IDS[*id], sources.iter().map(|&i| SOURCES[i]))
                .users(users.iter().map(|&i| USERS[i]));
            store
                .replace_policy(&actor, &org, draft, Some(version))
                .await
                .map(drop)
        }
        Op::Update {
            id,
            sources,
            blocked,
            groups,
            name,
        } => {
            let patch = PolicyPatch {
                name: name.clone(),
                allowed_sources: sources
                    .as_ref()
                    .map(|s| s.iter().map(|&i| SOURCES[i].to_owned()).collect()),
                blocked_sources: blocked
                    .as_ref()
                    .map(|s| s.iter().map(|&i| BLOCKED[i].to_owned()).collect()),
                users: None,
                groups: groups
                    .as_ref()
                    .map(|g| g.iter().map(|&i| GROUPS[i].into()).collect()),
                ..PolicyPatch::default()
            };
            store
                .update_policy(&actor, &org, IDS[*id], patch, None)
                .await
                .map(drop)
        }
        Op::Delete { id } => store.delete_policy(&actor, &org, IDS[*id], None).await,
        Op::AddTargets { id, users, groups } => {
            let targets = Targets::default()
                .users(users.iter().map(|&i| USERS[i]))
                .groups(groups.iter().map(|&i| GROUPS[i]));
            store
                .add_targets(&actor, &org, IDS[*id], targets)
                .await
                .map(drop)
        }
        Op::RemoveTargets { id, users, groups } => {
            let targets = Targets::default()
                .users(users.iter().map(|&i| USERS[i]))
                .groups(groups.iter().map(|&i| GROUPS[i]));
            store
                .remove_targets(&actor, &org, IDS[*id], targets)
                .await
                .map(drop)
        }
        Op::SetParents { group, parents } => store
            .set_group_parents(
                &actor,
                &org,
                GROUPS[*group],
                parents.iter().map(|&i| GROUPS[i]),
            )
            .await
            .map(drop),
        Op::DeleteGroup { group } => store.delete_group(&actor, &org, GROUPS[*group]).await,
    }
}

/// The store's policies in the model's terms.
fn stored(store: &Store) -> BTreeMap<String, ModelPolicy> {
    store
        .list_policies(&org())
        .into_iter()
        .map(|stored| {
            let p = &stored.policy;
            (
                p.id().to_string(),
                ModelPolicy {
                    name: p.name().map(str::to_owned),
                    sources: p.sources().iter().map(ToString::to_string).collect(),
                    blocked: p
                        .blocked_sources()
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    users: p.users().iter().map(ToString::to_string).collect(),
                    groups: p.groups().iter().map(ToString::to_string).collect(),
                    version: stored.version,
                },
            )
        })
        .collect()
}

fn stored_parents(store: &Store) -> BTreeMap<String, BTreeSet<String>> {
    GROUPS
        .iter()
        .filter_map(|group| {
            store.get_group(&org(), group).map(|g| {
                (
                    group.to_string(),
                    g.parents.iter().map(ToString::to_string).collect(),
                )
            })
        })
        .collect()
}

/// Every caller shape against every address: the snapshot and the model agree.
fn same_decisions(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    let snapshot = store.handle().load();
    let group_sets: [&[&str]; 5] = [&[], &["g1"], &["g2"], &["g3", "g4"], &["g4"]];
    for user in USERS.iter().chain(&["nobody"]) {
        for groups in group_sets {
            for addr in ADDRS {
                let addr: IpAddr = addr.parse().unwrap();
                let got = snapshot.decide(None, user, groups.iter().copied(), Some(addr));
                let want = model.decide(user, groups, addr);
                prop_assert_eq!(got, want, "{} {:?} from {}", user, groups, addr);
            }
        }
    }
    Ok(())
}

fn check(
    ops: &[Op],
    store: &Store,
    runtime: &tokio::runtime::Runtime,
) -> Result<Model, TestCaseError> {
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let want = model.apply(op);
        let got = runtime.block_on(run(store, op)).map_err(|err| err.code());
        prop_assert_eq!(got, want, "step {}: {:?}", step, op);
        prop_assert_eq!(
            stored(store),
            model.policies.clone(),
            "step {}: {:?}",
            step,
            op
        );
        prop_assert_eq!(
            stored_parents(store),
            model.parents.clone(),
            "step {}",
            step
        );
        same_decisions(store, &model)?;
    }
    Ok(model)
}

fn limits() -> Limits {
    Limits::default()
        .max_policies_per_org(MAX_POLICIES)
        .max_targets_per_policy(MAX_TARGETS)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn memory_store_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = runtime();
        let store = runtime.block_on(Store::open(
            Arc::new(MemoryBackend::new()),
            SnapshotHandle::default(),
            limits(),
        )).unwrap();
        check(&ops, &store, &runtime)?;
    }
}

proptest! {
    // Fewer cases: each opens a file and syncs every write.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn sqlite_store_matches_the_model_and_reopens_equal(ops in prop::collection::vec(op(), 1..30)) {
        let runtime = runtime();
        let dir = std::env::temp_dir().join(format!(
            "tower-ip-allowlist-model-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("model.db").display());
        let open = || async {
            let backend = SqliteBackend::open(&url).await.unwrap();
            Store::open(Arc::new(backend), SnapshotHandle::default(), limits()).await.unwrap()
        };
        let store = runtime.block_on(open());
        let result = check(&ops, &store, &runtime);
        drop(store);
        let reopened = runtime.block_on(open());
        let outcome = result.and_then(|model| {
            prop_assert_eq!(stored(&reopened), model.policies.clone());
            prop_assert_eq!(stored_parents(&reopened), model.parents.clone());
            same_decisions(&reopened, &model)
        });
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
        outcome?;
    }
}
