//! Whisper encoder + greedy decoder with a self-attention KV cache.
//!
//! The decoder graph takes only the *new* tokens plus `past_self_{k,v}` and returns
//! `present_self_{k,v}`, so each step costs O(prefix) attention instead of re-running the whole
//! prefix (O(prefix²) overall). The present tensors are handed back to ORT as-is (moved, not
//! copied), and the cross-attention K/V from the encoder are fed by reference every step.

use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, TensorRef};
use tokenizers::Tokenizer;

use super::super::error::{EncodeError, Result};
use super::super::manifest::Manifest;
use super::super::runtime::{Environment, SessionOptions, SessionPool};

#[derive(Debug, Clone)]
pub struct WhisperTokens {
    pub sot: u32,
    pub eot: u32,
    pub prompt: Vec<u32>,
    pub suppress: Vec<u32>,
    pub begin_suppress: Vec<u32>,
    pub vocab_size: usize,
    pub max_new_tokens: usize,
    pub n_text_ctx: usize,
    /// `<|nospeech|>`; when set, the prompt's first token is run alone to read its probability.
    pub no_speech: Option<u32>,
    /// Multilingual models: (language token, code). The logits after `<|startoftranscript|>`
    /// alone, restricted to these, pick the language (Whisper's `detect_language`); it replaces
    /// the prompt's language slot (`prompt[1]`). Empty for English-only models.
    pub languages: Vec<(u32, String)>,
}

impl WhisperTokens {
    /// The language token for a code ("zh", "en", …): what a caller who knows the spoken
    /// language passes instead of detection. An English-only model accepts only "en".
    pub fn language(&self, code: &str) -> Result<Option<(u32, String)>> {
        if self.languages.is_empty() {
            return if code == "en" {
                Ok(None)
            } else {
                Err(EncodeError::InvalidInput(format!(
                    "the speech model is English-only; language {code:?} needs a multilingual one (encode.speech_model)"
                )))
            };
        }
        self.languages
            .iter()
            .find(|(_, c)| c == code)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                EncodeError::InvalidInput(format!(
                    "unknown speech language {code:?} (a Whisper code such as \"zh\" or \"en\")"
                ))
            })
    }
}

/// Whisper's own silence rule (`no_speech_threshold` 0.6 with `logprob_threshold` −1.0): the
/// transcript is dropped when the model both thinks there is no speech and is unsure of its text.
/// Without it, silence or noise comes back as hallucinated words ("you", "Thank you.") that would
/// then be searched for. Whisper's rule alone still lets 30 s of digital silence through as a
/// confident "you" (P(no speech) 0.95), so for search queries a very high P(no speech) is enough
/// on its own: asking the user to repeat is cheaper than searching for a word they never said.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;
const NO_SPEECH_ALONE: f32 = 0.9;

pub struct WhisperModel {
    encoder: SessionPool,
    decoder: SessionPool,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) tok: WhisperTokens,
    n_layers: usize,
    d_model: usize,
    /// `mask[id]` = suppressed at every step (suppress_tokens ∪ every id ≥ sot).
    mask: Vec<bool>,
}

/// Result of greedy decoding.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub tokens: Vec<u32>,
    pub text: String,
    /// Hit `max_new_tokens` without emitting end-of-text.
    pub truncated: bool,
    /// P(`<|nospeech|>`) after `<|startoftranscript|>` (0 if the manifest has no such token).
    pub no_speech_prob: f32,
    /// Mean log-probability of the generated tokens (incl. end-of-text), as Whisper computes it.
    pub avg_logprob: f32,
    /// The text was dropped by the no-speech rule.
    pub silent: bool,
    /// Detected language code (multilingual models), e.g. "zh".
    pub language: Option<String>,
}

/// Longest phrase (in tokens) checked for repetition.
const LOOP_MAX_PERIOD: usize = 16;

/// When `tokens` ends in a loop — one token three times, or a phrase of 3–16 tokens twice in a
/// row — the length that keeps its first copy. Whisper's known failure on clips it sees without
/// a long silence after them ("umbrella umbrella umbrella …"); a phrase said twice on purpose is
/// rare in a product query, and a short one ("bye bye") needs three copies to count.
fn loop_start(tokens: &[u32]) -> Option<usize> {
    let n = tokens.len();
    (1..=LOOP_MAX_PERIOD).find_map(|k| {
        let copies = if k <= 2 { 3 } else { 2 };
        if n < k * copies {
            return None;
        }
        let tail = &tokens[n - k..];
        (1..copies)
            .all(|c| &tokens[n - (c + 1) * k..n - c * k] == tail)
            .then_some(n - k * (copies - 1))
    })
}

fn log_softmax_at(logits: &[f32], i: usize) -> f32 {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits
        .iter()
        .map(|&x| f64::from(x - m).exp())
        .sum::<f64>()
        .ln() as f32
        + m;
    logits[i] - lse
}

impl WhisperModel {
    pub fn load(env: &Environment, m: &Manifest, opts: &SessionOptions) -> Result<Self> {
        let p = &m.preprocess;
        let tok = WhisperTokens {
            sot: m.require(&p.sot, "sot")?,
            eot: m.require(&p.eot, "eot")?,
            prompt: m.require(&p.prompt, "prompt")?,
            suppress: p.suppress_tokens.clone().unwrap_or_default(),
            begin_suppress: p.begin_suppress_tokens.clone().unwrap_or_default(),
            vocab_size: m.require(&p.vocab_size, "vocab_size")?,
            max_new_tokens: p.max_new_tokens.unwrap_or(224),
            n_text_ctx: p.n_text_ctx.unwrap_or(448),
            no_speech: p.no_speech,
            languages: p
                .language_tokens
                .clone()
                .unwrap_or_default()
                .into_iter()
                .zip(p.languages.clone().unwrap_or_default())
                .collect(),
        };
        if !tok.languages.is_empty() && (tok.no_speech.is_none() || tok.prompt.len() < 3) {
            return Err(EncodeError::Config(format!(
                "{}: language detection needs <|nospeech|> and a prompt [sot, language, task, ...]",
                m.id
            )));
        }
        if tok.prompt.is_empty() || tok.prompt.len() >= tok.n_text_ctx {
            return Err(EncodeError::Config(format!(
                "{}: bad prompt {:?}",
                m.id, tok.prompt
            )));
        }
        let mut mask = vec![false; tok.vocab_size];
        for &t in &tok.suppress {
            if let Some(x) = mask.get_mut(t as usize) {
                *x = true;
            }
        }
        for x in mask.iter_mut().skip(tok.sot as usize) {
            *x = true;
        }
        let tokenizer_path = m.file_by_role("tokenizer", "tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            EncodeError::ModelUnavailable(format!("tokenizer {}: {e}", tokenizer_path.display()))
        })?;
        let encoder = SessionPool::load(env, &m.file_by_role("encoder", "encoder.onnx"), opts)?;
        let decoder = SessionPool::load(env, &m.file_by_role("decoder", "decoder.onnx"), opts)?;
        Ok(Self {
            encoder,
            decoder,
            tokenizer,
            tok,
            n_layers: m.require(&p.n_layers, "n_layers")?,
            d_model: m.require(&p.d_model, "d_model")?,
            mask,
        })
    }

    pub fn encoder_pool(&self) -> &SessionPool {
        &self.encoder
    }

    /// Greedy transcription of one log-mel [n_mels × n_frames]. `language`: the spoken
    /// language's code, or `None` to detect it (multilingual models).
    pub fn decode(
        &self,
        mel: &[f32],
        n_mels: usize,
        n_frames: usize,
        language: Option<&str>,
    ) -> Result<Decoded> {
        let given = match language {
            Some(code) => self.tok.language(code)?,
            None => None,
        };
        let mel_t = TensorRef::from_array_view(([1usize, n_mels, n_frames], mel))
            .map_err(|e| EncodeError::runtime("mel tensor", e))?;
        let (cross_k, cross_v) = self.encoder.with(|s| -> Result<(DynValue, DynValue)> {
            let mut out = s
                .run(ort::inputs!["mel" => mel_t])
                .map_err(|e| EncodeError::runtime("whisper encoder", e))?;
            let k = out
                .remove("cross_k")
                .ok_or_else(|| EncodeError::Runtime("encoder has no cross_k".into()))?;
            let v = out
                .remove("cross_v")
                .ok_or_else(|| EncodeError::Runtime("encoder has no cross_v".into()))?;
            Ok((k, v))
        })?;

        let (l, d) = (self.n_layers, self.d_model);
        let empty =
            || Tensor::<f32>::from_array(([l, 1, 0, d], Vec::<f32>::new())).map(|t| t.into_dyn());
        let mut past_k: DynValue = empty().map_err(|e| EncodeError::runtime("empty kv", e))?;
        let mut past_v: DynValue = empty().map_err(|e| EncodeError::runtime("empty kv", e))?;
        // with a no-speech token, `[sot]` runs alone first (its logits give P(no speech)); the
        // rest of the prompt follows on the cache, which gives the same logits as one call
        let split = usize::from(self.tok.no_speech.is_some() && self.tok.prompt.len() > 1);
        let mut feed: Vec<u32> = if split == 1 {
            vec![self.tok.prompt[0]]
        } else {
            self.tok.prompt.clone()
        };
        let mut generated: Vec<u32> = Vec::new();
        let mut truncated = true;
        let mut no_speech_prob = 0f32;
        let mut sum_logprob = 0f32;
        let mut n_logprob = 0usize;
        let mut language = None;
        let budget = self
            .tok
            .max_new_tokens
            .min(self.tok.n_text_ctx - self.tok.prompt.len())
            + split;

        // one decoder session for the whole utterance: the cache lives in its allocator
        self.decoder.with(|s| -> Result<()> {
            for call in 0..budget {
                let step = call.wrapping_sub(split); // generated-token index; usize::MAX for the sot-only call
                let ids: Vec<i64> = feed.iter().map(|&t| i64::from(t)).collect();
                let tokens = Tensor::from_array(([1usize, ids.len()], ids))
                    .map_err(|e| EncodeError::runtime("tokens", e))?;
                let inputs: Vec<(&str, SessionInputValue<'_>)> = vec![
                    ("tokens", tokens.into()),
                    ("past_self_k", past_k.into()),
                    ("past_self_v", past_v.into()),
                    ("cross_k", (&cross_k).into()),
                    ("cross_v", (&cross_v).into()),
                ];
                let mut out = s
                    .run(inputs)
                    .map_err(|e| EncodeError::runtime("whisper decoder", e))?;
                let next = {
                    let logits = out
                        .get("logits")
                        .ok_or_else(|| EncodeError::Runtime("decoder has no logits".into()))?;
                    let (_, lg) = logits
                        .try_extract_tensor::<f32>()
                        .map_err(|e| EncodeError::runtime("logits", e))?;
                    if lg.len() < self.tok.vocab_size {
                        return Err(EncodeError::Runtime(format!(
                            "decoder returned {} logits",
                            lg.len()
                        )));
                    }
                    let lg = &lg[..self.tok.vocab_size];
                    if split == 1 && call == 0 {
                        if let Some(ns) = self.tok.no_speech.filter(|&t| (t as usize) < lg.len()) {
                            no_speech_prob = log_softmax_at(lg, ns as usize).exp();
                        }
                        language = given.clone().or_else(|| {
                            self.tok
                                .languages
                                .iter()
                                .filter(|(t, _)| (*t as usize) < lg.len())
                                .max_by(|a, b| lg[a.0 as usize].total_cmp(&lg[b.0 as usize]))
                                .cloned()
                        });
                        None
                    } else {
                        let n = self.argmax(lg, step == 0);
                        sum_logprob += log_softmax_at(lg, n as usize);
                        n_logprob += 1;
                        Some(n)
                    }
                };
                past_k = out
                    .remove("present_self_k")
                    .ok_or_else(|| EncodeError::Runtime("no present_self_k".into()))?;
                past_v = out
                    .remove("present_self_v")
                    .ok_or_else(|| EncodeError::Runtime("no present_self_v".into()))?;
                let Some(next) = next else {
                    feed = self.tok.prompt[1..].to_vec();
                    if let Some((t, _)) = &language {
                        feed[0] = *t;
                    }
                    continue;
                };
                if next == self.tok.eot {
                    truncated = false;
                    break;
                }
                generated.push(next);
                if let Some(keep) = loop_start(&generated) {
                    // Greedy decoding that starts repeating itself never stops before the token
                    // budget; one copy of the phrase is what was said.
                    generated.truncate(keep);
                    truncated = false;
                    break;
                }
                feed = vec![next];
            }
            Ok(())
        })?;
        let mut text = self
            .tokenizer
            .decode(&generated, true)
            .map_err(|e| EncodeError::runtime("detokenize", e))?
            .trim()
            .to_string();
        let avg_logprob = if n_logprob > 0 {
            sum_logprob / n_logprob as f32
        } else {
            0.0
        };
        let silent = (no_speech_prob > NO_SPEECH_THRESHOLD && avg_logprob < LOGPROB_THRESHOLD)
            || no_speech_prob > NO_SPEECH_ALONE;
        if silent {
            text.clear();
        }
        let language = language.map(|(_, code)| code);
        Ok(Decoded {
            tokens: generated,
            text,
            truncated,
            no_speech_prob,
            avg_logprob,
            silent,
            language,
        })
    }

    fn argmax(&self, logits: &[f32], first: bool) -> u32 {
        let mut best = 0usize;
        let mut best_v = f32::NEG_INFINITY;
        for (i, &v) in logits.iter().enumerate() {
            if self.mask[i] || (first && self.tok.begin_suppress.contains(&(i as u32))) {
                continue;
            }
            // strict > keeps the first index on ties, like numpy argmax
            if v > best_v {
                best_v = v;
                best = i;
            }
        }
        best as u32
    }
}

#[cfg(test)]
mod tests {
    use super::{loop_start, WhisperTokens};
    use crate::encode::EncodeError;

    fn tokens(languages: &[(u32, &str)]) -> WhisperTokens {
        WhisperTokens {
            sot: 1,
            eot: 2,
            prompt: vec![1, 3, 4],
            suppress: vec![],
            begin_suppress: vec![],
            vocab_size: 10,
            max_new_tokens: 5,
            n_text_ctx: 10,
            no_speech: Some(5),
            languages: languages.iter().map(|(t, c)| (*t, c.to_string())).collect(),
        }
    }

    #[test]
    fn a_given_language_is_its_token_or_a_clear_refusal() {
        let multi = tokens(&[(3, "en"), (7, "zh")]);
        assert_eq!(multi.language("zh").unwrap(), Some((7, "zh".into())));
        let unknown = multi.language("klingon").unwrap_err();
        assert!(
            matches!(&unknown, EncodeError::InvalidInput(m) if m.contains("unknown speech language")),
            "{unknown:?}"
        );
        // English-only: "en" is what it does anyway; anything else is refused, not mistranscribed.
        let english = tokens(&[]);
        assert_eq!(english.language("en").unwrap(), None);
        assert!(
            matches!(english.language("zh"), Err(EncodeError::InvalidInput(m)) if m.contains("English-only"))
        );
    }

    #[test]
    fn loops_are_cut_to_their_first_copy() {
        assert_eq!(loop_start(&[5, 7, 7, 7]), Some(2));
        assert_eq!(loop_start(&[1, 2, 2]), None);
        assert_eq!(loop_start(&[9, 1, 2, 3, 4, 1, 2, 3, 4]), Some(5));
        assert_eq!(loop_start(&[1, 2, 1, 2]), None);
        assert_eq!(loop_start(&[1, 2, 1, 2, 1, 2]), Some(2));
        assert_eq!(loop_start(&[1, 2, 3, 4, 5, 6]), None);
    }
}
