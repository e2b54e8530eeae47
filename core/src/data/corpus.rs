//! A built-in synthetic corpus: English-like paragraphs from a small seeded grammar, so
//! every command works on a fresh machine with no download.
//!
//! The grammar has agreement (a/an, singular verbs), tense, dialogue, questions and
//! paragraph structure, which gives a byte-level model a curve to learn (spelling, word
//! order, punctuation) that is far from both a constant and pure noise.
use crate::rng::{Philox, RngKey};
use alloc::string::String;

const NOUNS: &[&str] = &[
    "cat", "dog", "fox", "bird", "horse", "river", "garden", "village", "forest", "mountain", "lantern", "window",
    "farmer", "teacher", "child", "sailor", "baker", "queen", "king", "wolf", "owl", "boat", "bridge", "road",
    "letter", "song", "storm", "candle", "apple", "island", "tower", "market", "painter", "doctor", "soldier",
    "stranger", "merchant", "clock", "mirror", "field",
];
const ADJS: &[&str] = &[
    "old", "young", "quiet", "bright", "dark", "small", "large", "green", "red", "golden", "silver", "gentle",
    "clever", "tired", "happy", "strange", "ancient", "narrow", "wide", "cold", "warm", "heavy", "quick", "slow",
    "empty", "hidden", "honest", "proud",
];
/// (present third person, past) of intransitive verbs.
const INTRANS: &[(&str, &str)] = &[
    ("sleeps", "slept"),
    ("runs", "ran"),
    ("sings", "sang"),
    ("waits", "waited"),
    ("falls", "fell"),
    ("laughs", "laughed"),
    ("wanders", "wandered"),
    ("shines", "shone"),
    ("rests", "rested"),
    ("listens", "listened"),
    ("trembles", "trembled"),
    ("returns", "returned"),
];
/// (present third person, past, base) of transitive verbs.
const TRANS: &[(&str, &str, &str)] = &[
    ("sees", "saw", "see"),
    ("finds", "found", "find"),
    ("follows", "followed", "follow"),
    ("carries", "carried", "carry"),
    ("builds", "built", "build"),
    ("paints", "painted", "paint"),
    ("watches", "watched", "watch"),
    ("remembers", "remembered", "remember"),
    ("opens", "opened", "open"),
    ("leaves", "left", "leave"),
    ("loves", "loved", "love"),
    ("answers", "answered", "answer"),
    ("crosses", "crossed", "cross"),
    ("keeps", "kept", "keep"),
];
const ADVS: &[&str] = &[
    "slowly",
    "quietly",
    "again",
    "today",
    "at night",
    "in the morning",
    "without a word",
    "once more",
    "at last",
    "for a long time",
    "happily",
    "carefully",
];
const PREPS: &[&str] = &["near", "behind", "under", "across", "beside", "beyond", "inside", "above", "toward"];
const NAMES: &[&str] = &["Anna", "Tom", "Lena", "Marco", "Ivy", "Oscar", "Nora", "Felix", "Clara", "Hugo"];
const SAYS: &[&str] = &["said", "asked", "whispered", "replied", "called"];
const CONJ: &[&str] = &["and", "but", "so", "because", "while"];

struct Gen {
    rng: Philox,
}

impl Gen {
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, p: f64) -> bool {
        self.rng.next_f64() < p
    }
    /// "the old cat", "a red apple", "an empty boat"
    fn noun_phrase(&mut self, out: &mut String) {
        let definite = self.chance(0.6);
        let adj = if self.chance(0.5) { Some(*self.pick(ADJS)) } else { None };
        let noun = *self.pick(NOUNS);
        let first = adj.unwrap_or(noun);
        if definite {
            out.push_str("the ");
        } else if first.starts_with(['a', 'e', 'i', 'o', 'u']) {
            out.push_str("an ");
        } else {
            out.push_str("a ");
        }
        if let Some(a) = adj {
            out.push_str(a);
            out.push(' ');
        }
        out.push_str(noun);
    }
    fn subject(&mut self, out: &mut String) {
        if self.chance(0.25) {
            out.push_str(self.pick::<&str>(NAMES));
        } else {
            self.noun_phrase(out);
        }
    }
    fn predicate(&mut self, out: &mut String, past: bool) {
        if self.chance(0.45) {
            let v = *self.pick(INTRANS);
            out.push_str(if past { v.1 } else { v.0 });
        } else {
            let v = *self.pick(TRANS);
            out.push_str(if past { v.1 } else { v.0 });
            out.push(' ');
            self.noun_phrase(out);
        }
        if self.chance(0.35) {
            out.push(' ');
            out.push_str(self.pick::<&str>(PREPS));
            out.push(' ');
            self.noun_phrase(out);
        }
        if self.chance(0.3) {
            out.push(' ');
            out.push_str(self.pick::<&str>(ADVS));
        }
    }
    fn clause(&mut self, out: &mut String, past: bool) {
        self.subject(out);
        out.push(' ');
        self.predicate(out, past);
    }
    fn sentence(&mut self, out: &mut String, past: bool) {
        let start = out.len();
        let kind = self.rng.below(10);
        match kind {
            0 => {
                // question
                let v = *self.pick(TRANS);
                out.push_str(if past { "did " } else { "does " });
                self.subject(out);
                out.push(' ');
                out.push_str(v.2);
                out.push(' ');
                self.noun_phrase(out);
                out.push('?');
            }
            1 => {
                // dialogue
                out.push('"');
                let q = out.len();
                self.clause(out, false);
                capitalise(out, q);
                out.push_str(",\" ");
                out.push_str(self.pick::<&str>(SAYS));
                out.push(' ');
                out.push_str(self.pick::<&str>(NAMES));
                out.push('.');
            }
            2 | 3 => {
                self.clause(out, past);
                out.push(' ');
                out.push_str(self.pick::<&str>(CONJ));
                out.push(' ');
                self.clause(out, past);
                out.push('.');
            }
            _ => {
                self.clause(out, past);
                out.push('.');
            }
        }
        capitalise(out, start);
    }
}

fn capitalise(s: &mut String, at: usize) {
    if let Some(c) = s[at..].chars().next() {
        if c.is_ascii_lowercase() {
            let upper = [c.to_ascii_uppercase() as u8];
            s.replace_range(at..at + 1, core::str::from_utf8(&upper).unwrap_or("?"));
        }
    }
}

/// About `n_bytes` of English-like text (whole paragraphs; deterministic in `seed`).
pub fn synthetic_corpus(seed: u64, n_bytes: usize) -> String {
    let mut g = Gen { rng: Philox::new(RngKey::new(seed).fold(0xC0_4905)) };
    let mut out = String::with_capacity(n_bytes + 512);
    while out.len() < n_bytes {
        let past = g.chance(0.6);
        let n = 3 + g.rng.below(4);
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            g.sentence(&mut out, past);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_english_like() {
        let a = synthetic_corpus(1, 5000);
        assert_eq!(a, synthetic_corpus(1, 5000));
        assert_ne!(a, synthetic_corpus(2, 5000));
        assert!(a.len() >= 5000);
        assert!(a.is_ascii());
        assert!(a.contains(". ") && a.contains('\n'));
        // sentences start with a capital letter
        for para in a.lines() {
            let c = para.chars().next().unwrap();
            assert!(c.is_ascii_uppercase() || c == '"', "{para}");
        }
    }
}

/// The five sentences of the CellToken seed's training script.
pub const SEED_SENTENCES: [&str; 5] = [
    "The slime mold finds the shortest path through the maze.",
    "Energy flows where resistance is lowest.",
    "Every cell remembers its history and acts with purpose.",
    "The cellular network learns by living, not by being told.",
    "Life is thermodynamics with intention.",
];

/// The CellToken seed's corpus: the five sentences joined by single spaces plus a trailing
/// space (a 251-character period), repeated `repeats` times (the seed uses 300).
pub fn seed_sentences(repeats: usize) -> String {
    let mut period = SEED_SENTENCES.join(" ");
    period.push(' ');
    period.repeat(repeats)
}

/// The nine phrases of the Cellular Transformer seed's dataset.
pub const SEED_PHRASES: [&str; 9] = [
    "apple",
    "banana",
    "orange",
    "grape",
    "melon",
    "the slime mold is smart",
    "octopus has many arms",
    "intelligence is non-linear",
    "cellular token acts like life",
];

/// The Cellular Transformer seed's data: `n_chars / 10` phrases drawn uniformly (seeded),
/// each followed by a space, truncated to `n_chars` characters.
pub fn seed_phrases(seed: u64, n_chars: usize) -> String {
    let mut rng = Philox::new(RngKey::new(seed).fold(0x9_0A5E));
    let mut out = String::with_capacity(n_chars + 32);
    for _ in 0..n_chars / 10 {
        out.push_str(SEED_PHRASES[rng.below(SEED_PHRASES.len() as u64) as usize]);
        out.push(' ');
    }
    out.truncate(n_chars.min(out.len()));
    out
}

/// The Bayes-optimal next-character loss (nats/char) of the phrase process on `text`, for
/// windows of `seq` + 1 characters at every start (as a model trained on those windows sees
/// them): `mean −ln p(x_{t+1} | x_1..x_t)` under an exact forward filter over the hidden
/// state (phrase, offset). The process emits phrases drawn uniformly from `phrases`, each
/// followed by a space; a window starts at a uniformly random character, so the prior over
/// states is uniform. This is the floor any model of such text can reach with that context.
pub fn phrase_process_floor(text: &str, phrases: &[&str], seq: usize) -> f64 {
    let units: alloc::vec::Vec<alloc::vec::Vec<char>> =
        phrases.iter().map(|p| p.chars().chain(core::iter::once(' ')).collect()).collect();
    let states: alloc::vec::Vec<(usize, usize)> =
        units.iter().enumerate().flat_map(|(k, u)| (0..u.len()).map(move |o| (k, o))).collect();
    let index = |k: usize, o: usize| units[..k].iter().map(|u| u.len()).sum::<usize>() + o;
    let start: alloc::vec::Vec<usize> = (0..units.len()).map(|k| index(k, 0)).collect();
    let next: alloc::vec::Vec<Option<usize>> =
        states.iter().map(|&(k, o)| (o + 1 < units[k].len()).then(|| index(k, o + 1))).collect();
    let emit: alloc::vec::Vec<char> = states.iter().map(|&(k, o)| units[k][o]).collect();
    let chars: alloc::vec::Vec<char> = text.chars().collect();
    let ns = states.len();
    let nk = units.len() as f64;
    let (mut total, mut count) = (0.0f64, 0usize);
    let mut alpha = alloc::vec![0.0f64; ns];
    let mut pred = alloc::vec![0.0f64; ns];
    if chars.len() <= seq {
        return f64::NAN;
    }
    for w in 0..chars.len() - seq {
        let window = &chars[w..w + seq + 1];
        // condition the uniform prior on the first character
        for (a, &e) in alpha.iter_mut().zip(&emit) {
            *a = if e == window[0] { 1.0 } else { 0.0 };
        }
        let z: f64 = alpha.iter().sum();
        if z == 0.0 {
            continue; // a character the process cannot emit (the truncated tail)
        }
        alpha.iter_mut().for_each(|a| *a /= z);
        for &x in &window[1..] {
            pred.iter_mut().for_each(|p| *p = 0.0);
            let mut to_start = 0.0;
            for (s, &a) in alpha.iter().enumerate() {
                match next[s] {
                    Some(t) => pred[t] += a,
                    None => to_start += a,
                }
            }
            for &s0 in &start {
                pred[s0] += to_start / nk;
            }
            let p: f64 = pred.iter().zip(&emit).filter(|(_, &e)| e == x).map(|(p, _)| p).sum();
            if p <= 0.0 {
                break;
            }
            total -= libm::log(p);
            count += 1;
            for ((a, &q), &e) in alpha.iter_mut().zip(&pred).zip(&emit) {
                *a = if e == x { q / p } else { 0.0 };
            }
        }
    }
    total / count as f64
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    #[test]
    fn seed_corpora_match_their_descriptions() {
        let s = seed_sentences(300);
        assert_eq!(s.len(), 75_300);
        assert_eq!(s.len() / 300, 251);
        let mut chars: alloc::vec::Vec<char> = s.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        assert_eq!(chars.len(), 29);
        let p = seed_phrases(1, 20_000);
        assert_eq!(p.len(), 20_000);
        let mut chars: alloc::vec::Vec<char> = p.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        assert_eq!(chars.len(), 22, "{chars:?}");
    }

    /// The spec's figure: ≈0.204 nats/char for 32-character windows, well above the
    /// unlimited-context entropy ln 9 / 15 ≈ 0.147.
    #[test]
    fn phrase_floor_matches_the_spec() {
        let text = seed_phrases(1, 20_000);
        let floor = phrase_process_floor(&text, &SEED_PHRASES, 32);
        assert!((floor - 0.204).abs() < 0.01, "floor {floor}");
    }
}
