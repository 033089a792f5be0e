//! The one analyzer of every lexical field and of queries: words (letters and digits) are
//! lowercased and English-stemmed; runs of CJK characters, which have no spaces between words,
//! become their overlapping character bigrams plus the single characters (so a one-character
//! query such as 鞋 still matches). Stop words (Lucene's English set) are dropped
//! before stemming: they carry no product information, matched "a" in every snippet, and
//! added noise to the share of a query a hit explains (the hybrid fusion's lexical scale).
//! Bigrams were measured against jieba (`jieba-rs` 0.7, search mode, as this tokenizer's CJK
//! path) on the Chinese catalogue: LEXICAL MRR 0.832 vs 0.654 on the 48 Chinese queries —
//! everyday phrasing shares pieces of words with the catalogue (鼠标 in 光电鼠标) that a word
//! segmenter keeps whole — and they need no dictionary (BENCHMARKS.md).

use crate::model::is_cjk;
use tantivy::tokenizer::{
    Language, LowerCaser, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the schema's text fields refer to.
pub const ANALYZER: &str = "mm_mixed";

pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MixedTokenizer)
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Lucene's English stop set (what Elasticsearch's `english` analyzer drops). Chinese particles
/// (的, 了) are kept: dropping them cost 0.011 MRR on the Chinese queries (LEXICAL).
pub const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Analyzed terms of `text`, in order (duplicates kept).
pub fn terms(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Analyzed tokens with their byte offsets in `text` (for snippets).
pub fn tokens(text: &str) -> Vec<Token> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().clone());
    }
    out
}

#[derive(Clone, Copy, Default)]
pub struct MixedTokenizer;

pub struct VecStream {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for VecStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

impl Tokenizer for MixedTokenizer {
    type TokenStream<'a> = VecStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecStream {
        let mut tokens = Vec::new();
        let mut push = |from: usize, to: usize| {
            let position = tokens.len();
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text: text[from..to].to_string(),
                position_length: 1,
            });
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let end_of = |i: usize| chars.get(i + 1).map_or(text.len(), |(o, _)| *o);
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i].1;
            if is_cjk(c) {
                let start = i;
                while i < chars.len() && is_cjk(chars[i].1) {
                    i += 1;
                }
                for j in start..i {
                    push(chars[j].0, end_of(j));
                    if j + 1 < i {
                        push(chars[j].0, end_of(j + 1));
                    }
                }
            } else if c.is_alphanumeric() {
                let start = i;
                while i < chars.len() && chars[i].1.is_alphanumeric() && !is_cjk(chars[i].1) {
                    i += 1;
                }
                // Very long "words" are base64 blobs or URLs: not worth a posting list.
                if i - start <= 40 {
                    push(chars[start].0, end_of(i - 1));
                }
            } else {
                i += 1;
            }
        }
        VecStream { tokens, next: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_stemmed_and_cjk_split_into_bigrams() {
        assert_eq!(
            terms("Running SHOES, size-42"),
            ["run", "shoe", "size", "42"]
        );
        assert_eq!(terms("跑步鞋"), ["跑", "跑步", "步", "步鞋", "鞋"]);
        assert_eq!(terms("Nike跑鞋"), ["nike", "跑", "跑鞋", "鞋"]);
        let t = tokens("an 跑鞋");
        assert_eq!((t[0].offset_from, t[0].offset_to), (3, 6));
        assert_eq!((t[1].offset_from, t[1].offset_to), (3, 9));
    }

    #[test]
    fn stop_words_are_dropped() {
        assert_eq!(terms("A mouse with the wire"), ["mous", "wire"]);
        assert_eq!(
            terms("我的鼠标"),
            ["我", "我的", "的", "的鼠", "鼠", "鼠标", "标"]
        );
        assert!(terms("the").is_empty());
    }
}
