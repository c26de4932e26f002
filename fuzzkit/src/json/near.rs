//! Near-valid documents: a valid template after a few mutations drawn from its own words
//! and the edges, near enough that most inputs get past the syntax to the checks behind
//! it.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::Value;

use super::{any_value, edge_numbers, edge_strings, get, get_mut, paths, string, Step};

/// One change to a document. Node positions are indices into [`paths`] of the document
/// as it is when the change applies, so a list of changes shrinks one change at a time.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The node becomes `with`.
    Replace { at: Index, with: Value },
    /// The node leaves its object or array (the root stays).
    Remove { at: Index },
    /// An object gets `key` = `with` (an array gets `with` appended; a scalar is left).
    Insert { at: Index, key: String, with: Value },
    /// A value of the same kind at an edge: another number or string from the edges or
    /// from the document, the other bool, an array with an item twice.
    Nudge { at: Index, pick: Index },
}

/// The words of a document, for mutations that stay close to it.
#[derive(Debug, Clone)]
struct Vocabulary {
    keys: Vec<String>,
    strings: Vec<String>,
    numbers: Vec<Value>,
}

impl Vocabulary {
    fn of(doc: &Value) -> Self {
        let mut keys = Vec::new();
        let mut strings = edge_strings();
        let mut numbers = edge_numbers();
        for p in paths(doc) {
            if let Some(Step::Key(k)) = p.last() {
                keys.push(k.clone());
            }
            match get(doc, &p) {
                Some(Value::String(s)) => strings.push(s.clone()),
                Some(n @ Value::Number(_)) => numbers.push(n.clone()),
                _ => {}
            }
        }
        keys.sort();
        keys.dedup();
        strings.sort();
        strings.dedup();
        Vocabulary {
            keys,
            strings,
            numbers,
        }
    }
}

fn mutation(vocab: &Vocabulary) -> impl Strategy<Value = Mutation> {
    let key = if vocab.keys.is_empty() {
        string().boxed()
    } else {
        prop_oneof![3 => select(vocab.keys.clone()), 1 => string()].boxed()
    };
    prop_oneof![
        1 => (any::<Index>(), any_value()).prop_map(|(at, with)| Mutation::Replace { at, with }),
        1 => any::<Index>().prop_map(|at| Mutation::Remove { at }),
        1 => (any::<Index>(), key, any_value()).prop_map(|(at, key, with)| Mutation::Insert {
            at,
            key,
            with
        }),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, pick)| Mutation::Nudge { at, pick }),
    ]
}

fn apply(doc: &mut Value, m: &Mutation, vocab: &Vocabulary) {
    let all = paths(doc);
    let at = match m {
        Mutation::Replace { at, .. }
        | Mutation::Remove { at }
        | Mutation::Insert { at, .. }
        | Mutation::Nudge { at, .. } => at.get(&all).clone(),
    };
    match m {
        Mutation::Replace { with, .. } => {
            if let Some(node) = get_mut(doc, &at) {
                *node = with.clone();
            }
        }
        Mutation::Remove { .. } => {
            let Some((last, parent)) = at.split_last() else {
                return;
            };
            match (get_mut(doc, parent), last) {
                (Some(Value::Object(map)), Step::Key(k)) => drop(map.remove(k)),
                (Some(Value::Array(items)), Step::Item(i)) if *i < items.len() => {
                    drop(items.remove(*i))
                }
                _ => {}
            }
        }
        Mutation::Insert { key, with, .. } => match get_mut(doc, &at) {
            Some(Value::Object(map)) => drop(map.insert(key.clone(), with.clone())),
            Some(Value::Array(items)) => items.push(with.clone()),
            _ => {}
        },
        Mutation::Nudge { pick, .. } => {
            let Some(node) = get_mut(doc, &at) else {
                return;
            };
            match node {
                Value::Number(_) | Value::Null => *node = pick.get(&vocab.numbers).clone(),
                Value::String(s) => *s = pick.get(&vocab.strings).clone(),
                Value::Bool(b) => *b = !*b,
                Value::Array(items) if !items.is_empty() => {
                    let copy = pick.get(items).clone();
                    items.push(copy);
                }
                Value::Array(_) => {}
                Value::Object(map) => {
                    // An object nudged loses one field: the near-valid way to be wrong.
                    let keys: Vec<String> = map.keys().cloned().collect();
                    if !keys.is_empty() {
                        map.remove(pick.get(&keys));
                    }
                }
            }
        }
    }
}

/// `template` after one to `max_mutations` mutations drawn from its own words and the
/// edges: near enough to valid that most inputs reach the checks behind the syntax.
pub fn near(template: Value, max_mutations: usize) -> impl Strategy<Value = Value> {
    let vocab = Vocabulary::of(&template);
    vec(mutation(&vocab), 1..=max_mutations.max(1)).prop_map(move |ms| {
        let mut doc = template.clone();
        for m in &ms {
            apply(&mut doc, m, &vocab);
        }
        doc
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::json::sample;

    #[test]
    fn near_documents_differ_from_the_template_but_mostly_keep_its_shape() {
        let template = json!({"boot": {"path": "k", "args": "a"}, "n": 2, "list": [{"id": "x"}]});
        let docs = sample(near(template.clone(), 2), 200);
        let changed = docs.iter().filter(|d| **d != template).count();
        let still_objects_with_boot = docs.iter().filter(|d| d.get("boot").is_some()).count();
        assert!(changed > 150, "only {changed} of 200 changed");
        assert!(still_objects_with_boot > 100, "{still_objects_with_boot}");
    }
}
