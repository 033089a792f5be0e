//! Which writing system a character belongs to, where the layers need to agree on it: the
//! lexical analyzer splits CJK text into bigrams, and the English-only text tower cannot read it.

/// Han, kana and hangul.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FA1F) // extensions B–F, compatibility supplement
}
