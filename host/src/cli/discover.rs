//! How `attune search`, `show`, `outdated` and `upgrade --all` look: tables
//! and short blocks for people, JSON for scripts. Kept apart from
//! `output.rs`, which holds the commands on installed packs.

use attune_app::discover::{OutdatedReport, SearchHit, ShowReport};
use attune_app::upgrade::UpgradeOutcome;

use super::output::{Output, e, print_json, table};

impl Output {
    pub fn search(&self, hits: &[SearchHit]) -> anyhow::Result<()> {
        if self.json {
            return print_json(hits);
        }
        if hits.is_empty() {
            outln!("no pack matches (the cached indexes are searched; `attune index update` refreshes them)");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = hits
            .iter()
            .map(|h| {
                let installed = h.active.as_deref().map_or_else(String::new, |v| format!("{v} active"));
                let about = h.hit.description.clone().unwrap_or_default();
                vec![h.hit.pack_ref.clone(), h.hit.version.to_string(), h.hit.index.clone(), installed, about]
            })
            .collect();
        table(&["REF", "VERSION", "INDEX", "INSTALLED", "DESCRIPTION"], &rows);
        Ok(())
    }

    pub fn show(&self, r: &ShowReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        let newest = r.offers.iter().max_by(|a, b| a.pack.version.cmp(&b.pack.version));
        match newest.and_then(|o| o.pack.name.as_deref()) {
            Some(name) if name != r.pack_ref => outln!("{} ({})", r.pack_ref, e(name)),
            _ => outln!("{}", r.pack_ref),
        }
        if let Some(d) = newest.and_then(|o| o.pack.description.as_deref()) {
            outln!("  {}", e(d));
        }
        if let Some(k) = newest.map(|o| &o.pack.keywords).filter(|k| !k.is_empty()) {
            outln!("  keywords   {}", e(&k.join(", ")));
        }
        let installed: Vec<String> = (r.installed.iter())
            .map(|v| if r.active.as_deref() == Some(v) { format!("{v} (active)") } else { v.clone() })
            .collect();
        match installed.is_empty() {
            true => outln!("  installed  no"),
            false => outln!("  installed  {}", installed.join(", ")),
        }
        if r.offers.is_empty() {
            outln!("  no index offers a version matching {}", r.range);
        }
        let mut index = None;
        for o in &r.offers {
            if index != Some(&o.index) {
                outln!("index {}", o.index);
                index = Some(&o.index);
            }
            let p = &o.pack;
            outln!("  {}", p.version);
            for s in &p.sources {
                let at = s.reference.as_deref().map(|r| format!(" {r}")).unwrap_or_default();
                let sum = s.checksum.map(|c| format!("  {c}")).unwrap_or_else(|| "  (no checksum)".into());
                let kind = match s.kind {
                    attune_app::registry::IndexSourceKind::Git => "git",
                    attune_app::registry::IndexSourceKind::Archive => "archive",
                };
                outln!("    source    {kind} {}{at}{sum}", e(&s.url));
            }
            if let Some(t) = &p.tree_checksum {
                outln!("    tree      {t}");
            }
            let mut deps: Vec<String> = p.dependencies.iter().map(|d| format!("{} {}", d.pack_ref, d.req)).collect();
            deps.extend(p.url_dependencies.iter().map(|u| match &u.version {
                Some(v) => format!("{}={v}", u.url),
                None => u.url.clone(),
            }));
            if !deps.is_empty() {
                outln!("    depends   {}", e(&deps.join(", ")));
            }
            let rt = &p.runtime;
            let mut needs = Vec::new();
            needs.extend(rt.python.as_ref().map(|v| format!("python {v}")));
            needs.extend(rt.nodejs.as_ref().map(|v| format!("nodejs {v}")));
            needs.extend(rt.requires.iter().cloned());
            if !rt.python_versions.is_empty() {
                needs.push(format!("python major {}", rt.python_versions.join("|")));
            }
            if !needs.is_empty() {
                outln!("    runtime   {}", e(&needs.join(", ")));
            }
        }
        Ok(())
    }

    /// Returns whether every active pack is current.
    pub fn outdated(&self, r: &OutdatedReport) -> anyhow::Result<bool> {
        let current = r.outdated.is_empty();
        if self.json {
            print_json(r)?;
            return Ok(current);
        }
        if current {
            outln!("every installed pack is at the newest version its indexes offer");
        } else {
            let rows: Vec<Vec<String>> = r
                .outdated
                .iter()
                .map(|o| {
                    let compatible = o.compatible.clone().unwrap_or_else(|| "-".into());
                    vec![o.pack_ref.clone(), o.current.clone(), compatible, o.newest.clone(), o.index.clone()]
                })
                .collect();
            table(&["REF", "CURRENT", "COMPATIBLE", "NEWEST", "INDEX"], &rows);
            for o in r.outdated.iter().filter(|o| o.compatible.as_ref() != Some(&o.newest)) {
                outln!("note: {} {} is held back: {}", o.pack_ref, o.newest, e(&o.requirements_text()));
            }
        }
        if !r.not_in_indexes.is_empty() {
            eprintln!("note: not listed in any index, not checked: {}", r.not_in_indexes.join(", "));
        }
        Ok(current)
    }

    /// Each pack's outcome, then which failed. Returns whether all succeeded.
    pub fn upgraded_many(&self, outcomes: &[UpgradeOutcome]) -> anyhow::Result<bool> {
        let failed: Vec<&str> = outcomes.iter().filter(|o| o.error.is_some()).map(|o| o.pack_ref.as_str()).collect();
        if self.json {
            print_json(&serde_json::json!({ "packs": outcomes, "failed": failed }))?;
            return Ok(failed.is_empty());
        }
        for o in outcomes {
            match (&o.report, &o.held_back, &o.error) {
                (Some(r), _, _) => self.upgraded(r)?,
                (_, Some(why), _) => outln!("held back {}: {}", o.pack_ref, e(why)),
                (_, _, Some(err)) => outln!("failed {}: {}", o.pack_ref, e(err)),
                _ => {}
            }
        }
        let count = |f: &dyn Fn(&UpgradeOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        let upgraded = count(&|o| o.report.as_ref().is_some_and(|r| r.upgraded));
        let current = count(&|o| o.report.as_ref().is_some_and(|r| !r.upgraded));
        let held = count(&|o| o.held_back.is_some());
        let mut summary = format!("{upgraded} upgraded, {current} already current");
        if held > 0 {
            summary.push_str(&format!(", {held} held back by their dependents"));
        }
        if !failed.is_empty() {
            summary.push_str(&format!(", {} failed and rolled back: {}", failed.len(), failed.join(", ")));
        }
        outln!("{summary}");
        Ok(failed.is_empty())
    }
}
