//! The JSON API's questions across snapshots: where a name occurs (search),
//! every version of a path, and what changed between two snapshots. Split
//! from [`super::api`], whose helpers (query fields, errors, blocking work)
//! these handlers share.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::api::{bad, blocking, encode_path, fields, kind_name, number, text, ApiResult};
use super::paths::components;
use super::AppState;
use crate::util::{format_time, join_path};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/search", get(search))
        .route("/api/versions", get(versions))
        .route("/api/diff", get(diff))
}

const MAX_HITS: usize = 2000;

async fn search(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    blocking(move || {
        let f = fields(q);
        let pattern = text(&f, "glob").filter(|g| !g.is_empty()).ok_or_else(|| bad("glob= is missing"))?;
        let glob = globset::GlobBuilder::new(&pattern)
            .case_insensitive(f.contains_key("nocase"))
            .build()
            .map_err(|e| bad(e.to_string()))?
            .compile_matcher();
        let limit = number(&f, "limit", 500)?.min(MAX_HITS);
        let snaps = match text(&f, "snap") {
            Some(_) => vec![s.snapshot(&f)?],
            None => s.repo.snapshots()?.into_iter().rev().collect(),
        };
        let mut hits = Vec::new();
        let mut stack = Vec::new();
        'all: for (id, snap) in &snaps {
            stack.push((snap.tree, Vec::new()));
            while let Some((tree, path)) = stack.pop() {
                let t = s.repo.load_tree(&tree)?;
                for n in &t.nodes {
                    let p = join_path(&path, &n.name);
                    if glob.is_match(String::from_utf8_lossy(&n.name).as_ref()) {
                        hits.push(json!({
                            "snap": id.to_hex(), "short": id.short(), "time_text": format_time(snap.time),
                            "path": String::from_utf8_lossy(&p), "raw": encode_path(&p),
                            "kind": kind_name(n.kind), "size": n.size, "mtime_text": format_time(n.mtime),
                        }));
                        if hits.len() >= limit {
                            stack.clear();
                            break 'all;
                        }
                    }
                    if let Some(sub) = n.subtree.filter(|_| n.is_dir()) {
                        stack.push((sub, p));
                    }
                }
            }
        }
        let truncated = hits.len() >= limit;
        Ok(Json(json!({ "hits": hits, "truncated": truncated })))
    })
    .await
}

/// At most this many changes in one answer.
const MAX_CHANGES: usize = 20_000;

/// `a=SNAP&b=SNAP[&path=][&limit=]`: what `diff A:PATH B:PATH` prints, as
/// `changes` (`op` `+`, `-` or `M`; `path`, `raw`; `kind` of the newer side)
/// and `truncated`.
async fn diff(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    blocking(move || {
        let f = fields(q);
        let side = |k: &str| {
            let mut g = f.clone();
            g.insert("snap".into(), f.get(k).cloned().ok_or_else(|| bad(format!("{k}= is missing")))?);
            s.node(&g)
        };
        let (ia, _, path, na) = side("a")?;
        let (ib, _, _, nb) = side("b")?;
        let limit = number(&f, "limit", 5000)?.clamp(1, MAX_CHANGES);
        let base = if path.is_empty() { Vec::new() } else { [b"/".as_slice(), &path].concat() };
        let mut changes = Vec::new();
        // Stops at the change past the limit, so `truncated` means one more
        // change exists.
        let whole = crate::ops::diff::diff_nodes(&s.repo, &na, &nb, &base, &mut |c, p, x, y| {
            if changes.len() == limit {
                return false;
            }
            let kind = y.or(x).map(|n| kind_name(n.kind)).unwrap_or("file");
            changes.push(json!({
                "op": c.mark(), "path": String::from_utf8_lossy(p), "raw": encode_path(p), "kind": kind,
            }));
            true
        })?;
        Ok(Json(json!({
            "a": ia.to_hex(), "b": ib.to_hex(), "changes": changes, "truncated": !whole,
        })))
    })
    .await
}

async fn versions(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    blocking(move || {
        let f = fields(q);
        let raw = f.get("path").cloned().unwrap_or_default();
        let path = components(&raw).map_err(bad)?.join(&b'/');
        let snaps = s.repo.snapshots()?;
        if snaps.iter().any(|(id, _)| !s.known.lock().contains(id)) {
            s.repo.load_index()?;
            s.known.lock().extend(snaps.iter().map(|(id, _)| *id));
        }
        let v = crate::ops::versions::versions(&s.repo, &snaps, &path);
        let list: Vec<Value> = v
            .versions
            .iter()
            .map(|x| {
                json!({
                    "kind": kind_name(x.kind), "size": x.size, "mtime_text": format_time(x.mtime),
                    "content": x.content,
                    "snapshots": x.snapshots.iter().map(|(id, t)| json!({
                        "id": id.to_hex(), "short": id.short(), "time_text": format_time(*t)
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let unreadable: Vec<Value> = v
            .unreadable
            .iter()
            .map(|(id, e)| json!({ "id": id.to_hex(), "error": e }))
            .collect();
        Ok(Json(json!({
            "path": String::from_utf8_lossy(&path), "raw": encode_path(&path),
            "versions": list, "unreadable": unreadable,
        })))
    })
    .await
}
