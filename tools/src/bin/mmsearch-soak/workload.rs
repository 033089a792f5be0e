//! The soak's tasks: writers (streamed upserts, deletes, Gets of their own ids), searchers,
//! a continuous checker, periodic admin rebuilds, and the check of one id against the model.

use crate::model::{category, Expect, Model, Settled, CATEGORIES, SPACE};
use crate::stats::Stats;
use mmsearch::pb;
use mmsearch_tools::net::AuthChannel;
use pb::admin_service_client::AdminServiceClient;
use pb::ingest_service_client::IngestServiceClient;
use pb::search_service_client::SearchServiceClient;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Code, Request, Status};

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_MESSAGE: usize = 64 << 20;
/// Scores of identical vectors may differ by float rounding between the fresh layer and a
/// generation; a tie within this is still "top-1".
const SCORE_TIE: f32 = 1e-4;

#[derive(Clone)]
pub struct Ctx {
    pub model: Arc<Model>,
    pub stats: Arc<Stats>,
    pub search: SearchServiceClient<AuthChannel>,
    pub ingest: IngestServiceClient<AuthChannel>,
    pub admin: AdminServiceClient<AuthChannel>,
    pub deadline: Instant,
    /// The server has models: send text-only items and text queries.
    pub text: bool,
    /// Beam width of self-queries.
    pub ef: u32,
}

impl Ctx {
    pub fn new(
        channel: AuthChannel,
        model: Arc<Model>,
        stats: Arc<Stats>,
        deadline: Instant,
        text: bool,
        ef: u32,
    ) -> Ctx {
        Ctx {
            model,
            stats,
            search: SearchServiceClient::new(channel.clone())
                .max_encoding_message_size(MAX_MESSAGE)
                .max_decoding_message_size(MAX_MESSAGE),
            ingest: IngestServiceClient::new(channel.clone())
                .max_encoding_message_size(MAX_MESSAGE)
                .max_decoding_message_size(MAX_MESSAGE),
            admin: AdminServiceClient::new(channel),
            deadline,
            text,
            ef,
        }
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    async fn timed_search(
        &mut self,
        kind: &'static str,
        req: pb::SearchRequest,
    ) -> Result<pb::SearchResponse, Status> {
        let t0 = Instant::now();
        let r = self
            .search
            .search(with_timeout(req))
            .await
            .map(|r| r.into_inner());
        if r.is_ok() {
            self.stats.ok(kind, t0.elapsed());
        }
        r
    }

    async fn timed_get(&mut self, kind: &'static str, id: &str) -> Result<pb::Item, Status> {
        let t0 = Instant::now();
        let r = self
            .ingest
            .get(with_timeout(pb::GetRequest { id: id.to_string() }))
            .await
            .map(|r| r.into_inner());
        if r.is_ok() {
            self.stats.ok(kind, t0.elapsed());
        }
        r
    }
}

fn with_timeout<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(TIMEOUT);
    r
}

fn status_text(s: &Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

// ------------------------------------------------------------------ checking one id

/// What checking one id against the model found.
#[derive(Debug, Default)]
pub struct Finding {
    /// An acknowledged upsert that is missing or wrong.
    pub lost: Option<String>,
    /// An acknowledged delete that is still visible.
    pub resurrected: Option<String>,
    pub ann_miss: bool,
    /// A request failed unexpectedly (already counted); the check is inconclusive.
    pub failed: bool,
}

/// Checks `s` with Get and, when `searches`, with an approximate self-query (vector items) and
/// an exact filtered query (every item). Request failures are recorded under `kind`.
pub async fn check(ctx: &mut Ctx, kind: &'static str, s: &Settled, searches: bool) -> Finding {
    let mut f = Finding::default();
    let got = ctx.timed_get(kind, &s.id).await;
    match (s.expect, got) {
        (Expect::Live(rev), Ok(item)) => {
            let want = ctx.model.item(&s.id, rev, s.text);
            if item.id != want.id
                || item.title != want.title
                || item.category != want.category
                || item.price != want.price
                || item.attributes != want.attributes
            {
                f.lost = Some(format!(
                    "{}: Get returned {:?} rev {:?}, want rev {rev}",
                    s.id,
                    item.title,
                    item.attributes.get("rev")
                ));
                return f;
            }
        }
        (Expect::Live(rev), Err(e)) if e.code() == Code::NotFound => {
            ctx.stats.expected(kind);
            f.lost = Some(format!(
                "{}: acknowledged rev {rev} but Get says NOT_FOUND",
                s.id
            ));
            return f;
        }
        (Expect::Deleted, Ok(item)) => {
            f.resurrected = Some(format!(
                "{}: deleted but Get returned {:?}",
                s.id, item.title
            ));
            return f;
        }
        (Expect::Deleted, Err(e)) if e.code() == Code::NotFound => ctx.stats.expected(kind),
        (_, Err(e)) => {
            ctx.stats
                .unexpected(kind, format!("Get {}: {}", s.id, status_text(&e)));
            f.failed = true;
            return f;
        }
        (Expect::Unknown, Ok(_)) => return f,
    }
    if !searches {
        return f;
    }

    let mut approx_ok = None;
    if let (Expect::Live(rev), false) = (s.expect, s.text) {
        let v = ctx.model.vector(&s.id, rev);
        let req = vector_request(v, 10, ctx.ef, None);
        match ctx.timed_search(kind, req).await {
            Ok(resp) => {
                let top = resp.hits.first().map_or(f32::NEG_INFINITY, |h| h.score);
                let own = resp.hits.iter().find(|h| h.id == s.id);
                approx_ok = Some(own.is_some_and(|h| h.score >= top - SCORE_TIE));
                if let Some(h) = own {
                    let hit_rev = h
                        .item
                        .as_ref()
                        .and_then(|i| i.attributes.get("rev").cloned());
                    if hit_rev != Some(rev.to_string()) {
                        f.lost = Some(format!(
                            "{}: search hit carries rev {hit_rev:?}, want {rev}",
                            s.id
                        ));
                        return f;
                    }
                }
            }
            Err(e) => {
                ctx.stats
                    .unexpected(kind, format!("self-query {}: {}", s.id, status_text(&e)));
                f.failed = true;
                return f;
            }
        }
    }

    // Exact: a filter that only this id matches is answered by scanning its vector.
    let probe = match (s.expect, s.text) {
        (Expect::Live(rev), false) => ctx.model.vector(&s.id, rev),
        _ => ctx.model.vector("probe", 0),
    };
    let filter = pb::Filter {
        attributes: HashMap::from([("uid".to_string(), s.id.clone())]),
        ..Default::default()
    };
    match ctx
        .timed_search(kind, vector_request(probe, 1, 0, Some(filter)))
        .await
    {
        Ok(resp) => {
            let found = resp.hits.iter().any(|h| h.id == s.id);
            match s.expect {
                Expect::Live(rev) if !found => {
                    f.lost = Some(format!(
                        "{}: rev {rev} is not in the index (exact filtered query)",
                        s.id
                    ))
                }
                Expect::Live(_) => f.ann_miss = approx_ok == Some(false),
                Expect::Deleted if found => {
                    f.resurrected = Some(format!("{}: deleted but still in the index", s.id))
                }
                _ => {}
            }
        }
        Err(e) => {
            ctx.stats
                .unexpected(kind, format!("exact query {}: {}", s.id, status_text(&e)));
            f.failed = true;
        }
    }
    f
}

/// Adds a finding to the run's counters and prints what was lost.
pub fn record(stats: &Stats, kind: &'static str, f: &Finding) {
    if let Some(m) = &f.lost {
        Stats::add(&stats.lost, 1);
        stats.unexpected(kind, format!("LOST {m}"));
    }
    if let Some(m) = &f.resurrected {
        Stats::add(&stats.resurrected, 1);
        stats.unexpected(kind, format!("RESURRECTED {m}"));
    }
    if f.ann_miss {
        Stats::add(&stats.ann_misses, 1);
    }
    if f.lost.is_none() && f.resurrected.is_none() && !f.failed {
        Stats::add(&stats.checks_ok, 1);
    }
}

fn vector_request(
    values: Vec<f32>,
    top_k: u32,
    ef: u32,
    filter: Option<pb::Filter>,
) -> pb::SearchRequest {
    pb::SearchRequest {
        query: Some(pb::search_request::Query::Vector(pb::Vector {
            space: SPACE.into(),
            values,
        })),
        top_k,
        ef,
        filter,
        ..Default::default()
    }
}

// ------------------------------------------------------------------ writers

/// Streams upserts, deletes and Gets of the ids this writer owns (`s<seed>-w<w>-<n>`).
pub async fn writer(mut ctx: Ctx, w: usize, max_ids: usize, mut rng: StdRng) {
    let (mut mine, mut next_n) = ctx.model.owned(w);
    let mut last_version = 0u64;
    while ctx.running() {
        let r: f64 = rng.random();
        if r < 0.65 || mine.is_empty() {
            upsert(
                &mut ctx,
                w,
                max_ids,
                &mut mine,
                &mut next_n,
                &mut last_version,
                &mut rng,
            )
            .await;
        } else if r < 0.80 {
            delete(&mut ctx, w, &mine, &mut rng).await;
        } else {
            let id = &mine[rng.random_range(0..mine.len())];
            let Some(slot) = ctx.model.get(id) else {
                continue;
            };
            if slot.expect == Expect::Unknown {
                continue;
            }
            let s = Settled {
                id: id.clone(),
                expect: slot.expect,
                text: slot.text,
                epoch: slot.epoch,
            };
            let f = check(&mut ctx, "get", &s, false).await;
            record(&ctx.stats, "get", &f);
        }
    }
}

async fn upsert(
    ctx: &mut Ctx,
    w: usize,
    max_ids: usize,
    mine: &mut Vec<String>,
    next_n: &mut u64,
    last_version: &mut u64,
    rng: &mut StdRng,
) {
    let n = rng.random_range(1..=32usize);
    let mut picked = HashSet::new();
    let mut batch: Vec<(String, bool)> = Vec::with_capacity(n + 1);
    for _ in 0..n {
        let id = if mine.len() < max_ids && (mine.is_empty() || rng.random_bool(0.6)) {
            let id = ctx.model.id(w, *next_n);
            *next_n += 1;
            mine.push(id.clone());
            id
        } else {
            mine[rng.random_range(0..mine.len())].clone()
        };
        if picked.insert(id.clone()) {
            batch.push((id, ctx.text && rng.random_bool(0.2)));
        }
    }
    // Now and then the same id twice in one stream: the later revision must win.
    if rng.random_bool(0.05) {
        let (id, _) = batch[rng.random_range(0..batch.len())].clone();
        batch.push((id, false));
    }
    let revs = ctx.model.begin_write(&batch);
    let items: Vec<pb::UpsertRequest> = batch
        .iter()
        .zip(&revs)
        .map(|((id, text), rev)| pb::UpsertRequest {
            item: Some(ctx.model.item(id, *rev, *text)),
        })
        .collect();
    let count = items.len() as u64;
    let t0 = Instant::now();
    // Some streams trickle, so the server sees several write groups in one stream.
    let result = if rng.random_bool(0.2) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for item in items {
                if tx.send(item).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        ctx.ingest
            .upsert(with_timeout(tokio_stream::wrappers::ReceiverStream::new(
                rx,
            )))
            .await
    } else {
        ctx.ingest
            .upsert(with_timeout(tokio_stream::iter(items)))
            .await
    };
    let outcome: Vec<(String, Expect)> = match result {
        Ok(resp) => {
            let summary = resp.into_inner();
            if summary.accepted == count && summary.rejected.is_empty() {
                ctx.stats.ok("upsert_stream", t0.elapsed());
                Stats::add(&ctx.stats.acked_upserts, count);
                if summary.last_version <= *last_version {
                    ctx.stats.unexpected(
                        "upsert_stream",
                        format!(
                            "last_version {} does not follow this writer's previous {}",
                            summary.last_version, last_version
                        ),
                    );
                }
                *last_version = summary.last_version;
                batch
                    .iter()
                    .zip(&revs)
                    .map(|((id, _), rev)| (id.clone(), Expect::Live(*rev)))
                    .collect()
            } else {
                ctx.stats.unexpected(
                    "upsert_stream",
                    format!(
                        "{} of {count} accepted; rejected {:?}",
                        summary.accepted,
                        summary.rejected.iter().take(3).collect::<Vec<_>>()
                    ),
                );
                batch
                    .iter()
                    .map(|(id, _)| (id.clone(), Expect::Unknown))
                    .collect()
            }
        }
        Err(e) => {
            ctx.stats.unexpected(
                "upsert_stream",
                format!("{count} items: {}", status_text(&e)),
            );
            batch
                .iter()
                .map(|(id, _)| (id.clone(), Expect::Unknown))
                .collect()
        }
    };
    ctx.model.end_write(&outcome);
}

async fn delete(ctx: &mut Ctx, w: usize, mine: &[String], rng: &mut StdRng) {
    let k = rng.random_range(1..=4usize);
    let mut ids: Vec<String> = (0..k)
        .map(|_| mine[rng.random_range(0..mine.len())].clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if rng.random_bool(0.1) {
        ids.push(format!(
            "s{}-w{w}-never-{}",
            ctx.model.seed,
            rng.random::<u32>()
        ));
    }
    let before = ctx.model.begin_delete(&ids);
    let predictable = !before.contains(&Some(Expect::Unknown));
    let want_deleted = before
        .iter()
        .filter(|e| matches!(e, Some(Expect::Live(_))))
        .count() as u64;
    let want_missing: HashSet<&String> = ids
        .iter()
        .zip(&before)
        .filter(|(_, e)| !matches!(e, Some(Expect::Live(_))))
        .map(|(id, _)| id)
        .collect();
    let t0 = Instant::now();
    let result = ctx
        .ingest
        .delete(with_timeout(pb::DeleteRequest { ids: ids.clone() }))
        .await;
    let after = match result {
        Ok(resp) => {
            let resp = resp.into_inner();
            ctx.stats.ok("delete", t0.elapsed());
            Stats::add(&ctx.stats.acked_deletes, resp.deleted);
            let missing: HashSet<&String> = resp.not_found.iter().collect();
            if predictable && (resp.deleted != want_deleted || missing != want_missing) {
                let lost: Vec<&&String> = missing.difference(&want_missing).collect();
                if !lost.is_empty() {
                    Stats::add(&ctx.stats.lost, lost.len() as u64);
                }
                ctx.stats.unexpected(
                    "delete",
                    format!("deleted {} not_found {:?}; model expected {want_deleted} and {want_missing:?}", resp.deleted, resp.not_found),
                );
            }
            Expect::Deleted
        }
        Err(e) if e.code() == Code::NotFound && (!predictable || want_deleted == 0) => {
            ctx.stats.expected("delete");
            Expect::Deleted
        }
        Err(e) if e.code() == Code::NotFound => {
            Stats::add(&ctx.stats.lost, want_deleted);
            ctx.stats.unexpected(
                "delete",
                format!("NOT_FOUND for {want_deleted} acknowledged ids {ids:?}"),
            );
            Expect::Deleted
        }
        Err(e) => {
            ctx.stats
                .unexpected("delete", format!("{ids:?}: {}", status_text(&e)));
            Expect::Unknown
        }
    };
    let outcome: Vec<(String, Expect)> = ids.into_iter().map(|id| (id, after)).collect();
    ctx.model.end_write(&outcome);
}

// ------------------------------------------------------------------ searchers

pub async fn searcher(mut ctx: Ctx, mut rng: StdRng) {
    while ctx.running() {
        let r: f64 = rng.random();
        let text_share = if ctx.text { 0.15 } else { 0.0 };
        if r < text_share {
            let words = [
                "running shoes",
                "leather sofa",
                "wireless mouse",
                "wooden stool",
                "red jacket",
                "steel kettle",
            ];
            let req = pb::SearchRequest {
                query: Some(pb::search_request::Query::Text(
                    words[rng.random_range(0..words.len())].into(),
                )),
                top_k: 10,
                ..Default::default()
            };
            let resp = ctx.timed_search("search_text", req.clone()).await;
            judge(&ctx, "search_text", &req, resp, None);
        } else if r < text_share + 0.2 {
            let Some(s) = ctx.model.sample_settled(&mut rng) else {
                continue;
            };
            if !matches!(s.expect, Expect::Live(_)) {
                continue;
            }
            let req = pb::SearchRequest {
                query: Some(pb::search_request::Query::ItemId(s.id.clone())),
                top_k: 10,
                ..Default::default()
            };
            let resp = ctx.timed_search("search_item", req.clone()).await;
            // The item may have been deleted (or rewritten) while the query ran.
            match resp {
                Err(e)
                    if matches!(e.code(), Code::NotFound | Code::FailedPrecondition)
                        && !ctx.model.still(&s) =>
                {
                    ctx.stats.expected("search_item")
                }
                other => judge(&ctx, "search_item", &req, other, Some(&s.id)),
            }
        } else if r < text_share + 0.45 {
            let a = rng.random_range(0..CATEGORIES as u64);
            let b = rng.random_range(0..CATEGORIES as u64);
            let lo = rng.random_range(0.0..900.0f64).floor();
            let filter = pb::Filter {
                categories: vec![category(a << 20), category(b << 20)],
                price_min: Some(lo),
                price_max: Some(lo + 300.0),
                ..Default::default()
            };
            let req = vector_request(ctx.model.query_vector(&mut rng), 20, 0, Some(filter));
            let resp = ctx.timed_search("search_filtered", req.clone()).await;
            judge(&ctx, "search_filtered", &req, resp, None);
        } else {
            let req = vector_request(ctx.model.query_vector(&mut rng), 10, 0, None);
            let resp = ctx.timed_search("search_vector", req.clone()).await;
            judge(&ctx, "search_vector", &req, resp, None);
        }
    }
}

/// A search answer must be well formed and honour its filter; "more like this" excludes the item.
fn judge(
    ctx: &Ctx,
    kind: &'static str,
    req: &pb::SearchRequest,
    resp: Result<pb::SearchResponse, Status>,
    exclude: Option<&str>,
) {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return ctx.stats.unexpected(kind, status_text(&e)),
    };
    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    if resp.hits.len() > req.top_k as usize {
        problems.push(format!("{} hits for top_k {}", resp.hits.len(), req.top_k));
    }
    for (i, h) in resp.hits.iter().enumerate() {
        if !seen.insert(&h.id) {
            problems.push(format!("duplicate hit {}", h.id));
        }
        if i > 0 && h.score > resp.hits[i - 1].score + 1e-6 {
            problems.push(format!("scores not descending at rank {i}"));
        }
        if Some(h.id.as_str()) == exclude {
            problems.push("more-like-this returned the item itself".into());
        }
        let Some(item) = &h.item else {
            problems.push(format!("hit {} without item", h.id));
            continue;
        };
        if item.id != h.id {
            problems.push(format!("hit {} hydrated as {}", h.id, item.id));
        }
        if let Some(f) = &req.filter {
            let in_price = f.price_min.is_none_or(|m| item.price >= m)
                && f.price_max.is_none_or(|m| item.price <= m);
            if !(f.categories.is_empty() || f.categories.contains(&item.category)) || !in_price {
                problems.push(format!(
                    "hit {} ({}, {}) violates the filter",
                    h.id, item.category, item.price
                ));
            }
        }
    }
    if !problems.is_empty() {
        ctx.stats
            .unexpected(kind, format!("bad answer: {}", problems.join("; ")));
    }
}

// ------------------------------------------------------------------ checker and admin

/// Verifies random settled ids for the whole run.
pub async fn checker(mut ctx: Ctx, mut rng: StdRng) {
    while ctx.running() {
        let Some(s) = ctx.model.sample_settled(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let f = check(&mut ctx, "check", &s, true).await;
        if ctx.model.still(&s) {
            record(&ctx.stats, "check", &f);
        } else {
            Stats::add(&ctx.stats.checks_raced, 1);
        }
    }
}

/// An admin rebuild every `every`, streamed to completion.
pub async fn rebuilder(mut ctx: Ctx, every: Duration) {
    loop {
        let next = Instant::now() + every;
        if next >= ctx.deadline {
            return;
        }
        tokio::time::sleep_until(next.into()).await;
        let t0 = Instant::now();
        let mut last = None;
        let result: Result<(), Status> = async {
            let mut stream = ctx.admin.rebuild(pb::RebuildRequest {}).await?.into_inner();
            while let Some(p) = stream.message().await? {
                last = Some(p);
            }
            Ok(())
        }
        .await;
        match (result, last) {
            (Ok(()), Some(p)) if p.phase == "done" => ctx.stats.ok("rebuild", t0.elapsed()),
            (Ok(()), p) => ctx
                .stats
                .unexpected("rebuild", format!("stream ended at {p:?}")),
            (Err(e), _) => ctx.stats.unexpected("rebuild", status_text(&e)),
        }
    }
}
