//! Plausible Russian-looking documents, deterministic for a given generator.

use serde_json::{Map, Value, json};

/// Data and metadata of one document, plus how its type reports `broken` when fine.
pub(super) struct Content {
    pub(super) data: Value,
    pub(super) metadata: Value,
    /// Whether the type carries the passport `verifications` block.
    pub(super) verified: bool,
    /// How the type reports `broken` when the document is fine.
    pub(super) broken_flag: BrokenFlag,
}

/// How a fine document of a type carries the `broken` fields.
#[derive(Clone, Copy)]
pub(super) enum BrokenFlag {
    /// Not at all (the FPRN seed shows none).
    Absent,
    /// `broken: null` (the OTPR seed).
    Null,
    /// `broken: false`.
    False,
}

/// A passport's fields and confidences.
pub(super) struct Passport {
    pub(super) data: Map<String, Value>,
    pub(super) confidences: Value,
}

/// The fake content for a type; an unknown type gets an empty data object.
pub(super) fn content_for(doc_type: &str, rng: &mut fastrand::Rng) -> Content {
    match doc_type {
        "PASSPORT" => passport_content(rng, false),
        "PASSPORT_REG" => passport_content(rng, true),
        "SELFIE" => plain(json!({}), Value::Null, BrokenFlag::False),
        "FPRN" => fprn(rng),
        "VNG" => vng(rng),
        "SNILS" => snils(rng),
        "OTPR" => otpr(rng),
        _ => plain(json!({}), json!({}), BrokenFlag::False),
    }
}

/// Content with the given data and confidences and no verification block.
fn plain(data: Value, confidences: Value, broken_flag: BrokenFlag) -> Content {
    Content {
        data,
        metadata: json!({ "confidences": confidences, "verifications": {} }),
        verified: false,
        broken_flag,
    }
}

fn passport_content(rng: &mut fastrand::Rng, with_address: bool) -> Content {
    let passport = passport(rng, with_address);
    Content {
        data: Value::Object(passport.data),
        metadata: json!({ "confidences": passport.confidences }),
        verified: true,
        broken_flag: BrokenFlag::False,
    }
}

/// A person as printed in Russian documents.
struct Person {
    last: String,
    first: &'static str,
    middle: &'static str,
    male: bool,
    birth: Date,
    region: &'static Region,
}

/// A region: where people are born, registered and issued documents.
struct Region {
    birth_place: &'static str,
    city_latin: &'static str,
    issued_by: &'static str,
    office_code: &'static str,
    okato: &'static str,
    streets: [&'static str; 3],
}

const REGIONS: [Region; 5] = [
    Region {
        birth_place: "ГОР. МОСКВА",
        city_latin: "MOSKVA",
        issued_by: "ГУ МВД РОССИИ ПО Г. МОСКВЕ",
        office_code: "770",
        okato: "45",
        streets: ["УЛ. ТВЕРСКАЯ", "ПР-Т МИРА", "УЛ. ПРОФСОЮЗНАЯ"],
    },
    Region {
        birth_place: "ГОР. САНКТ-ПЕТЕРБУРГ",
        city_latin: "SANKT-PETERBURG",
        issued_by: "ГУ МВД РОССИИ ПО Г. САНКТ-ПЕТЕРБУРГУ И ЛЕНИНГРАДСКОЙ ОБЛ.",
        office_code: "780",
        okato: "40",
        streets: ["НЕВСКИЙ ПР-Т", "УЛ. САДОВАЯ", "ЛИТЕЙНЫЙ ПР-Т"],
    },
    Region {
        birth_place: "ГОР. НОВОСИБИРСК",
        city_latin: "NOVOSIBIRSK",
        issued_by: "ГУ МВД РОССИИ ПО НОВОСИБИРСКОЙ ОБЛ.",
        office_code: "540",
        okato: "50",
        streets: ["КРАСНЫЙ ПР-Т", "УЛ. ЛЕНИНА", "УЛ. ГОГОЛЯ"],
    },
    Region {
        birth_place: "ГОР. ЕКАТЕРИНБУРГ",
        city_latin: "EKATERINBURG",
        issued_by: "ГУ МВД РОССИИ ПО СВЕРДЛОВСКОЙ ОБЛ.",
        office_code: "660",
        okato: "65",
        streets: ["УЛ. МАЛЫШЕВА", "ПР-Т ЛЕНИНА", "УЛ. ВАЙНЕРА"],
    },
    Region {
        birth_place: "ГОР. КАЗАНЬ",
        city_latin: "KAZAN",
        issued_by: "МВД ПО РЕСПУБЛИКЕ ТАТАРСТАН",
        office_code: "160",
        okato: "92",
        streets: ["УЛ. БАУМАНА", "УЛ. ПУШКИНА", "ПР-Т ПОБЕДЫ"],
    },
];

/// Surnames in the masculine form; the feminine adds "а".
const SURNAMES: [&str; 12] = [
    "ИВАНОВ",
    "СМИРНОВ",
    "КУЗНЕЦОВ",
    "ПОПОВ",
    "СОКОЛОВ",
    "ЛЕБЕДЕВ",
    "КОЗЛОВ",
    "НОВИКОВ",
    "МОРОЗОВ",
    "ПЕТРОВ",
    "ВОЛКОВ",
    "ВАСИЛЬЕВ",
];
const MALE_NAMES: [&str; 8] = [
    "ИВАН",
    "ПЕТР",
    "АЛЕКСЕЙ",
    "СЕРГЕЙ",
    "ДМИТРИЙ",
    "АНДРЕЙ",
    "МИХАИЛ",
    "НИКОЛАЙ",
];
const FEMALE_NAMES: [&str; 8] = [
    "АННА",
    "МАРИЯ",
    "ЕЛЕНА",
    "ОЛЬГА",
    "НАТАЛЬЯ",
    "ТАТЬЯНА",
    "ИРИНА",
    "СВЕТЛАНА",
];
/// Patronymics: (masculine, feminine).
const PATRONYMICS: [(&str, &str); 8] = [
    ("ИВАНОВИЧ", "ИВАНОВНА"),
    ("ПЕТРОВИЧ", "ПЕТРОВНА"),
    ("АЛЕКСЕЕВИЧ", "АЛЕКСЕЕВНА"),
    ("СЕРГЕЕВИЧ", "СЕРГЕЕВНА"),
    ("ДМИТРИЕВИЧ", "ДМИТРИЕВНА"),
    ("АНДРЕЕВИЧ", "АНДРЕЕВНА"),
    ("МИХАЙЛОВИЧ", "МИХАЙЛОВНА"),
    ("НИКОЛАЕВИЧ", "НИКОЛАЕВНА"),
];
const CITIZENSHIPS: [&str; 4] = ["УЗБЕКИСТАН", "ТАДЖИКИСТАН", "КАЗАХСТАН", "АРМЕНИЯ"];

/// A calendar date (days 1 to 28, so every month has them).
#[derive(Clone, Copy)]
struct Date {
    day: u8,
    month: u8,
    year: u16,
}

impl Date {
    fn random(rng: &mut fastrand::Rng, years: std::ops::RangeInclusive<u16>) -> Self {
        Date {
            day: rng.u8(1..=28),
            month: rng.u8(1..=12),
            year: rng.u16(years),
        }
    }

    /// The same day `years` later.
    fn plus_years(self, years: u16) -> Self {
        Date {
            year: self.year + years,
            ..self
        }
    }

    /// `dd.mm.yyyy`.
    fn text(self) -> String {
        format!("{:02}.{:02}.{:04}", self.day, self.month, self.year)
    }
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

fn person(rng: &mut fastrand::Rng) -> Person {
    let male = rng.bool();
    let surname = pick(rng, &SURNAMES);
    let (middle_m, middle_f) = pick(rng, &PATRONYMICS);
    Person {
        last: if male {
            surname.to_owned()
        } else {
            format!("{surname}А")
        },
        first: pick(rng, if male { &MALE_NAMES } else { &FEMALE_NAMES }),
        middle: if male { middle_m } else { middle_f },
        male,
        birth: Date::random(rng, 1960..=2003),
        region: &REGIONS[rng.usize(..REGIONS.len())],
    }
}

/// A confidence as the seeds print them, as a string with four decimals.
fn conf_text(rng: &mut fastrand::Rng) -> Value {
    if rng.u8(..4) == 0 {
        Value::from(format!("{:.4}", 0.95 + rng.f64() * 0.0499))
    } else {
        Value::from("0.9999")
    }
}

/// A confidence as a float with full precision.
fn conf_float(rng: &mut fastrand::Rng) -> Value {
    Value::from(0.95 + rng.f64() * 0.049_999)
}

/// Digits as text.
fn digits(rng: &mut fastrand::Rng, count: usize) -> String {
    (0..count)
        .map(|_| char::from(b'0' + rng.u8(..10)))
        .collect()
}

fn address(rng: &mut fastrand::Rng, region: &Region) -> String {
    format!(
        "{}, {}, Д. {}, КВ. {}",
        region.birth_place,
        pick(rng, &region.streets),
        rng.u16(1..=120),
        rng.u16(1..=300)
    )
}

/// Data fields and their confidences, filled side by side in the seed's order.
#[derive(Default)]
struct Fields {
    data: Map<String, Value>,
    confidences: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, name: &str, value: impl Into<Value>, confidence: Value) {
        self.data.insert(name.to_owned(), value.into());
        self.confidences.insert(name.to_owned(), confidence);
    }
}

/// Internal passport (pages 2-3), plus the registration address for `PASSPORT_REG`.
pub(super) fn passport(rng: &mut fastrand::Rng, with_address: bool) -> Passport {
    let who = person(rng);
    let age = if who.birth.year >= 1982 { 20 } else { 45 };
    let issued = who.birth.plus_years(age).plus_years(rng.u16(0..=1));
    let mut f = Fields::default();
    f.put("IssuedBy", who.region.issued_by, conf_text(rng));
    f.put("IssueDate", issued.text(), conf_text(rng));
    let office = format!("{}-{:03}", who.region.office_code, rng.u16(1..=99));
    f.put("IssueId", office, conf_text(rng));
    let series = format!("{}{:02}", who.region.okato, issued.year % 100);
    f.put("Series", series, conf_text(rng));
    f.put("Number", digits(rng, 6), conf_float(rng));
    f.put(
        "Gender",
        if who.male { "МУЖ." } else { "ЖЕН." },
        conf_text(rng),
    );
    f.put("LastName", who.last.clone(), conf_text(rng));
    f.put("FirstName", who.first, conf_text(rng));
    f.put("MiddleName", who.middle, conf_text(rng));
    f.put("BirthDate", who.birth.text(), conf_text(rng));
    f.put("BirthPlace", who.region.birth_place, conf_text(rng));
    if with_address {
        f.put("Address", address(rng, who.region), conf_text(rng));
    }
    // The machine-readable zone is only ever mentioned in the confidences.
    f.confidences.insert("MRZ1".to_owned(), conf_text(rng));
    f.confidences.insert("MRZ2".to_owned(), conf_float(rng));
    // Booleans, sometimes as strings, as the seed's field table allows.
    let (photo, signature) = if with_address {
        (Value::from("true"), Value::from(true))
    } else {
        (Value::from(true), Value::from("true"))
    };
    f.put("HasPhoto", photo, Value::from("0.9999"));
    f.put("HasOwnerSignature", signature, Value::from("0.9999"));
    f.data.insert("HasStamp".to_owned(), Value::from(""));
    Passport {
        data: f.data,
        confidences: Value::Object(f.confidences),
    }
}

/// Russian to Latin as in passports for travel abroad.
fn latin(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'А' => "A",
            'Б' => "B",
            'В' => "V",
            'Г' => "G",
            'Д' => "D",
            'Е' | 'Ё' | 'Э' => "E",
            'Ж' => "ZH",
            'З' => "Z",
            'И' | 'Й' => "I",
            'К' => "K",
            'Л' => "L",
            'М' => "M",
            'Н' => "N",
            'О' => "O",
            'П' => "P",
            'Р' => "R",
            'С' => "S",
            'Т' => "T",
            'У' => "U",
            'Ф' => "F",
            'Х' => "KH",
            'Ц' => "TS",
            'Ч' => "CH",
            'Ш' => "SH",
            'Щ' => "SHCH",
            'Ы' => "Y",
            'Ъ' => "IE",
            'Ь' => "",
            'Ю' => "IU",
            'Я' => "IA",
            ' ' => " ",
            '-' => "-",
            '.' => ".",
            _ => "",
        })
        .collect()
}

/// Passport for travel abroad: fields under `data.data`, no confidences (as in the seed).
fn fprn(rng: &mut fastrand::Rng) -> Content {
    let who = person(rng);
    // Issued within the last ten years, so still valid.
    let issued = Date::random(rng, 2016..=2024);
    let inner = json!({
        "Series": format!("{}", rng.u8(70..=77)),
        "Number": digits(rng, 7),
        "Gender": if who.male { "M" } else { "F" },
        "LastNameRu": who.last,
        "FirstNameRu": who.first,
        "MiddleNameRu": who.middle,
        "LastName": latin(&who.last),
        "FirstName": latin(who.first),
        "BirthDate": who.birth.text(),
        "BirthPlaceRu": who.region.birth_place.trim_start_matches("ГОР. "),
        "BirthPlace": who.region.city_latin,
        "IssueDate": issued.text(),
        "ExpirationDate": issued.plus_years(10).text(),
        "IssuedBy": format!("МВД {}", rng.u16(1..=999)),
        "HasPhoto": "true",
    });
    plain(json!({ "data": inner }), Value::Null, BrokenFlag::Absent)
}

/// Residence permit, with the seed's nulls and one empty date.
fn vng(rng: &mut fastrand::Rng) -> Content {
    let who = person(rng);
    let decided = Date::random(rng, 2015..=2023);
    let data = json!({
        "Series": "82",
        "Number": digits(rng, 7),
        "IssueId": format!("{}-{:03}", who.region.office_code, rng.u16(1..=99)),
        "Gender": if who.male { "M" } else { "F" },
        "LastName": who.last,
        "FirstName": who.first,
        "MiddleName": who.middle,
        "BirthDate": who.birth.text(),
        "BirthPlace": pick(rng, &CITIZENSHIPS),
        "Citizenship": pick(rng, &CITIZENSHIPS),
        "SolutionDate": decided.text(),
        "SolutionNumber": format!("{}/{}", rng.u16(100..=9999), decided.year),
        "IssuedBy": who.region.issued_by,
        "IssueDate": decided.plus_years(rng.u16(0..=1)).text(),
        "ExpiryDate": null,
        "Address": address(rng, who.region),
        "RegIssueDate": "",
        "RegExpiryDate": null,
    });
    plain(data, Value::Null, BrokenFlag::False)
}

/// SNILS number `XXX-XXX-XXX YY` with a correct check sum.
fn snils_number(rng: &mut fastrand::Rng) -> String {
    let body = format!("{:09}", rng.u32(1_001_999..=999_999_999));
    let sum: u32 = body
        .bytes()
        .zip((1..=9).rev())
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    let check = match sum {
        0..=99 => sum,
        100 | 101 => 0,
        _ => (sum % 101) % 100,
    };
    format!("{}-{}-{} {check:02}", &body[0..3], &body[3..6], &body[6..9])
}

/// SNILS: float confidences whose name keys are cased `Lastname`, unlike the data.
fn snils(rng: &mut fastrand::Rng) -> Content {
    let who = person(rng);
    let data = json!({
        "Number": snils_number(rng),
        "LastName": who.last,
        "FirstName": who.first,
        "MiddleName": who.middle,
        "Gender": if who.male { "МУЖ" } else { "ЖЕН" },
        "BirthDate": who.birth.text(),
        "BirthPlace": who.region.birth_place,
        "RegistrationDate": null,
    });
    let confidences = json!({
        "Number": conf_float(rng),
        "Gender": conf_float(rng),
        "Lastname": conf_float(rng),
        "Firstname": conf_float(rng),
        "Middlename": conf_float(rng),
        "BirthDate": conf_float(rng),
        "BirthPlace": conf_float(rng),
    });
    plain(data, confidences, BrokenFlag::False)
}

/// Roubles and kopecks with a decimal comma, as the seed writes sums.
fn rubles(kopecks: u64) -> String {
    format!("{},{:02}", kopecks / 100, kopecks % 100)
}

/// Court ruling cancelling a court order; `broken` is `null` here, as in the seed.
fn otpr(rng: &mut fastrand::Rng) -> Content {
    let who = person(rng);
    let loan = Date::random(rng, 2018..=2023);
    let order = Date::random(rng, 2024..=2025);
    let owed = rng.u64(50_000..=50_000_000);
    let duties = (owed / 50).max(20_000);
    let data = json!({
        "LoanAgreementDate": loan.text(),
        "Gender": if who.male { "M" } else { "F" },
        "DebtorLastName": title_case(&who.last),
        "DebtorFirstName": title_case(who.first),
        "DebtorMiddleName": title_case(who.middle),
        "LoanAgreementNumber": format!("{}/{}", digits(rng, 3), digits(rng, 7)),
        "OrderNumber": format!("{}-{}/{}", rng.u8(1..=2), digits(rng, 4), rng.u16(100..=999)),
        "OrderDate": order.text(),
        "AmountOwed": rubles(owed),
        "Duties": rubles(duties),
        "TotalAmount": rubles(owed + duties),
    });
    let mut confidences = Map::new();
    if let Value::Object(fields) = &data {
        for (index, name) in fields.keys().enumerate() {
            let value = if index % 2 == 0 {
                conf_text(rng)
            } else {
                conf_float(rng)
            };
            confidences.insert(name.clone(), value);
        }
    }
    plain(data, Value::Object(confidences), BrokenFlag::Null)
}

/// "ИВАНОВ" → "Иванов".
fn title_case(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
        None => String::new(),
    }
}

/// A liveness check that ran ("Success" says it ran, not that it passed); `not_live`: it
/// found no live person.
pub(super) fn liveness(rng: &mut fastrand::Rng, not_live: bool) -> Value {
    if not_live {
        return json!({
            "liveness": 0,
            "probability": 0.05 + rng.f64() * 0.2,
            "error_code": 0,
            "comment": "Success",
        });
    }
    json!({
        "liveness": 1,
        "probability": 0.9 + rng.f64() * 0.0999,
        "error_code": 0,
        "comment": "Success",
    })
}

/// A face match that ran, or one that had nothing to compare; `other_face`: it ran and
/// found another person.
pub(super) fn match_faces(rng: &mut fastrand::Rng, unpaired: bool, other_face: bool) -> Value {
    if unpaired {
        return json!({
            "match_faces": 0,
            "similarity": 0,
            "error_code": 1,
            "comment": "Only one image",
        });
    }
    if other_face {
        return json!({
            "match_faces": 0,
            "similarity": 0.1 + rng.f64() * 0.3,
            "error_code": 0,
            "comment": "Success",
        });
    }
    json!({
        "match_faces": 1,
        "similarity": 0.85 + rng.f64() * 0.1499,
        "error_code": 0,
        "comment": "Success",
    })
}
