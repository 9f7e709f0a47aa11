//! Dependency resolution across the registered indexes, with the `pubgrub`
//! solver: the whole set a request needs, in install order, or a conflict
//! explained as a chain a person can read.
//!
//! Only index data is used (an index entry's `dependencies`, as Attune's
//! builder copies them from `pack.yaml`, and attune's range extension), so
//! nothing is fetched until the set is known. Versions already installed on
//! this host are preferred when they satisfy every range, so a dependency that
//! is already there is not installed again.
//!
//! A dependency written as a repository URL (StackStorm) is resolved to the
//! pack an index installs from that repository; one no index lists is left
//! out of the set and reported with the step that needs it ([`Step::unresolved`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;

use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyProvider, PackageResolutionStatistics, PubGrubError, Ranges,
    Reporter,
};
use semver::{Version, VersionReq};

use super::{
    Dependency, Index, IndexSourceKind, PackRequest, PackVersion, RegistryError, Resolved, UrlDependency, dep_spec,
};

/// A node of the solver's graph: the request itself, or a pack ref.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Node {
    Request,
    Pack(String),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Request => f.write_str("the request"),
            Node::Pack(r) => f.write_str(r),
        }
    }
}

/// The request's own (only) version; hidden from messages.
const REQUEST_VERSION: Version = Version::new(0, 0, 0);

/// What the solver may pick from: every version of every ref in any index
/// (on equal versions the earlier index), and what is installed here.
struct Provider<'a> {
    /// What was asked for: one pack, or several installed as one set.
    requests: &'a [PackRequest],
    candidates: BTreeMap<&'a str, BTreeMap<Version, (&'a str, &'a PackVersion)>>,
    installed: &'a BTreeMap<String, BTreeSet<Version>>,
    /// A git repository ([`dep_spec::repo_key`]) → the ref of the pack an
    /// index installs from it (the first index's, on a clash), for
    /// dependencies written as URLs.
    repos: BTreeMap<String, &'a str>,
}

impl<'a> Provider<'a> {
    fn new(
        indexes: &'a [(String, Index)],
        requests: &'a [PackRequest],
        installed: &'a BTreeMap<String, BTreeSet<Version>>,
    ) -> Self {
        let mut candidates: BTreeMap<&str, BTreeMap<Version, (&str, &PackVersion)>> = BTreeMap::new();
        let mut repos = BTreeMap::new();
        for (name, index) in indexes {
            for (r, versions) in &index.packs {
                for v in versions {
                    candidates.entry(r).or_default().entry(v.version.clone()).or_insert((name, v));
                    for s in v.sources.iter().filter(|s| s.kind == IndexSourceKind::Git) {
                        repos.entry(dep_spec::repo_key(&s.url)).or_insert(r.as_str());
                    }
                }
            }
        }
        Provider { requests, candidates, installed, repos }
    }

    /// Every dependency of `v` by ref: its own, and its URL dependencies
    /// whose repository an index lists. The rest are returned apart.
    fn dependencies_of(&self, v: &'a PackVersion) -> (Vec<Dependency>, Vec<&'a UrlDependency>) {
        let mut deps = v.dependencies.clone();
        let mut unresolved = Vec::new();
        for u in &v.url_dependencies {
            match self.repos.get(&dep_spec::repo_key(&u.url)) {
                Some(r) if !deps.iter().any(|d| d.pack_ref == *r) => deps.push(Dependency {
                    pack_ref: (*r).to_owned(),
                    req: dep_spec::url_version_req(u.version.as_deref()),
                }),
                Some(_) => {}
                None => unresolved.push(u),
            }
        }
        (deps, unresolved)
    }

    /// The set of `pack_ref`'s candidate versions that `req` accepts, as
    /// ranges between candidates (`>=1.0.0, <2.0.0`), so that messages read
    /// as ranges rather than lists. Exact with respect to the candidates,
    /// pre-release rules included, since only candidates can be chosen.
    fn ranges(&self, pack_ref: &str, req: &VersionReq) -> Ranges<Version> {
        let Some(versions) = self.candidates.get(pack_ref) else {
            // Nothing is listed: any range is unsatisfiable, say so plainly.
            return Ranges::full();
        };
        let mut out = Ranges::empty();
        let mut start: Option<&Version> = None;
        for v in versions.keys() {
            match (req.matches(v), start) {
                (true, None) => start = Some(v),
                (false, Some(s)) => {
                    out = out.union(&Ranges::between(s.clone(), v.clone()));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out = out.union(&Ranges::higher_than(s.clone()));
        }
        out
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Node;
    type V = Version;
    type VS = Ranges<Version>;
    type M = String;
    type Err = Infallible;
    /// Fewest candidates first: conflicts surface early.
    type Priority = Reverse<usize>;

    fn prioritize(&self, package: &Node, range: &Ranges<Version>, _: &PackageResolutionStatistics) -> Reverse<usize> {
        match package {
            Node::Request => Reverse(0),
            Node::Pack(r) => {
                Reverse(self.candidates.get(r.as_str()).map_or(0, |vs| vs.keys().filter(|v| range.contains(v)).count()))
            }
        }
    }

    fn choose_version(&self, package: &Node, range: &Ranges<Version>) -> Result<Option<Version>, Infallible> {
        let Node::Pack(r) = package else { return Ok(Some(REQUEST_VERSION)) };
        let Some(versions) = self.candidates.get(r.as_str()) else { return Ok(None) };
        let listed = |v: &&Version| versions.contains_key(*v) && range.contains(v);
        // For a dependency, an installed version that fits wins; else (and
        // always for a requested pack) the highest listed one.
        let installed = match self.requests.iter().any(|q| q.pack_ref == *r) {
            true => None,
            false => self.installed.get(r).and_then(|vs| vs.iter().rev().find(listed)),
        };
        Ok(installed.or_else(|| versions.keys().rev().find(listed)).cloned())
    }

    fn get_dependencies(
        &self,
        package: &Node,
        version: &Version,
    ) -> Result<Dependencies<Node, Ranges<Version>, String>, Infallible> {
        let deps = match package {
            Node::Request => self
                .requests
                .iter()
                .map(|q| (Node::Pack(q.pack_ref.clone()), self.ranges(&q.pack_ref, &q.req)))
                .collect(),
            Node::Pack(r) => {
                let Some((_, v)) = self.candidates.get(r.as_str()).and_then(|vs| vs.get(version)) else {
                    return Ok(Dependencies::Unavailable("it is not in any index".into()));
                };
                self.dependencies_of(v)
                    .0
                    .iter()
                    .map(|d| (Node::Pack(d.pack_ref.clone()), self.ranges(&d.pack_ref, &d.req)))
                    .collect()
            }
        };
        Ok(Dependencies::Available(deps))
    }
}

/// One pack of a solved set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub resolved: Resolved,
    /// Already installed on this host at this version: nothing to do.
    pub installed: bool,
    /// Dependencies written as repository URLs that no index lists: not
    /// installed, and to be reported (`warning: …`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<UrlDependency>,
}

impl Step {
    /// One line per unresolved URL dependency, for the install output.
    pub fn unresolved_warnings(&self) -> Vec<String> {
        let p = &self.resolved.pack;
        self.unresolved
            .iter()
            .map(|u| {
                format!(
                    "{}@{}: dependency {}{} is a repository no registered index lists; it was not installed \
                     (install it from its URL, or add an index that lists it)",
                    p.pack_ref,
                    p.version,
                    u.url,
                    u.version.as_deref().map(|v| format!("={v}")).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Solves `request` with its dependencies. Returns every pack of the set,
/// dependencies before their dependents, the requested pack last.
/// `installed`: ref → versions installed on this host.
pub fn solve(
    indexes: &[(String, Index)],
    request: &PackRequest,
    installed: &BTreeMap<String, BTreeSet<Version>>,
) -> Result<Vec<Step>, RegistryError> {
    solve_set(indexes, std::slice::from_ref(request), installed)
}

/// Solves several requests as one set (`attune install a b=1.0.0 c@^2`): one
/// version of each pack that every request and dependency accepts. Returns
/// the set in install order: for each request in turn, the dependencies it
/// brings first (those an earlier request did not), then the pack itself.
/// Two requests for the same ref are refused.
pub fn solve_set(
    indexes: &[(String, Index)],
    requests: &[PackRequest],
    installed: &BTreeMap<String, BTreeSet<Version>>,
) -> Result<Vec<Step>, RegistryError> {
    let spec = requests.iter().map(|q| q.text.as_str()).collect::<Vec<_>>().join(" ");
    if indexes.is_empty() {
        return Err(RegistryError::NoIndexes { spec });
    }
    for (i, q) in requests.iter().enumerate() {
        if let Some(other) = requests[..i].iter().find(|o| o.pack_ref == q.pack_ref) {
            return Err(RegistryError::BadSpec {
                spec: q.text.clone(),
                reason: format!("{} is asked for twice (also as {:?}); name it once", q.pack_ref, other.text),
            });
        }
        // A plain miss reads better from the one-pack resolver (it lists what there is).
        super::resolve(indexes, q)?;
    }
    let provider = Provider::new(indexes, requests, installed);
    let solution = match pubgrub::resolve(&provider, Node::Request, REQUEST_VERSION) {
        Ok(s) => s,
        Err(PubGrubError::NoSolution(mut tree)) => {
            tree.collapse_no_versions();
            let chain =
                DefaultStringReporter::report(&tree).replace(&format!("the request {REQUEST_VERSION}"), "the request");
            return Err(RegistryError::Conflict { spec, chain });
        }
        Err(e) => unreachable!("the provider cannot fail: {e}"),
    };
    let chosen: BTreeMap<String, Version> = solution
        .into_iter()
        .filter_map(|(node, v)| match node {
            Node::Pack(r) => Some((r, v)),
            Node::Request => None,
        })
        .collect();

    // Dependencies first: depth-first post-order from each requested pack.
    let mut order: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        r: &str,
        provider: &Provider<'_>,
        chosen: &BTreeMap<String, Version>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(r.to_owned()) {
            return;
        }
        let (_, v) = provider.candidates[r][&chosen[r]];
        for d in &provider.dependencies_of(v).0 {
            visit(&d.pack_ref, provider, chosen, seen, order);
        }
        order.push(r.to_owned());
    }
    for q in requests {
        visit(&q.pack_ref, &provider, &chosen, &mut seen, &mut order);
    }

    Ok(order
        .into_iter()
        .map(|r| {
            let version = &chosen[&r];
            let (index, pack) = provider.candidates[r.as_str()][version];
            let is_installed = installed.get(&r).is_some_and(|vs| vs.contains(version));
            let unresolved = provider.dependencies_of(pack).1.into_iter().cloned().collect();
            Step {
                resolved: Resolved { index: index.to_owned(), pack: pack.clone() },
                installed: is_installed,
                unresolved,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ref, version, [(dependency, range)])
    type Entry<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    /// An Attune index of these entries.
    fn index(entries: &[Entry]) -> Index {
        let packs: Vec<serde_json::Value> = entries
            .iter()
            .map(|(r, v, deps)| {
                let deps: serde_json::Map<String, serde_json::Value> =
                    deps.iter().map(|(d, range)| (d.to_string(), serde_json::json!(range))).collect();
                serde_json::json!({
                    "ref": r, "version": v,
                    "install_sources": [{"type": "archive", "url": format!("https://example.com/{r}-{v}.tgz")}],
                    "meta": {"x_attune": {"dependencies": deps}}
                })
            })
            .collect();
        let text = serde_json::json!({"registry_name": "t", "version": "1.0", "packs": packs});
        super::super::parse(text.to_string().as_bytes(), "test").unwrap()
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| format!("{}@{}", s.resolved.pack.pack_ref, s.resolved.pack.version)).collect()
    }

    fn solve_one(idx: Index, spec: &str, installed: &[(&str, &str)]) -> Result<Vec<Step>, RegistryError> {
        let mut inst: BTreeMap<String, BTreeSet<Version>> = BTreeMap::new();
        for (r, v) in installed {
            inst.entry(r.to_string()).or_default().insert(v.parse().unwrap());
        }
        solve(&[("main".into(), idx)], &PackRequest::parse(spec).unwrap(), &inst)
    }

    #[test]
    fn diamond_resolves_to_one_shared_version_dependencies_first() {
        let idx = index(&[
            ("app", "1.0.0", &[("left", "^1"), ("right", "^1")]),
            ("left", "1.0.0", &[("base", ">=1.1, <2")]),
            ("right", "1.0.0", &[("base", "~1.1")]),
            ("base", "1.0.0", &[]),
            ("base", "1.1.0", &[]),
            ("base", "1.1.5", &[]),
            ("base", "1.2.0", &[]),
            ("base", "2.0.0", &[]),
        ]);
        let steps = solve_one(idx, "app", &[]).unwrap();
        assert_eq!(names(&steps), ["base@1.1.5", "left@1.0.0", "right@1.0.0", "app@1.0.0"]);
    }

    #[test]
    fn backtracks_to_an_older_version_that_fits() {
        let idx =
            index(&[("app", "2.0.0", &[("base", "^2")]), ("app", "1.0.0", &[("base", "^1")]), ("base", "1.0.0", &[])]);
        assert_eq!(names(&solve_one(idx, "app", &[]).unwrap()), ["base@1.0.0", "app@1.0.0"]);
    }

    #[test]
    fn conflict_is_explained_as_a_chain() {
        let idx = index(&[
            ("app", "1.0.0", &[("left", "^1"), ("right", "^1")]),
            ("left", "1.0.0", &[("base", "^1")]),
            ("right", "1.0.0", &[("base", "^2")]),
            ("base", "1.0.0", &[]),
            ("base", "2.0.0", &[]),
        ]);
        let e = solve_one(idx, "app", &[]).unwrap_err().to_string();
        assert!(e.starts_with("app: the dependencies cannot all be satisfied:\n"), "{e}");
        for part in
            ["depends on base >=1.0.0, <2.0.0", "right 1.0.0 depends on base >=2.0.0", "the request is forbidden"]
        {
            assert!(e.contains(part), "{part:?} not in:\n{e}");
        }
        assert!(!e.contains("0.0.0 depends"), "the request's placeholder version is hidden:\n{e}");
        assert!(e.ends_with("(install just the pack with --skip-deps)"), "{e}");
    }

    #[test]
    fn a_missing_dependency_is_named() {
        let idx = index(&[("app", "1.0.0", &[("ghost", "^1")])]);
        let e = solve_one(idx, "app", &[]).unwrap_err().to_string();
        assert!(e.contains("ghost"), "{e}");
    }

    #[test]
    fn installed_versions_are_preferred_and_marked() {
        let idx = index(&[("app", "1.0.0", &[("base", "^1")]), ("base", "1.0.0", &[]), ("base", "1.3.0", &[])]);
        let steps = solve_one(idx, "app", &[("base", "1.0.0")]).unwrap();
        assert_eq!(names(&steps), ["base@1.0.0", "app@1.0.0"]);
        assert!(steps[0].installed && !steps[1].installed);
    }

    #[test]
    fn several_requests_are_solved_as_one_set_each_after_the_dependencies_it_brings() {
        let idx = index(&[
            ("left", "1.0.0", &[("base", "^1")]),
            ("right", "1.0.0", &[("base", "<1.5"), ("util", "*")]),
            ("base", "1.0.0", &[]),
            ("base", "1.4.0", &[]),
            ("base", "1.9.0", &[]),
            ("util", "1.0.0", &[]),
        ]);
        let requests = [PackRequest::parse("left").unwrap(), PackRequest::parse("right=1.0.0").unwrap()];
        let steps = solve_set(&[("main".into(), idx.clone())], &requests, &BTreeMap::new()).unwrap();
        // Alone, left would take base 1.9.0; with right in the set, both get 1.4.0.
        assert_eq!(names(&steps), ["base@1.4.0", "left@1.0.0", "util@1.0.0", "right@1.0.0"]);
        let twice = [PackRequest::parse("left").unwrap(), PackRequest::parse("left@1").unwrap()];
        let e = solve_set(&[("main".into(), idx)], &twice, &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("left is asked for twice"), "{e}");
    }

    #[test]
    fn a_plain_miss_lists_what_there_is() {
        let idx = index(&[("app", "1.0.0", &[])]);
        let e = solve_one(idx, "app@^2", &[]).unwrap_err().to_string();
        assert!(e.contains("available: 1.0.0 in main"), "{e}");
    }
}
