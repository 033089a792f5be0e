//! The measurements: each suite loads a data set into fresh embedded engines and queries them the
//! way a client would (text, voice, "more like this" by item id).

use super::data::{self, Product, Recording, SpokenQuery, Stamp, FASHION_MNIST_CLASSES};
use super::engine::Engine;
use super::metrics::{
    first_relevant_rank, precision_at, rank_metrics, transcript_exact, word_error_rate, word_heard,
};
use super::report::{Section, Timing, TranscriptRow};
use super::{EvalError, EvalOptions};
use mmsearch::encode::{EncodeError, Encoders};
use mmsearch::model::{FilterSpec, Item, NewItem};
use mmsearch::pipeline::search::SearchRequest;
use mmsearch::pipeline::{PipelineError, Query, SpaceRole};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// What the suites add to the report.
#[derive(Default)]
pub struct Out {
    pub sections: Vec<Section>,
    pub transcripts: Vec<TranscriptRow>,
    pub timings: Vec<Timing>,
}

impl Out {
    fn ranks(&mut self, name: &str, ranks: &[Option<usize>], note: &str) {
        self.sections.push(Section {
            name: name.into(),
            n: ranks.len(),
            metrics: rank_metrics(ranks),
            note: note.into(),
        });
    }

    fn metric(&mut self, name: &str, n: usize, metrics: BTreeMap<String, f64>, note: &str) {
        self.sections.push(Section {
            name: name.into(),
            n,
            metrics,
            note: note.into(),
        });
    }
}

struct Ctx<'a> {
    opts: &'a EvalOptions,
    encoders: Arc<Encoders>,
}

impl Ctx<'_> {
    /// A fresh engine loaded with `items`, rebuilt into a generation unless told not to.
    async fn engine(
        &self,
        what: &str,
        items: Vec<NewItem>,
        out: &mut Out,
    ) -> Result<Engine, EvalError> {
        let engine = Engine::open(&self.opts.config, self.encoders.clone()).await?;
        let n = items.len();
        let started = Instant::now();
        engine.ingest(items).await?;
        out.timings.push(Timing {
            what: what.into(),
            items: n,
            seconds: started.elapsed().as_secs_f64(),
        });
        if self.opts.rebuild {
            engine.rebuild().await?;
        }
        tracing::info!(
            what,
            items = n,
            seconds = started.elapsed().as_secs_f64(),
            "engine loaded"
        );
        Ok(engine)
    }
}

/// A voice query: the transcript and the ranked ids, or an empty transcript when Whisper heard
/// nothing (the server answers INVALID_ARGUMENT then; for the metrics that is a miss).
async fn voice(
    engine: &Engine,
    wav: &std::path::Path,
    top_k: usize,
    language: Option<&str>,
) -> Result<(String, Vec<String>), EvalError> {
    let bytes = data::read(wav)?;
    let request = SearchRequest {
        speech_language: language.map(str::to_owned),
        ..Engine::vector_request(Query::Audio(bytes), top_k)
    };
    match engine.request(request).await {
        Ok(r) => Ok((
            r.transcript.unwrap_or_default(),
            r.hits.into_iter().map(|h| h.id).collect(),
        )),
        Err(PipelineError::Encode(EncodeError::InvalidInput(_))) => Ok((String::new(), Vec::new())),
        Err(e) => Err(EvalError::Search(format!("{}: {e}", wav.display()))),
    }
}

fn rank_of(ranked: &[String], target: &str) -> Option<usize> {
    first_relevant_rank(ranked, |id| id == target)
}

// ---------------------------------------------------------------------------------------------
// Vendure: 54 products with photos.

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    TextOnly,
    BridgeOnly,
    Fused,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::TextOnly => "text-only",
            Variant::BridgeOnly => "bridge-only",
            Variant::Fused => "fused",
        }
    }
}

fn vendure_items(products: &[Product], photos: &[Vec<Vec<u8>>], v: Variant) -> Vec<NewItem> {
    products
        .iter()
        .zip(photos)
        .map(|(p, ph)| NewItem {
            item: Item {
                id: p.id.clone(),
                title: if v == Variant::BridgeOnly {
                    String::new()
                } else {
                    p.title.clone()
                },
                description: if v == Variant::BridgeOnly {
                    String::new()
                } else {
                    p.description.clone()
                },
                category: p.category.clone(),
                price: p.price,
                ..Default::default()
            },
            images: if v == Variant::TextOnly {
                Vec::new()
            } else {
                ph.clone()
            },
            ..Default::default()
        })
        .collect()
}

pub async fn vendure(
    opts: &EvalOptions,
    encoders: Arc<Encoders>,
    out: &mut Out,
) -> Result<(), EvalError> {
    let ctx = Ctx { opts, encoders };
    let products = opts.data.vendure()?;
    let photos: Vec<Vec<Vec<u8>>> = products
        .iter()
        .map(|p| {
            p.images
                .iter()
                .map(|i| data::read(i))
                .collect::<Result<_, _>>()
        })
        .collect::<Result<_, _>>()?;
    let n = products.len();
    let names: Vec<(String, String)> = products
        .iter()
        .map(|p| (p.id.clone(), p.title.clone()))
        .collect();
    let paraphrases = data::paraphrases()?;
    let ids: BTreeSet<&str> = products.iter().map(|p| p.id.as_str()).collect();
    if let Some((id, _)) = paraphrases
        .iter()
        .find(|(id, _)| !ids.contains(id.as_str()))
    {
        return Err(EvalError::Data(format!(
            "paraphrase target {id:?} is not in the Vendure catalogue"
        )));
    }
    let zh = data::zh_queries()?;
    if let Some((id, _)) = zh.iter().find(|(id, _)| !ids.contains(id.as_str())) {
        return Err(EvalError::Data(format!(
            "Chinese query target {id:?} is not in the Vendure catalogue"
        )));
    }
    let mut spoken: Vec<SpokenQuery> = opts
        .data
        .spoken_queries()?
        .into_iter()
        .filter(|q| opts.espeak_sets.contains(&q.set))
        .collect();
    if opts.espeak_sets.iter().any(|s| s == "vendure_zh") {
        spoken.extend(opts.data.spoken_queries_zh()?);
    }

    let mut engines = Vec::new();
    for v in [Variant::TextOnly, Variant::BridgeOnly, Variant::Fused] {
        let e = ctx
            .engine(
                &format!("vendure {}", v.name()),
                vendure_items(&products, &photos, v),
                out,
            )
            .await?;
        for (set, queries) in [
            ("names", &names),
            ("paraphrases", &paraphrases),
            ("zh", &zh),
        ] {
            let mut ranks = Vec::with_capacity(queries.len());
            for (target, q) in queries.iter() {
                ranks.push(rank_of(&e.ranked(Query::Text(q.clone()), n).await?, target));
            }
            out.ranks(&format!("vendure/{}/{set}", v.name()), &ranks, "");
        }
        engines.push((v, e));
    }

    // The same products with Chinese titles and descriptions (and the same photos).
    let zh_text: HashMap<String, data::ZhText> = data::zh_catalog()?
        .into_iter()
        .map(|z| (z.id.clone(), z))
        .collect();
    let zh_products = products
        .iter()
        .map(|p| {
            let z = zh_text
                .get(&p.id)
                .ok_or_else(|| EvalError::Data(format!("{} has no Chinese title", p.id)))?;
            Ok(Product {
                title: z.title.clone(),
                description: z.description.clone(),
                ..p.clone()
            })
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    {
        let e = ctx
            .engine(
                "vendure-zh fused",
                vendure_items(&zh_products, &photos, Variant::Fused),
                out,
            )
            .await?;
        for (set, queries) in [
            ("zh", &zh),
            ("names", &names),
            ("paraphrases", &paraphrases),
        ] {
            let mut ranks = Vec::with_capacity(queries.len());
            for (target, q) in queries.iter() {
                ranks.push(rank_of(&e.ranked(Query::Text(q.clone()), n).await?, target));
            }
            out.ranks(
                &format!("vendure-zh/fused/{set}"),
                &ranks,
                "Chinese titles and descriptions",
            );
        }
    }

    // Voice: Whisper runs once per clip (through the fused engine's audio path); the same
    // transcript is then a text query on the bridge-only engine, which is exactly what the audio
    // path does after transcription.
    let Some((_, fused)) = engines.iter().find(|(v, _)| *v == Variant::Fused) else {
        return Ok(());
    };
    let Some((_, bridge)) = engines.iter().find(|(v, _)| *v == Variant::BridgeOnly) else {
        return Ok(());
    };
    for set in &opts.espeak_sets {
        let clips: Vec<&SpokenQuery> = spoken.iter().filter(|q| &q.set == set).collect();
        if clips.is_empty() {
            continue;
        }
        let mut ranks: BTreeMap<(&str, &str), Vec<Option<usize>>> = BTreeMap::new();
        let (mut exact, mut wer) = (0usize, 0.0f64);
        for clip in &clips {
            let (heard, voice_fused) =
                voice(fused, &clip.wav, n, opts.speech_language.as_deref()).await?;
            exact += usize::from(transcript_exact(&clip.text, &heard));
            wer += word_error_rate(&clip.text, &heard);
            let typed_fused = fused.ranked(Query::Text(clip.text.clone()), n).await?;
            let typed_bridge = bridge.ranked(Query::Text(clip.text.clone()), n).await?;
            let voice_bridge = if heard.trim().is_empty() {
                Vec::new()
            } else {
                bridge
                    .ranked(Query::Text(heard.trim().to_string()), n)
                    .await?
            };
            let r = |l: &[String]| rank_of(l, &clip.target);
            ranks
                .entry(("fused", "typed"))
                .or_default()
                .push(r(&typed_fused));
            ranks
                .entry(("fused", "voice"))
                .or_default()
                .push(r(&voice_fused));
            ranks
                .entry(("bridge-only", "typed"))
                .or_default()
                .push(r(&typed_bridge));
            ranks
                .entry(("bridge-only", "voice"))
                .or_default()
                .push(r(&voice_bridge));
            out.transcripts.push(TranscriptRow {
                set: format!("espeak {set} (bridge-only ranks)"),
                said: clip.text.clone(),
                heard,
                rank_typed: r(&typed_bridge),
                rank_voice: r(&voice_bridge),
            });
        }
        let k = clips.len();
        out.metric(
            &format!("voice/espeak-{set}/transcript"),
            k,
            BTreeMap::from([
                ("exact".into(), exact as f64 / k as f64),
                ("word_acc".into(), 1.0 - wer / k as f64),
            ]),
            if set == "vendure_zh" {
                "espeak-ng cmn-latn-pinyin (pinyin by pypinyin) → the configured Whisper"
            } else {
                "espeak-ng en-us 175 wpm → the configured Whisper"
            },
        );
        for ((variant, how), r) in ranks {
            out.ranks(
                &format!("voice/espeak-{set}/vendure-{variant}/{how}"),
                &r,
                "",
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tux Paint stamps: ≈950 captioned images, photo-only items.

fn tux_items(stamps: &[Stamp]) -> Result<Vec<NewItem>, EvalError> {
    stamps
        .iter()
        .map(|s| {
            Ok(NewItem {
                item: Item {
                    id: s.key.clone(),
                    category: s.top.clone(),
                    attributes: vec![("folder".into(), s.category.clone())],
                    ..Default::default()
                },
                images: vec![data::read(&s.image)?],
                ..Default::default()
            })
        })
        .collect()
}

/// Stamps whose caption names `word`: the word itself, its plural, or (for compounds such as
/// "palmtree") two adjacent caption words spelling it.
fn caption_names(caption: &str, word: &str) -> bool {
    let w = super::metrics::words(caption);
    let target: String = super::metrics::words(word).concat();
    w.iter()
        .any(|x| *x == target || *x == format!("{target}s") || *x == format!("{target}es"))
        || w.windows(2).any(|p| p.concat() == target)
}

pub async fn tuxpaint(
    opts: &EvalOptions,
    encoders: Arc<Encoders>,
    out: &mut Out,
) -> Result<(), EvalError> {
    let ctx = Ctx { opts, encoders };
    let stamps = opts.data.tuxpaint()?;
    let n = stamps.len();
    let engine = ctx
        .engine("tuxpaint bridge-only", tux_items(&stamps)?, out)
        .await?;

    // caption → image: one query per distinct caption; every stamp with that caption is relevant.
    let mut by_caption: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for s in &stamps {
        let e = by_caption
            .entry(s.caption.trim().to_lowercase())
            .or_insert_with(|| (s.caption.clone(), BTreeSet::new()));
        e.1.insert(s.key.clone());
    }
    let mut ranks = Vec::with_capacity(by_caption.len());
    for (caption, relevant) in by_caption.values() {
        let ranked = engine.ranked(Query::Text(caption.clone()), n).await?;
        ranks.push(first_relevant_rank(&ranked, |id| relevant.contains(id)));
    }
    out.ranks(
        "tuxpaint/caption→image",
        &ranks,
        "bridge-only items; distinct captions",
    );

    // image → image: same folder is relevant; symbols (letters, flags, math) left out, as in the reference.
    let folder: HashMap<&str, &str> = stamps
        .iter()
        .map(|s| (s.key.as_str(), s.category.as_str()))
        .collect();
    let tops: BTreeSet<String> = stamps
        .iter()
        .filter(|s| s.top != "symbols")
        .map(|s| s.top.clone())
        .collect();
    let filter = FilterSpec {
        categories: tops.into_iter().collect(),
        ..Default::default()
    };
    let queries: Vec<&Stamp> = stamps.iter().filter(|s| s.top != "symbols").collect();
    for space in [
        engine.space(SpaceRole::Visual)?,
        engine.space(SpaceRole::Text)?,
    ] {
        let mut per_query = Vec::with_capacity(queries.len());
        for s in &queries {
            let r = engine
                .search(
                    Query::ItemId(s.key.clone()),
                    10,
                    Some(&space),
                    filter.clone(),
                )
                .await
                .map_err(|e| EvalError::Search(e.to_string()))?;
            let got = r
                .hits
                .iter()
                .map(|h| folder.get(h.id.as_str()).copied().unwrap_or("").to_string())
                .collect();
            per_query.push((s.category.clone(), got));
        }
        out.metric(
            &format!("tuxpaint/image→image/{space}"),
            per_query.len(),
            BTreeMap::from([("P@10".into(), precision_at(10, &per_query))]),
            "same folder relevant; symbols excluded",
        );
    }

    // Human recordings of single words (KTuberling) → stamps whose caption names the word.
    let recordings: Vec<Recording> = opts
        .data
        .ktuberling()?
        .into_iter()
        .filter(|r| {
            opts.ktuberling_words
                .as_ref()
                .is_none_or(|w| w.contains(&r.word))
        })
        .collect();
    if recordings.is_empty() {
        return Ok(());
    }
    let (mut heard_ok, mut typed_ranks, mut voice_ranks) = (0usize, Vec::new(), Vec::new());
    for rec in &recordings {
        let relevant: BTreeSet<&str> = stamps
            .iter()
            .filter(|s| caption_names(&s.caption, &rec.word))
            .map(|s| s.key.as_str())
            .collect();
        let (heard, voice_ranked) =
            voice(&engine, &rec.wav, n, opts.speech_language.as_deref()).await?;
        heard_ok += usize::from(word_heard(&rec.word, &heard));
        let mut row = TranscriptRow {
            set: "ktuberling".into(),
            said: rec.word.clone(),
            heard,
            rank_typed: None,
            rank_voice: None,
        };
        if !relevant.is_empty() {
            let typed = engine.ranked(Query::Text(rec.word.clone()), n).await?;
            row.rank_typed = first_relevant_rank(&typed, |id| relevant.contains(id));
            row.rank_voice = first_relevant_rank(&voice_ranked, |id| relevant.contains(id));
            typed_ranks.push(row.rank_typed);
            voice_ranks.push(row.rank_voice);
        }
        out.transcripts.push(row);
    }
    out.metric(
        "voice/ktuberling/transcript",
        recordings.len(),
        BTreeMap::from([("exact".into(), heard_ok as f64 / recordings.len() as f64)]),
        "human recordings of single words → whisper-tiny-en",
    );
    let note = "words that some Tux Paint caption names; relevant = those stamps";
    out.ranks("voice/ktuberling/tuxpaint/typed", &typed_ranks, note);
    out.ranks("voice/ktuberling/tuxpaint/voice", &voice_ranks, note);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST: 28×28 grey product silhouettes, 10 classes.

pub async fn fashion_mnist(
    opts: &EvalOptions,
    encoders: Arc<Encoders>,
    out: &mut Out,
) -> Result<(), EvalError> {
    let ctx = Ctx { opts, encoders };
    let (images, labels) = opts.data.fashion_mnist(opts.fmnist_n)?;
    let n = images.len();
    let items = images
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, (px, &y))| {
            Ok(NewItem {
                item: Item {
                    id: format!("fm{i:05}"),
                    category: FASHION_MNIST_CLASSES[y as usize % 10].to_string(),
                    ..Default::default()
                },
                images: vec![data::png_from_gray(px, 28)?],
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    let engine = ctx
        .engine(
            &format!("fashion-mnist bridge-only ({n} PNG 28×28)"),
            items,
            out,
        )
        .await?;
    let label_of = |id: &str| -> Option<usize> {
        id.strip_prefix("fm")?
            .parse::<usize>()
            .ok()
            .map(|i| labels[i] as usize)
    };

    // Zero-shot: each image takes the class whose prompt scores it highest.
    let mut scores = vec![[f32::NEG_INFINITY; 10]; n];
    for (c, class) in FASHION_MNIST_CLASSES.iter().enumerate() {
        let r = engine
            .search(
                Query::Text(class.to_string()),
                n,
                None,
                FilterSpec::default(),
            )
            .await
            .map_err(|e| EvalError::Search(e.to_string()))?;
        for h in r.hits {
            if let Some(i) =
                h.id.strip_prefix("fm")
                    .and_then(|i| i.parse::<usize>().ok())
            {
                scores[i][c] = h.score;
            }
        }
    }
    let correct = scores
        .iter()
        .zip(&labels)
        .filter(|(s, &y)| {
            let best = s
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(usize::MAX, |(c, _)| c);
            best == y as usize
        })
        .count();
    out.metric(
        "fashion-mnist/zero-shot",
        n,
        BTreeMap::from([("accuracy".into(), correct as f64 / n as f64)]),
        "10 class-name text queries over bridge-only items; chance 0.100",
    );

    // Image → image: same class is relevant.
    let q = opts.fmnist_queries.min(n);
    for space in [
        engine.space(SpaceRole::Visual)?,
        engine.space(SpaceRole::Text)?,
    ] {
        let mut per_query = Vec::with_capacity(q);
        for (i, &y) in labels.iter().enumerate().take(q) {
            let r = engine
                .search(
                    Query::ItemId(format!("fm{i:05}")),
                    10,
                    Some(&space),
                    FilterSpec::default(),
                )
                .await
                .map_err(|e| EvalError::Search(e.to_string()))?;
            let got = r
                .hits
                .iter()
                .map(|h| label_of(&h.id).map_or(String::new(), |l| l.to_string()))
                .collect();
            per_query.push(((y as usize).to_string(), got));
        }
        out.metric(
            &format!("fashion-mnist/image→image/{space}"),
            q,
            BTreeMap::from([("P@10".into(), precision_at(10, &per_query))]),
            &format!("gallery {n}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::caption_names;

    #[test]
    fn caption_matching() {
        assert!(caption_names("A brown hat.", "hat"));
        assert!(caption_names("Some red shoes.", "shoe"));
        assert!(caption_names("A palm tree.", "palmtree"));
        assert!(!caption_names("A hatchet.", "hat"));
        assert!(!caption_names("A tiger.", "tie"));
    }
}
