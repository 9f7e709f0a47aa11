//! `attune search <terms>`: which packs of the indexes match some words, best
//! first, as `st2 pack search` and `cargo search` answer.
//!
//! Each pack of each index is one candidate, described by its newest version
//! there (ref, name, description, keywords). Every term must match somewhere
//! (case-insensitive); where it matches decides how much it counts, so a
//! pack named by the words ranks above one that only mentions them.

use serde::Serialize;

use super::{Index, PackVersion};

/// One pack of one index that matches every term.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// The configured name of the index it is listed in.
    pub index: String,
    #[serde(rename = "ref")]
    pub pack_ref: String,
    /// The newest version that index lists.
    pub version: semver::Version,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Higher is better; only the order means anything.
    pub score: u32,
}

/// How much a term counts, by where it matched (the best place only).
fn term_score(term: &str, v: &PackVersion) -> u32 {
    let has = |s: &str| s.to_lowercase().contains(term);
    let r = v.pack_ref.as_str();
    if r == term {
        100
    } else if r.starts_with(term) {
        60
    } else if r.contains(term) {
        40
    } else if v.name.as_deref().is_some_and(has) {
        30
    } else if v.keywords.iter().any(|k| k.to_lowercase() == term) {
        25
    } else if v.keywords.iter().any(|k| has(k)) {
        15
    } else if v.description.as_deref().is_some_and(has) {
        10
    } else {
        0
    }
}

/// The packs of `indexes` matching every one of `terms`, best first (then
/// by ref, then in the indexes' order). No terms: every pack.
pub fn search(indexes: &[(String, Index)], terms: &[String]) -> Vec<Hit> {
    let terms: Vec<String> =
        terms.iter().flat_map(|t| t.split_whitespace()).map(str::to_lowercase).filter(|t| !t.is_empty()).collect();
    let mut hits = Vec::new();
    for (order, (name, index)) in indexes.iter().enumerate() {
        for versions in index.packs.values() {
            let Some(newest) = versions.first() else { continue };
            let scores: Vec<u32> = terms.iter().map(|t| term_score(t, newest)).collect();
            if scores.contains(&0) {
                continue;
            }
            let hit = Hit {
                index: name.clone(),
                pack_ref: newest.pack_ref.clone(),
                version: newest.version.clone(),
                name: newest.name.clone(),
                description: newest.description.clone(),
                keywords: newest.keywords.clone(),
                score: scores.iter().sum(),
            };
            hits.push((order, hit));
        }
    }
    hits.sort_by(|(ao, a), (bo, b)| b.score.cmp(&a.score).then_with(|| a.pack_ref.cmp(&b.pack_ref)).then(ao.cmp(bo)));
    hits.into_iter().map(|(_, h)| h).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        let doc = serde_json::json!({"registry_name": "t", "version": "1.0", "packs": [
            {"ref": "aws", "version": "1.0.0", "label": "AWS", "description": "Amazon cloud",
             "keywords": ["cloud", "ec2"], "install_sources": []},
            {"ref": "aws", "version": "2.0.0", "label": "AWS", "description": "Amazon Web Services",
             "keywords": ["cloud", "ec2"], "install_sources": []},
            {"ref": "aws_boto3", "version": "0.1.0", "description": "boto3 for AWS", "install_sources": []},
            {"ref": "gcp", "version": "1.0.0", "description": "Google cloud", "keywords": ["cloudy"],
             "install_sources": []},
            {"ref": "jira", "version": "1.0.0", "description": "Atlassian Jira (works with AWS too)",
             "install_sources": []},
        ]});
        super::super::parse(doc.to_string().as_bytes(), "t").unwrap()
    }

    fn refs(hits: &[Hit]) -> Vec<String> {
        hits.iter().map(|h| format!("{}@{}", h.pack_ref, h.version)).collect()
    }

    #[test]
    fn ranks_the_ref_above_mentions_and_shows_the_newest_version() {
        let idx = [("main".to_owned(), index())];
        let hits = search(&idx, &["AWS".into()]);
        assert_eq!(refs(&hits), ["aws@2.0.0", "aws_boto3@0.1.0", "jira@1.0.0"]);
        assert_eq!(hits[0].index, "main");
    }

    #[test]
    fn every_term_must_match_and_exact_keywords_beat_partial_ones() {
        let idx = [("main".to_owned(), index())];
        assert_eq!(refs(&search(&idx, &["cloud".into()])), ["aws@2.0.0", "gcp@1.0.0"]);
        assert_eq!(refs(&search(&idx, &["cloud amazon".into()])), ["aws@2.0.0"]);
        assert!(search(&idx, &["cloud".into(), "nothing-like-it".into()]).is_empty());
        assert_eq!(search(&idx, &[]).len(), 4, "no terms: every pack");
    }

    #[test]
    fn a_pack_in_two_indexes_is_a_hit_in_each() {
        let idx = [("one".to_owned(), index()), ("two".to_owned(), index())];
        let hits = search(&idx, &["jira".into()]);
        let at: Vec<&str> = hits.iter().map(|h| h.index.as_str()).collect();
        assert_eq!(at, ["one", "two"]);
    }
}
