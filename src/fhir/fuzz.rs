//! Property tests over the parsers that read client input: whatever the bytes, they answer (Ok or a clear
//! error) and never panic. Fixed case counts keep them inside CI's budget; a failure is shrunk and its seed
//! saved under `proptest-regressions/`, which is committed so the case runs again.

use proptest::prelude::*;
use serde_json::Value;

use std::sync::LazyLock;

use super::params::Registry;
use super::search::{self, Limits};
use super::{datetime, extract, json, narrative, parse};

/// The committed demo record's resources: real-shaped seeds for random edits, so the checks deep inside a
/// valid resource are reached (arbitrary JSON rarely gets past its first error).
static SEEDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let bundle: Value = serde_json::from_str(include_str!("../../fixtures/demo.json")).expect("the demo bundle");
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::new(&[]).expect("standard definitions compile"));

/// Follows `path` (each step picks an object's member or an array's item, modulo their number) and puts
/// `with` there, or removes what is there when `with` is `None`. A path that reaches a scalar early replaces it.
fn edit(v: &mut Value, path: &[usize], with: Option<Value>) {
    let Some((&step, rest)) = path.split_first() else {
        return;
    };
    match v {
        Value::Object(o) if !o.is_empty() => {
            let key = o.keys().nth(step % o.len()).cloned().unwrap_or_default();
            match (rest.is_empty(), with) {
                (false, with) => edit(o.get_mut(&key).expect("the key just read"), rest, with),
                (true, Some(w)) => {
                    o.insert(key, w);
                }
                (true, None) => {
                    o.remove(&key);
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = step % a.len();
            match (rest.is_empty(), with) {
                (false, with) => edit(&mut a[i], rest, with),
                (true, Some(w)) => a[i] = w,
                (true, None) => {
                    a.remove(i);
                }
            }
        }
        _ => *v = with.unwrap_or(Value::Null),
    }
}

/// Arbitrary JSON, biased towards FHIR-looking keys so the validator's deeper paths are reached.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("resourceType".to_owned()),
        Just("id".to_owned()),
        Just("meta".to_owned()),
        Just("text".to_owned()),
        Just("div".to_owned()),
        Just("status".to_owned()),
        Just("code".to_owned()),
        Just("coding".to_owned()),
        Just("subject".to_owned()),
        Just("reference".to_owned()),
        Just("valueQuantity".to_owned()),
        Just("effectivePeriod".to_owned()),
        Just("start".to_owned()),
        Just("end".to_owned()),
        Just("data".to_owned()),
        Just("size".to_owned()),
        Just("entry".to_owned()),
        Just("resource".to_owned()),
        Just("fullUrl".to_owned()),
        Just("contained".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("Observation".to_owned()),
            Just("Patient".to_owned()),
            Just("Bundle".to_owned()),
            Just("final".to_owned()),
            Just("<div><script>x</script></div>".to_owned()),
            Just("2024-02-30T25:00:00Z".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

#[test]
fn the_seeds_are_valid_as_committed() {
    assert!(SEEDS.len() > 100);
    for seed in SEEDS.iter() {
        assert!(parse::validate(seed).is_ok(), "{seed}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_panics(mut v in json_value(), rtype in prop_oneof![Just("Observation"), Just("Patient"), Just("Bundle"), Just("Communication")]) {
        if let Value::Object(o) = &mut v {
            o.insert("resourceType".into(), Value::from(rtype));
        }
        let _ = parse::validate(&v);
        let _ = json::parse(&v.to_string());
    }

    #[test]
    fn edited_real_resources_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec((prop::collection::vec(any::<usize>(), 1..6), prop::option::of(json_value())), 1..4),
    ) {
        let mut v = SEEDS[seed.index(SEEDS.len())].clone();
        for (path, with) in edits {
            edit(&mut v, &path, with);
        }
        let _ = parse::validate(&v);
        let _ = json::parse(&v.to_string());
        let rtype = v["resourceType"].as_str().unwrap_or("Observation").to_owned();
        let _ = extract::index(&REGISTRY, &rtype, &v, "http://x/fhir");
    }

    #[test]
    fn json_text_never_panics(text in ".{0,64}") {
        let _ = json::parse(&text);
    }

    #[test]
    fn dates_parse_to_ordered_ranges(text in prop_oneof!["[0-9T:+.Z-]{0,30}", "[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,4})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"]) {
        if let Some((low, high)) = datetime::range(&text) {
            prop_assert!(low <= high, "{text}: {low} > {high}");
        }
    }

    #[test]
    fn narratives_never_panic(text in prop_oneof![".{0,40}", "<div>(<[a-z]{1,6}( [a-z]{1,6}=(\"[^\"]{0,8}\"|[a-z&#;:]{0,8}))*/?>|[a-z &;#]{0,5})*</div>"]) {
        let _ = narrative::check(&text);
    }

    #[test]
    fn search_parsing_never_panics(
        params in prop::collection::vec((prop_oneof![
            Just("date".to_owned()), Just("value-quantity".to_owned()), Just("code".to_owned()),
            Just("patient".to_owned()), Just("_sort".to_owned()), Just("_count".to_owned()),
            Just("_include".to_owned()), Just("name:contains".to_owned()), Just("_id".to_owned()),
            Just("_lastUpdated".to_owned()), Just("code:not".to_owned()), Just("status:missing".to_owned()),
            "[a-z_:-]{1,12}",
        ], ".{0,24}"), 0..6)
    ) {
        let _ = search::parse("Observation", &params, &REGISTRY, Limits { default_count: 50, max_count: 1000 }, "http://x/fhir", 0);
    }
}
