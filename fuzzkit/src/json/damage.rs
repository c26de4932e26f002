//! The text of documents, and bytes a parser must refuse: byte-level damage, arbitrary
//! bytes, nesting deeper than a recursive parser should follow.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::any_value;
use crate::Text;

/// Byte-level damage to a text. Positions are taken modulo the text's length plus one
/// (every gap, both ends included), so they shrink towards the start.
#[derive(Debug, Clone)]
pub enum Damage {
    /// The text ends here.
    Truncate(usize),
    /// A byte is put in.
    Insert(usize, u8),
    /// Up to this many bytes go.
    Delete(usize, u8),
    /// A JSON token or an awkward sequence is put in.
    Splice(usize, &'static str),
}

const TOKENS: [&str; 14] = [
    "{", "}", "[", "]", "\"", ",", ":", "\\", "\\u0000", "\\ud800", "1e999", "-0", "null", "\n",
];

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<usize>(), 1..16u8).prop_map(|(i, n)| Damage::Delete(i, n)),
        (any::<usize>(), select(TOKENS.to_vec())).prop_map(|(i, t)| Damage::Splice(i, t)),
    ]
}

fn spoil(text: &mut Vec<u8>, d: &Damage) {
    let at = |i: usize, len: usize| i % (len + 1);
    match *d {
        Damage::Truncate(i) => text.truncate(at(i, text.len())),
        Damage::Insert(i, b) => text.insert(at(i, text.len()), b),
        Damage::Delete(i, n) => {
            let start = at(i, text.len());
            let end = (start + usize::from(n)).min(text.len());
            text.drain(start..end);
        }
        Damage::Splice(i, token) => {
            let start = at(i, text.len());
            text.splice(start..start, token.bytes());
        }
    }
}

/// The text of documents from `docs`, compact or pretty, then with up to `max_damage`
/// byte-level damages (none in about half the cases, and none at all for 0).
pub fn text_of(
    docs: impl Strategy<Value = Value>,
    max_damage: usize,
) -> impl Strategy<Value = Text> {
    let damages = match max_damage {
        0 => Just(Vec::new()).boxed(),
        n => prop_oneof![Just(Vec::new()), vec(damage(), 1..=n)].boxed(),
    };
    (docs, any::<bool>(), damages).prop_map(|(doc, pretty, damages)| {
        let text = if pretty {
            serde_json::to_vec_pretty(&doc)
        } else {
            serde_json::to_vec(&doc)
        };
        // Serializing a Value cannot fail (its keys are strings, its floats finite).
        let mut text = text.unwrap_or_default();
        for d in &damages {
            spoil(&mut text, d);
        }
        Text(text)
    })
}

/// Bytes a parser must refuse cleanly: arbitrary bytes, damaged JSON of any shape, and
/// nesting far deeper than a recursive parser should follow.
pub fn garbage() -> impl Strategy<Value = Text> {
    prop_oneof![
        vec(any::<u8>(), 0..256).prop_map(Text),
        text_of(any_value(), 4),
        (1usize..20_000, select(vec!["[", "{\"a\":", "[{\"\":"]))
            .prop_map(|(depth, open)| Text(open.repeat(depth).into_bytes())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::sample;

    #[test]
    fn damage_stays_inside_the_text() {
        let mut t = b"{}".to_vec();
        spoil(&mut t, &Damage::Delete(1, 200));
        assert_eq!(t, b"{");
        spoil(&mut t, &Damage::Truncate(0));
        spoil(&mut t, &Damage::Splice(7, "]"));
        assert_eq!(t, b"]");
    }

    #[test]
    fn garbage_includes_deep_nesting_and_invalid_utf8() {
        let all = sample(garbage(), 300);
        assert!(all.iter().any(|b| b.len() > 2000 && b[0] == b'['));
        assert!(all.iter().any(|b| std::str::from_utf8(b).is_err()));
    }
}
