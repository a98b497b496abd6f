//! `carespace generate`: realistic, deterministic test records in volume (for benchmarks and load tests).
//! Each patient is one transaction Bundle of PUTs with ids derived from the seed, so a run can be repeated (it
//! updates what is there) and two runs with the same numbers write the same records. Labs come as CBC and BMP
//! panels (LOINC codes, UCUM units, reference ranges, values scattered around normal, a DiagnosticReport per
//! draw); documents are short notes with their Binary.

use serde_json::{Value, json};

use crate::access::Actor;
use crate::error::{Error, Result};
use crate::records::Records;

/// How much to make.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub patients: usize,
    pub labs_per_patient: usize,
    pub docs_per_patient: usize,
    pub seed: u64,
}

/// splitmix64: tiny, fast and the same everywhere, which is all a data generator needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Normally distributed (Box–Muller).
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u1, u2) = (self.unit().max(f64::MIN_POSITIVE), self.unit());
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One lab test: LOINC code, name, UCUM unit, normal range, and how values scatter.
struct Test {
    code: &'static str,
    name: &'static str,
    unit: &'static str,
    low: f64,
    high: f64,
    sd: f64,
    decimals: i32,
}

struct Panel {
    code: &'static str,
    name: &'static str,
    tests: [Test; 4],
}

const fn test(
    code: &'static str,
    name: &'static str,
    unit: &'static str,
    range: (f64, f64),
    sd: f64,
    decimals: i32,
) -> Test {
    Test {
        code,
        name,
        unit,
        low: range.0,
        high: range.1,
        sd,
        decimals,
    }
}

const PANELS: [Panel; 2] = [
    Panel {
        code: "58410-2",
        name: "CBC panel - Blood by Automated count",
        tests: [
            test(
                "718-7",
                "Hemoglobin [Mass/volume] in Blood",
                "g/dL",
                (12.0, 15.5),
                1.2,
                1,
            ),
            test(
                "6690-2",
                "Leukocytes [#/volume] in Blood",
                "10*3/uL",
                (4.0, 11.0),
                1.8,
                1,
            ),
            test(
                "777-3",
                "Platelets [#/volume] in Blood",
                "10*3/uL",
                (150.0, 400.0),
                55.0,
                0,
            ),
            test(
                "4544-3",
                "Hematocrit [Volume Fraction] of Blood",
                "%",
                (36.0, 46.0),
                3.0,
                1,
            ),
        ],
    },
    Panel {
        code: "51990-0",
        name: "Basic metabolic panel - Blood",
        tests: [
            test(
                "2345-7",
                "Glucose [Mass/volume] in Serum or Plasma",
                "mg/dL",
                (70.0, 99.0),
                14.0,
                0,
            ),
            test(
                "2951-2",
                "Sodium [Moles/volume] in Serum or Plasma",
                "mmol/L",
                (135.0, 145.0),
                2.5,
                0,
            ),
            test(
                "2823-3",
                "Potassium [Moles/volume] in Serum or Plasma",
                "mmol/L",
                (3.5, 5.1),
                0.4,
                1,
            ),
            test(
                "2160-0",
                "Creatinine [Mass/volume] in Serum or Plasma",
                "mg/dL",
                (0.6, 1.2),
                0.2,
                2,
            ),
        ],
    },
];

const GIVEN: &[(&str, &str)] = &[
    ("Maria", "female"),
    ("James", "male"),
    ("Aiko", "female"),
    ("Kwame", "male"),
    ("Sofia", "female"),
    ("Mateo", "male"),
    ("Priya", "female"),
    ("Lukas", "male"),
    ("Amara", "female"),
    ("Chen", "male"),
];
const FAMILY: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Haddad",
    "Moreau",
    "Tanaka",
    "Novak",
    "Castillo",
    "Mensah",
    "Kowalski",
    "Iyer",
];
const DOCUMENT_KINDS: &[(&str, &str)] = &[
    ("11506-3", "Progress note"),
    ("18842-5", "Discharge summary"),
    ("11488-4", "Consult note"),
];

/// The day `days` before 2026-10-01, as `YYYY-MM-DD` (civil-from-days, proleptic Gregorian).
fn day_before(days: i64) -> String {
    let z = 20_727 - days + 719_468; // 2026-10-01 is day 20727 of the Unix epoch
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn put(rtype: &str, resource: Value) -> Value {
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    json!({"fullUrl": format!("{rtype}/{id}"), "resource": resource, "request": {"method": "PUT", "url": format!("{rtype}/{id}")}})
}

/// Patient `n` of the plan, with their labs and documents, as a transaction Bundle.
pub fn patient_bundle(plan: &Plan, n: usize) -> Value {
    let mut rng = Rng(plan.seed ^ (n as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let pid = format!("g{}-p{n}", plan.seed);
    let (given, gender) = GIVEN[rng.below(GIVEN.len())];
    let family = FAMILY[rng.below(FAMILY.len())];
    let birth = day_before(365 * 20 + rng.below(365 * 60) as i64);
    let subject = json!({"reference": format!("Patient/{pid}")});
    let mut entries = vec![put(
        "Patient",
        json!({"resourceType": "Patient", "id": pid, "active": true,
            "identifier": [{"system": "urn:carespace:generated", "value": pid}],
            "name": [{"use": "official", "family": family, "given": [given]}], "gender": gender, "birthDate": birth,
            "telecom": [{"system": "email", "value": format!("{pid}@example.org")}]}),
    )];
    let draws = plan.labs_per_patient.div_ceil(4);
    let mut made = 0;
    for draw in 0..draws {
        let panel = &PANELS[draw % PANELS.len()];
        let date = format!("{}T08:{:02}:00Z", day_before((draw as i64) * 9), draw % 60);
        let mut results = Vec::new();
        for (k, t) in panel.tests.iter().enumerate().take(plan.labs_per_patient - made) {
            let id = format!("{pid}-o{draw}-{k}");
            let scale = 10f64.powi(t.decimals);
            let value = (rng.normal((t.low + t.high) / 2.0, t.sd) * scale).round() / scale;
            let flag = if value < t.low {
                Some(("L", "Low"))
            } else if value > t.high {
                Some(("H", "High"))
            } else {
                None
            };
            let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "Laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": t.code, "display": t.name}], "text": t.name},
                "subject": subject, "effectiveDateTime": date, "issued": date,
                "valueQuantity": {"value": value, "unit": t.unit, "system": "http://unitsofmeasure.org", "code": t.unit},
                "referenceRange": [{"low": {"value": t.low, "unit": t.unit, "system": "http://unitsofmeasure.org", "code": t.unit},
                                    "high": {"value": t.high, "unit": t.unit, "system": "http://unitsofmeasure.org", "code": t.unit}}]});
            if let Some((code, display)) = flag {
                o["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code, "display": display}]}]);
            }
            results.push(json!({"reference": format!("Observation/{id}")}));
            entries.push(put("Observation", o));
            made += 1;
        }
        entries.push(put(
            "DiagnosticReport",
            json!({"resourceType": "DiagnosticReport", "id": format!("{pid}-r{draw}"), "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": panel.code, "display": panel.name}], "text": panel.name},
                "subject": subject, "effectiveDateTime": date, "issued": date, "result": results}),
        ));
    }
    for d in 0..plan.docs_per_patient {
        use base64::Engine as _;
        let (code, kind) = DOCUMENT_KINDS[d % DOCUMENT_KINDS.len()];
        let date = format!("{}T14:00:00Z", day_before((d as i64) * 30 + 2));
        let text = format!("{kind} for {given} {family}, {date}.\n\nSeen in clinic; plan reviewed with the patient.\n");
        let binary = format!("{pid}-b{d}");
        entries.push(put(
            "Binary",
            json!({"resourceType": "Binary", "id": binary, "contentType": "text/plain",
                "securityContext": subject, "data": base64::engine::general_purpose::STANDARD.encode(text)}),
        ));
        entries.push(put(
            "DocumentReference",
            json!({"resourceType": "DocumentReference", "id": format!("{pid}-d{d}"), "status": "current",
                "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": kind}], "text": kind},
                "subject": subject, "date": date, "author": [{"display": "Dr. Adaeze Okafor"}],
                "content": [{"attachment": {"contentType": "text/plain", "url": format!("Binary/{binary}"), "title": format!("{kind} {date}")}}]}),
        ));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Writes the plan's patients into the store, one transaction each; `progress` hears after each patient.
/// Returns how many resources were written.
pub async fn into_store(records: &Records, plan: &Plan, mut progress: impl FnMut(usize, usize)) -> Result<usize> {
    let actor = Actor::system("carespace-generate");
    let mut written = 0;
    for n in 0..plan.patients {
        let loaded = records
            .import_transaction(&actor, &patient_bundle(plan, n).to_string())
            .await?;
        if let Some((index, err)) = loaded.failed.first() {
            return Err(Error::Store(format!("generated patient {n}, entry {index}: {err}")));
        }
        written += loaded.resources;
        progress(n + 1, written);
    }
    Ok(written)
}

/// Writes the plan's patients as transaction Bundles (`patient-<n>.json`) into `dir`, for `carespace import`.
pub fn into_folder(dir: &std::path::Path, plan: &Plan, mut progress: impl FnMut(usize, usize)) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
    let mut written = 0;
    for n in 0..plan.patients {
        let bundle = patient_bundle(plan, n);
        written += bundle["entry"].as_array().map_or(0, Vec::len);
        let path = dir.join(format!("patient-{n}.json"));
        std::fs::write(&path, bundle.to_string()).map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        progress(n + 1, written);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_deterministic_sized_and_valid() {
        let plan = Plan {
            patients: 2,
            labs_per_patient: 10,
            docs_per_patient: 3,
            seed: 7,
        };
        let a = patient_bundle(&plan, 1);
        assert_eq!(a, patient_bundle(&plan, 1), "same seed, same records");
        assert_ne!(a, patient_bundle(&plan, 0));
        let count = |t: &str| {
            a["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["resource"]["resourceType"] == t)
                .count()
        };
        assert_eq!(count("Observation"), 10);
        assert_eq!(count("DiagnosticReport"), 3);
        assert_eq!((count("DocumentReference"), count("Binary")), (3, 3));
        for e in a["entry"].as_array().unwrap() {
            crate::fhir::parse::validate(&e["resource"]).unwrap();
        }
        assert_eq!(day_before(0), "2026-10-01");
        assert_eq!(day_before(273), "2026-01-01");
        assert_eq!(day_before(365 + 273), "2025-01-01");
        assert_eq!(day_before(-152), "2027-03-02");
    }
}
