//! The pages, as maud templates: compiled with the code, every value escaped. No script; the
//! one style sheet is inline and allowed by its hash in the Content-Security-Policy
//! ([`STYLE`]). A narrow screen (a tablet) stacks the scan above the fields.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::decision::shown;
use super::items::{Item, Shown, shown_as};
use super::texts::Texts;

/// The page style (its SHA-256 is in the CSP's `style-src`).
pub const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}
header{display:flex;gap:1em;align-items:center;justify-content:space-between;padding:.6em 1em;background:#23395b;color:#fff}
header a{color:#fff}
header button{color:#fff;background:transparent;border:1px solid #fff}
main{padding:1em;max-width:1600px;margin:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
.item{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:1em}
@media (max-width:900px){.item{grid-template-columns:1fr}}
.scan img{max-width:100%;border:1px solid #ccc;background:#fff}
.scan iframe{width:100%;height:80vh;border:1px solid #ccc}
.low{background:#fff1c2}
.low td:first-child::after{content:' \\26A0'}
.reasons li{color:#8a3c00}
.fields td:first-child{width:35%}
input[type=text],input[type=password],textarea{width:100%;box-sizing:border-box;padding:.3em;font-size:1em}
button{font-size:1em;padding:.45em 1.2em;cursor:pointer}
.approve{background:#1f7a3a;color:#fff;border:0}
.reject{background:#a12a2a;color:#fff;border:0}
.error{color:#a12a2a;font-weight:bold}
form.inline{display:inline}
.login{max-width:22em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #ddd}
";

fn page(t: &Texts, title: &str, user: Option<(&str, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(t.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (t.title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { strong { (t.title) } }
                    @if let Some((user, csrf)) = user {
                        span {
                            (t.signed_in_as) " " strong { (user) } " "
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" id="logout" { (t.log_out) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(t: &Texts, error: Option<&str>) -> Markup {
    page(
        t,
        t.login_title,
        None,
        html! {
            form.login method="post" action="/login" {
                h1 { (t.login_title) }
                @if let Some(error) = error { p.error { (error) } }
                p { label { (t.user) br; input type="text" name="user" id="user" autocomplete="username" required; } }
                p { label { (t.password) br; input type="password" name="password" id="password" autocomplete="current-password" required; } }
                button type="submit" id="login" { (t.log_in) }
            }
        },
    )
}

pub fn queue(t: &Texts, items: &[Item], user: &str, csrf: &str) -> Markup {
    page(
        t,
        t.queue,
        Some((user, csrf)),
        html! {
            h1 { (t.queue) " (" (items.len()) ")" }
            @if items.is_empty() {
                p #empty { (t.queue_empty) }
            } @else {
                table #queue {
                    tr { th { (t.inbox) } th { (t.name) } th { (t.reasons) } th { (t.waiting_since) } }
                    @for item in items {
                        tr {
                            td { (item.inbox.display().to_string()) }
                            td { a href={ "/items/" (item.id) } { (item.name) } }
                            td { ul.reasons { @for reason in &item.sidecar.review { li { (reason) } } } }
                            td { (crate::sidecar::rfc3339(item.since)) }
                        }
                    }
                }
            }
        },
    )
}

/// The item page: the scan, the fields (below `min_confidence` marked), the checks, the
/// reasons, and the two forms.
pub fn item(t: &Texts, item: &Item, min_confidence: Option<f64>, user: &str, csrf: &str) -> Markup {
    let mut seen = std::collections::HashSet::new();
    page(
        t,
        &item.name,
        Some((user, csrf)),
        html! {
            p { a href="/" { "← " (t.back_to_queue) } }
            h1 { (item.name) }
            p { (t.inbox) ": " (item.inbox.display().to_string()) " · " (t.waiting_since) " " (crate::sidecar::rfc3339(item.since)) }
            ul.reasons #reasons { @for reason in &item.sidecar.review { li { (reason) } } }
            div.item {
                section.scan {
                    h2 { (t.scan) }
                    @for (n, name) in item.pages().iter().enumerate() {
                        @let src = format!("/items/{}/files/{n}", item.id);
                        figure {
                            @match shown_as(name) {
                                Some(Shown::AsIs("application/pdf")) => iframe src=(src) title=(name) {},
                                Some(_) => img src=(src) alt=(name);,
                                None => p { (t.cannot_show) },
                            }
                            figcaption { (name) }
                        }
                    }
                }
                section {
                    form method="post" action={ "/items/" (item.id) "/approve" } #approve-form {
                        input type="hidden" name="csrf" value=(csrf);
                        h2 { (t.fields) }
                        @for (i, document) in item.sidecar.documents.iter().enumerate() {
                            h3 { (t.document) " " (i + 1) ": " (document.doc_type.clone().unwrap_or_default()) " (" (document.file) ")" }
                            table.fields {
                                tr { th { (t.field) } th { (t.value) } th { (t.confidence) } }
                                @for (name, value) in &document.fields {
                                    @let confidence = document.confidence.as_ref().and_then(|c| c.get(name)).and_then(confidence_of);
                                    @let low = matches!((confidence, min_confidence), (Some(c), Some(min)) if c < min);
                                    tr class=[low.then_some("low")] {
                                        td { (name) @if low { " (" (t.below_min) ")" } }
                                        td {
                                            @if seen.insert(name.clone()) {
                                                input type="text" name={ "field." (name) } value=(shown(value));
                                            } @else {
                                                (shown(value))
                                            }
                                        }
                                        td { @if let Some(c) = confidence { (format!("{c:.2}")) } }
                                    }
                                }
                            }
                            @if let Some(v) = &document.verification {
                                h3 { (t.verification) }
                                p { (v.status.map(|s| s.to_string()).unwrap_or_default()) " " (v.text.clone().unwrap_or_default()) }
                                @if !v.bad_fields.is_empty() { p { (t.bad_fields) ": " (v.bad_fields.join(", ")) } }
                            }
                            @if let Some(b) = &document.biometrics {
                                h3 { (t.biometrics) }
                                ul {
                                    @if let Some(l) = &b.liveness { li { (t.liveness) ": " (if l.passed { t.passed } else { t.not_passed }) (l.probability.map(|p| format!(" ({p:.2})")).unwrap_or_default()) } }
                                    @if let Some(m) = &b.face_match { li { (t.face_match) ": " (if m.passed { t.passed } else { t.not_passed }) (m.similarity.map(|s| format!(" ({s:.2})")).unwrap_or_default()) } }
                                }
                            }
                        }
                        p { (t.approve_hint) }
                        button.approve type="submit" id="approve" { (t.approve) }
                    }
                    form method="post" action={ "/items/" (item.id) "/reject" } #reject-form {
                        input type="hidden" name="csrf" value=(csrf);
                        h2 { (t.reject) }
                        p { label { (t.reject_reason) br; textarea name="reason" id="reason" rows="2" required {} } }
                        button.reject type="submit" id="reject" { (t.reject) }
                    }
                }
            }
        },
    )
}

fn confidence_of(value: &serde_json::Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// A page with one message (404, 403, 409, ...) and the way back.
pub fn message(t: &Texts, heading: &str, text: &str, user: Option<(&str, &str)>) -> Markup {
    page(
        t,
        heading,
        user,
        html! {
            h1 { (heading) }
            p #message { (text) }
            p { a href="/" { (t.back_to_queue) } }
        },
    )
}
