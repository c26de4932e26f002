//! JSON for the harnesses of the three JSON parsers (the Firecracker config file, OCI
//! config.json, the agent protocol): arbitrary values and the paths that address their
//! nodes (here), near-valid documents (`near`: a valid one with a few mutations, which
//! reach the checks behind the syntax), and their text with byte-level damage
//! (`damage`).

mod damage;
mod near;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};

pub use damage::{garbage, text_of, Damage};
pub use near::{near, Mutation};

/// One step from a node to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Item(usize),
}

/// Where a node is in a document: the steps from the root.
pub type Path = Vec<Step>;

/// Every node's path, the root first, in document order.
pub fn paths(doc: &Value) -> Vec<Path> {
    fn walk(v: &Value, at: &mut Path, out: &mut Vec<Path>) {
        out.push(at.clone());
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    at.push(Step::Key(k.clone()));
                    walk(child, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    at.push(Step::Item(i));
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// The paths of the objects in `doc`.
pub fn object_paths(doc: &Value) -> Vec<Path> {
    paths(doc)
        .into_iter()
        .filter(|p| get(doc, p).is_some_and(Value::is_object))
        .collect()
}

pub fn get<'a>(doc: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, step| match step {
        Step::Key(k) => v.get(k),
        Step::Item(i) => v.get(*i),
    })
}

pub fn get_mut<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, step| match step {
        Step::Key(k) => v.get_mut(k),
        Step::Item(i) => v.get_mut(*i),
    })
}

/// Strings that sit where validation rules tend to draw their lines: empty, blank, NUL,
/// path tricks, multi-byte characters, just past common length limits.
pub fn edge_strings() -> Vec<String> {
    let mut s: Vec<String> = [
        "", " ", "\0", "\n", "\"", "\\", "/", ".", "..", "../..", "a/b", "None", "null", "0", "-1",
        "1e999", "é", "🦀", "\u{feff}", "\u{7f}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    s.extend([
        "x".repeat(15),
        "x".repeat(16),
        "x".repeat(20),
        "x".repeat(21),
    ]);
    s.extend(["é".repeat(11), "x".repeat(129), "x".repeat(4096)]);
    s
}

/// Numbers where integer types end, and the awkward floats.
pub fn edge_numbers() -> Vec<Value> {
    let ints: [i128; 18] = [
        0,
        1,
        2,
        3,
        -1,
        255,
        256,
        65535,
        65536,
        (1 << 31) - 1,
        1 << 31,
        u32::MAX as i128,
        u32::MAX as i128 + 1,
        i64::MAX as i128,
        i64::MIN as i128,
        u64::MAX as i128,
        (1 << 53) + 1,
        -(1 << 31),
    ];
    let mut v: Vec<Value> = ints
        .iter()
        .filter_map(|&n| {
            u64::try_from(n)
                .map(Number::from)
                .ok()
                .or_else(|| i64::try_from(n).ok().map(Number::from))
        })
        .map(Value::Number)
        .collect();
    for f in [0.5, -0.0, 1e300, -1e300, f64::MIN_POSITIVE, 65535.0] {
        v.extend(Number::from_f64(f).map(Value::Number));
    }
    v
}

/// A number: an edge one, or any integer or finite float.
pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(edge_numbers()),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

/// A string: an edge one, a short word, or any short Unicode.
pub fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        select(edge_strings()),
        "[a-z_-]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

/// A scalar: null, a bool, a number or a string.
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ]
}

/// Any JSON value, up to four levels deep.
pub fn any_value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((string(), inner), 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// The first `n` values of `s` from a fixed seed, for tests of the strategies.
#[cfg(test)]
fn sample<S: Strategy>(s: S, n: usize) -> Vec<S::Value> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..n)
        .map(|_| s.new_tree(&mut runner).unwrap().current())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_list_every_node_and_get_finds_each() {
        let doc = json!({"a": [1, {"b": null}], "c": "x"});
        let all = paths(&doc);
        // root, a, a[0], a[1], a[1].b, c
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|p| get(&doc, p).is_some()));
        assert_eq!(
            get(
                &doc,
                &[Step::Key("a".into()), Step::Item(1), Step::Key("b".into())]
            ),
            Some(&Value::Null)
        );
        assert_eq!(object_paths(&doc).len(), 2);
    }
}
