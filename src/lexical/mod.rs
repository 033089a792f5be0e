//! Lexical search (BM25, tantivy) over an item's title, description, category and attribute
//! values — the exact words (brands, model codes, sizes) that embeddings blur.
//!
//! Two parts, mirroring the vector index:
//! * [`Segment`] — the generation's immutable index, built by a rebuild into `lexical/` inside
//!   the generation folder, committed and swapped together with the HNSW graphs.
//! * [`Fresh`] — a RAM index of every write newer than the generation, added and committed
//!   before a write is acknowledged. Never persisted: after a restart it is replayed from
//!   RocksDB, the source of truth (tantivy's commits are not).
//!
//! Both hold versions by `seq`; which seq is live (deleted, replaced, filtered) is the
//! caller's `accept`, exactly as for vectors. Scores of the two parts are comparable because
//! they are computed with the statistics (document count, term frequencies) of both together.
//! Knows only the item model; the collection owns the parts.

pub mod tokenize;

use crate::model::Item;
use mmsearch_index::Scored;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED,
};
use tantivy::{
    collector::TopDocs, DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher,
    TantivyDocument, Term,
};

#[derive(Debug, thiserror::Error)]
pub enum LexicalError {
    #[error("lexical index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("lexical index at {path}: {source}")]
    Open {
        path: String,
        source: tantivy::TantivyError,
    },
    #[error("lexical index folder {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, LexicalError>;

/// `[lexical]`: how text is matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LexicalConfig {
    /// Query words of at least this many characters that no title or description has also
    /// match terms one edit away (typos).
    pub typo_min_chars: usize,
    /// Weight of a typo match relative to one BM25 unit.
    pub typo_boost: f32,
    /// Title matches count this many times a description match.
    pub title_boost: f32,
    /// Longest snippet, in characters.
    pub snippet_chars: usize,
}

impl Default for LexicalConfig {
    fn default() -> Self {
        LexicalConfig {
            typo_min_chars: 5,
            typo_boost: 0.5,
            title_boost: 2.0,
            snippet_chars: 160,
        }
    }
}

impl LexicalConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("typo_boost", self.typo_boost),
            ("title_boost", self.title_boost),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("lexical.{name} must be a finite number ≥ 0"));
            }
        }
        if self.snippet_chars < 20 {
            return Err("lexical.snippet_chars must be at least 20".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Fields {
    seq: Field,
    title: Field,
    description: Field,
    category: Field,
    attributes: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokenize::ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        seq: b.add_u64_field("seq", INDEXED | FAST),
        title: b.add_text_field("title", text.clone()),
        description: b.add_text_field("description", text.clone()),
        category: b.add_text_field("category", text.clone()),
        attributes: b.add_text_field("attributes", text),
    };
    (b.build(), fields)
}

fn register(index: &Index) {
    index
        .tokenizers()
        .register(tokenize::ANALYZER, tokenize::analyzer());
}

fn document(f: &Fields, seq: u64, item: &Item) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_u64(f.seq, seq);
    doc.add_text(f.title, &item.title);
    doc.add_text(f.description, &item.description);
    doc.add_text(f.category, &item.category);
    for (_, v) in &item.attributes {
        doc.add_text(f.attributes, v);
    }
    doc
}

// One indexing thread: writes are small groups, and the rebuild shares the cores with serving.
const WRITER_BYTES: usize = 32 << 20;

fn writer(index: &Index) -> Result<IndexWriter> {
    Ok(index.writer_with_num_threads(1, WRITER_BYTES)?)
}

fn reader(index: &Index) -> Result<IndexReader> {
    Ok(index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?)
}

/// The generation's lexical index (read-only once built).
pub struct Segment {
    reader: IndexReader,
    fields: Fields,
}

impl Segment {
    /// An empty index, for a collection without a generation yet.
    pub fn empty() -> Result<Segment> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        register(&index);
        Ok(Segment {
            reader: reader(&index)?,
            fields,
        })
    }

    pub fn open(dir: &Path) -> Result<Segment> {
        let err = |source: tantivy::TantivyError| LexicalError::Open {
            path: dir.display().to_string(),
            source,
        };
        let index = Index::open_in_dir(dir).map_err(err)?;
        register(&index);
        let (expected, fields) = schema();
        if index.schema() != expected {
            return Err(err(tantivy::TantivyError::SchemaError(
                "the schema differs from this version's".into(),
            )));
        }
        Ok(Segment {
            reader: reader(&index).map_err(|e| match e {
                LexicalError::Tantivy(t) => err(t),
                other => other,
            })?,
            fields,
        })
    }

    pub fn docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// Writes a generation's lexical index into `dir` (inside the generation's `.tmp` folder, so
/// the generation's rename publishes it with the graphs).
pub struct SegmentBuilder {
    writer: IndexWriter,
    fields: Fields,
    added: u64,
}

impl SegmentBuilder {
    pub fn create(dir: &Path) -> Result<SegmentBuilder> {
        std::fs::create_dir_all(dir).map_err(|source| LexicalError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let (schema, fields) = schema();
        let mmap = MmapDirectory::open(dir).map_err(|e| LexicalError::Open {
            path: dir.display().to_string(),
            source: e.into(),
        })?;
        let index = Index::create(mmap, schema, Default::default())?;
        register(&index);
        Ok(SegmentBuilder {
            writer: writer(&index)?,
            fields,
            added: 0,
        })
    }

    pub fn add(&mut self, seq: u64, item: &Item) -> Result<()> {
        self.writer
            .add_document(document(&self.fields, seq, item))?;
        self.added += 1;
        Ok(())
    }

    /// Commits (tantivy fsyncs its files) and waits for merges; returns the document count.
    pub fn finish(mut self) -> Result<u64> {
        self.writer.commit()?;
        self.writer.wait_merging_threads()?;
        Ok(self.added)
    }
}

/// The RAM index of writes newer than the generation.
pub struct Fresh {
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    fields: Fields,
}

impl Fresh {
    pub fn new() -> Result<Fresh> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        register(&index);
        Ok(Fresh {
            writer: Mutex::new(writer(&index)?),
            reader: reader(&index)?,
            fields,
        })
    }

    /// Adds versions and makes them searchable before returning.
    pub fn add<'a>(&self, items: impl IntoIterator<Item = (u64, &'a Item)>) -> Result<()> {
        let mut w = self.writer.lock();
        for (seq, item) in items {
            w.add_document(document(&self.fields, seq, item))?;
        }
        w.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Drops the versions a new generation covers (seq ≤ `snapshot_seq`).
    pub fn retain_newer_than(&self, snapshot_seq: u64) -> Result<()> {
        let mut w = self.writer.lock();
        let upto = Term::from_field_u64(self.fields.seq, snapshot_seq);
        w.delete_query(Box::new(RangeQuery::new(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Included(upto),
        )))?;
        w.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    pub fn docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// BM25 statistics over the generation and the fresh part together.
struct Together<'a>(&'a [Searcher; 2]);

impl Bm25StatisticsProvider for Together<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let mut n = 0;
        for s in self.0 {
            n += s.total_num_tokens(field)?;
        }
        Ok(n)
    }
    fn total_num_docs(&self) -> tantivy::Result<u64> {
        let mut n = 0;
        for s in self.0 {
            n += s.total_num_docs()?;
        }
        Ok(n)
    }
    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let mut n = 0;
        for s in self.0 {
            n += s.doc_freq(term)?;
        }
        Ok(n)
    }
}

/// A consistent read of both parts (taken under the collection's state lock).
pub struct View {
    searchers: [Searcher; 2],
    fields: Fields,
}

impl View {
    pub fn new(base: &Segment, fresh: &Fresh) -> View {
        View {
            searchers: [base.reader.searcher(), fresh.reader.searcher()],
            fields: base.fields,
        }
    }

    /// The `k` best live versions for `text` by BM25 (title boosted; long words also match
    /// one typo away). `accept` says which seqs are live and pass the filter; when it rejects
    /// many of the best, the window is widened until `k` pass or the index is exhausted.
    pub fn search(
        &self,
        config: &LexicalConfig,
        text: &str,
        k: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Scored>> {
        let Some(query) = self.query(config, text) else {
            return Ok(Vec::new());
        };
        let stats = Together(&self.searchers);
        let total = stats.total_num_docs()? as usize;
        let mut window = (k * 2).max(16);
        loop {
            let mut hits: Vec<Scored> = Vec::new();
            let mut exhausted = true;
            for searcher in &self.searchers {
                let top = searcher.search_with_statistics_provider(
                    query.as_ref(),
                    &TopDocs::with_limit(window).order_by_score(),
                    &stats,
                )?;
                exhausted &= top.len() < window;
                let mut columns = HashMap::new();
                for (score, addr) in top {
                    let seq = seq_of(searcher, &mut columns, addr)?;
                    if let Some(seq) = seq.filter(|s| accept(*s)) {
                        hits.push(Scored { id: seq, score });
                    }
                }
            }
            if hits.len() >= k || exhausted || window >= total {
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
                hits.truncate(k);
                return Ok(hits);
            }
            window = (window * 4).min(total.max(1));
        }
    }

    /// About what a document matching every word of `text` once, each in its best field, would
    /// score (`Σ_t max_f boost_f · idf_f(t)`: BM25 of one occurrence at average field length is
    /// its idf). A hit's score over this is the share of the query's information it explains —
    /// a scale that means the same across queries, unlike the best hit's score. A word no
    /// document has counts as the rarest word, so unknown words lower that share.
    pub fn full_match(&self, config: &LexicalConfig, text: &str) -> Result<f32> {
        let f = &self.fields;
        let stats = Together(&self.searchers);
        let n = stats.total_num_docs()? as f32;
        let idf = |df: f32| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let mut seen = HashSet::new();
        let mut total = 0.0;
        for term in tokenize::terms(text) {
            if !seen.insert(term.clone()) {
                continue;
            }
            let mut best: f32 = 0.0;
            for (field, boost) in [
                (f.title, config.title_boost),
                (f.description, 1.0),
                (f.category, 1.0),
                (f.attributes, 1.0),
            ] {
                let df = stats.doc_freq(&Term::from_field_text(field, &term))? as f32;
                best = best.max(boost * idf(df.max(1.0)));
            }
            total += best;
        }
        Ok(total)
    }

    /// One Should clause per (word, field), boosted; words the index does not have (in a title
    /// or description) also match one typo away. A word the index has is taken as spelled
    /// right: a fuzzy clause on it would add little (words are stemmed) and would make the
    /// whole query exhaustive — tantivy's block-max WAND only prunes unions of term scorers —
    /// so a query with a word in every item scored all of them (50 ms at 1M items).
    fn query(&self, config: &LexicalConfig, text: &str) -> Option<Box<dyn Query>> {
        let f = &self.fields;
        let stats = Together(&self.searchers);
        let unknown = |term: &str| {
            [f.title, f.description].iter().all(|&field| {
                stats
                    .doc_freq(&Term::from_field_text(field, term))
                    .is_ok_and(|df| df == 0)
            })
        };
        let mut seen = HashSet::new();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in tokenize::terms(text) {
            if !seen.insert(term.clone()) {
                continue;
            }
            for (field, boost) in [
                (f.title, config.title_boost),
                (f.description, 1.0),
                (f.category, 1.0),
                (f.attributes, 1.0),
            ] {
                let q = TermQuery::new(
                    Term::from_field_text(field, &term),
                    IndexRecordOption::WithFreqs,
                );
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
            if config.typo_boost > 0.0
                && term.chars().count() >= config.typo_min_chars
                && !term.chars().any(crate::model::is_cjk)
                && unknown(&term)
            {
                for field in [f.title, f.description] {
                    let q = FuzzyTermQuery::new(Term::from_field_text(field, &term), 1, true);
                    clauses.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(q), config.typo_boost)),
                    ));
                }
            }
        }
        (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
    }

    pub fn docs(&self) -> u64 {
        self.searchers.iter().map(|s| s.num_docs()).sum()
    }
}

fn seq_of(
    searcher: &Searcher,
    columns: &mut HashMap<u32, tantivy::columnar::Column<u64>>,
    addr: DocAddress,
) -> Result<Option<u64>> {
    if !columns.contains_key(&addr.segment_ord) {
        let col = searcher
            .segment_reader(addr.segment_ord)
            .fast_fields()
            .u64("seq")?;
        columns.insert(addr.segment_ord, col);
    }
    Ok(columns
        .get(&addr.segment_ord)
        .and_then(|c| c.first(addr.doc_id)))
}

/// A highlighted fragment of the item's description (else its title) around the words of
/// `query`: matched words wrapped in `<b>…</b>`, the rest HTML-escaped. `None` when no word
/// matches exactly (e.g. a typo match or a vector-only hit).
pub fn snippet(config: &LexicalConfig, query: &str, item: &Item) -> Option<String> {
    let wanted: HashSet<String> = tokenize::terms(query).into_iter().collect();
    if wanted.is_empty() {
        return None;
    }
    [item.description.as_str(), item.title.as_str()]
        .into_iter()
        .find_map(|text| fragment(text, &wanted, config.snippet_chars))
}

fn fragment(text: &str, wanted: &HashSet<String>, max_chars: usize) -> Option<String> {
    let mut matches: Vec<(usize, usize)> = tokenize::tokens(text)
        .into_iter()
        .filter(|t| wanted.contains(&t.text))
        .map(|t| (t.offset_from, t.offset_to))
        .collect();
    if matches.is_empty() {
        return None;
    }
    // Overlapping CJK bigrams and unigrams merge into one highlighted run.
    matches.sort();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in matches {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    // The window of `max_chars` (counted in bytes of a char-boundary-safe slice) that starts a
    // little before a match and holds the most matches.
    let budget = max_chars * 3; // up to 3 bytes per char for CJK; trimmed by chars below
    let (mut best_start, mut best_count) = (merged[0].0, 0);
    for &(start, _) in &merged {
        let count = merged
            .iter()
            .filter(|(a, b)| *a >= start && *b <= start + budget)
            .count();
        if count > best_count {
            (best_start, best_count) = (start, count);
        }
    }
    // A short text is shown whole; a long one from a word boundary up to ~20 chars before
    // the best window's first match.
    let mut from = 0;
    if text.chars().count() > max_chars {
        let lead: usize = text[..best_start]
            .chars()
            .rev()
            .take(20)
            .map(char::len_utf8)
            .sum();
        from = best_start - lead;
        if from > 0 {
            if let Some(space) = text[from..best_start].find(' ') {
                from += space + 1;
            }
        }
    }
    let to = text[from..]
        .char_indices()
        .nth(max_chars)
        .map_or(text.len(), |(i, _)| from + i);
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut at = from;
    for &(a, b) in merged.iter().filter(|(a, b)| *a >= from && *b <= to) {
        out.push_str(&escape(&text[at..a]));
        out.push_str("<b>");
        out.push_str(&escape(&text[a..b]));
        out.push_str("</b>");
        at = b;
    }
    out.push_str(&escape(&text[at..to]));
    if to < text.len() {
        out.push('…');
    }
    Some(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, title: &str, description: &str) -> Item {
        Item {
            id: id.into(),
            title: title.into(),
            description: description.into(),
            category: "shoes".into(),
            ..Default::default()
        }
    }

    #[test]
    fn base_and_fresh_rank_together_and_typos_match() {
        let dir = tempfile::tempdir().unwrap();
        let items = vec![
            (
                1,
                item("a", "Trail runner", "Grippy Vibram sole for wet rocks"),
            ),
            (2, item("b", "City sneaker", "Soft leather upper")),
        ];
        let mut b = SegmentBuilder::create(&dir.path().join("lexical")).unwrap();
        for (seq, it) in &items {
            b.add(*seq, it).unwrap();
        }
        assert_eq!(b.finish().unwrap(), 2);
        let base = Segment::open(&dir.path().join("lexical")).unwrap();
        let fresh = Fresh::new().unwrap();
        fresh
            .add([(3, &item("c", "跑步鞋", "轻便透气的跑步鞋"))])
            .unwrap();
        let cfg = LexicalConfig::default();
        let view = View::new(&base, &fresh);
        let all = |_| true;
        assert_eq!(view.search(&cfg, "vibram", 5, &all).unwrap()[0].id, 1);
        assert_eq!(
            view.search(&cfg, "leathr", 5, &all).unwrap()[0].id,
            2,
            "one typo on a long word still matches"
        );
        assert!(view
            .search(&cfg, "sneker", 5, &all)
            .unwrap()
            .iter()
            .all(|h| h.id == 2));
        assert_eq!(view.search(&cfg, "跑鞋", 5, &all).unwrap()[0].id, 3);
        assert!(
            view.search(&cfg, "vibram", 5, &|s| s != 1)
                .unwrap()
                .is_empty(),
            "accept filters"
        );
        fresh.retain_newer_than(3).unwrap();
        assert!(View::new(&base, &fresh)
            .search(&cfg, "跑鞋", 5, &all)
            .unwrap()
            .is_empty());
    }

    /// Chinese has no spaces: the bigrams must still find the product from everyday phrasing
    /// that shares only a word or two with its text.
    #[test]
    fn chinese_queries_find_their_products() {
        let fresh = Fresh::new().unwrap();
        let items = [
            item(
                "laptop",
                "笔记本电脑",
                "搭载第七代英特尔酷睿处理器，固态硬盘，运行更快。",
            ),
            item(
                "mouse",
                "无线光电鼠标",
                "罗技无线鼠标，即插即用，电池续航长。",
            ),
            item("tent", "帐篷", "可容纳四人的露营帐篷，防水面料。"),
            item("shoe", "跑步鞋", "轻便透气的网面跑鞋，橡胶大底防滑。"),
            item("sofa", "灰色布艺沙发", "高回弹海绵坐垫，布套可拆洗。"),
            item("cactus", "仙人掌", "多刺的室内盆栽，原产秘鲁安第斯山脉。"),
        ];
        fresh
            .add(items.iter().enumerate().map(|(i, it)| (i as u64 + 1, it)))
            .unwrap();
        let base = Segment::empty().unwrap();
        let view = View::new(&base, &fresh);
        let cfg = LexicalConfig::default();
        let top = |q: &str| {
            view.search(&cfg, q, 3, &|_| true)
                .unwrap()
                .first()
                .map(|h| items[h.id as usize - 1].id.clone())
        };
        for (q, want) in [
            ("我想买一台电脑", "laptop"),
            ("无线鼠标", "mouse"),
            ("去露营用的防水帐篷", "tent"),
            ("透气跑鞋", "shoe"),
            ("可以拆洗的沙发", "sofa"),
            ("盆栽仙人掌", "cactus"),
            ("鞋", "shoe"),
        ] {
            assert_eq!(top(q).as_deref(), Some(want), "query {q}");
        }
        let it = &items[3];
        assert_eq!(
            snippet(&cfg, "跑鞋", it).unwrap(),
            "轻便透气的网面<b>跑鞋</b>，橡胶大底防滑。"
        );
    }

    #[test]
    fn snippets_highlight_the_query_words() {
        let cfg = LexicalConfig::default();
        let it = item(
            "a",
            "Trail runner",
            "A <light> shoe. Grippy Vibram soles for wet rocks and mud.",
        );
        assert_eq!(
            snippet(&cfg, "vibram sole", &it).unwrap(),
            "A &lt;light&gt; shoe. Grippy <b>Vibram</b> <b>soles</b> for wet rocks and mud."
        );
        assert_eq!(snippet(&cfg, "runner", &it).unwrap(), "Trail <b>runner</b>");
        // Stop words in the query are not highlighted (nor matched).
        assert_eq!(
            snippet(&cfg, "a shoe for the mud", &it).unwrap(),
            "A &lt;light&gt; <b>shoe</b>. Grippy Vibram soles for wet rocks and <b>mud</b>."
        );
        assert!(snippet(&cfg, "a the for", &it).is_none());
        assert!(snippet(&cfg, "boots", &it).is_none());
        let long = item(
            "b",
            "Boot",
            &format!(
                "{} The Vibram sole grips. {}",
                "Filler words here. ".repeat(20),
                "More filler. ".repeat(20)
            ),
        );
        let s = snippet(&cfg, "vibram", &long).unwrap();
        assert!(
            s.starts_with('…') && s.ends_with('…') && s.contains("<b>Vibram</b>"),
            "{s}"
        );
        assert!(
            s.replace("<b>", "").replace("</b>", "").chars().count() <= cfg.snippet_chars + 2,
            "{s}"
        );
    }
}
